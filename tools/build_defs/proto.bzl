"""C++ code for one .proto file with the system protoc (Bazel's native proto rules would need the
protobuf source repository, which cannot be fetched offline)."""

def system_cc_proto(name, src, proto_deps = [], deps = []):
    """cc_library `name` with the generated <src>.pb.h/.pb.cc, included as "<package>/<src>.pb.h".

    Args:
      name: the cc_library.
      src: the .proto file in this package.
      proto_deps: .proto files it imports (labels), so protoc can read them.
      deps: the cc_proto libraries of those imports.
    """
    base = src[:-len(".proto")]
    native.genrule(
        name = name + "_gen",
        srcs = [src] + proto_deps,
        outs = [base + ".pb.h", base + ".pb.cc"],
        # The workspace root is the import root, so imports read "configs/config.proto".
        cmd = "protoc --proto_path=$$(dirname $(location %s))/.. --cpp_out=$(GENDIR) $(location %s)" % (src, src),
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc"],
        hdrs = [base + ".pb.h"],
        copts = ["-Wno-unused-parameter"],
        include_prefix = native.package_name(),
        strip_include_prefix = "",
        deps = deps + ["//third_party:protobuf"],
    )

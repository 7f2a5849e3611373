"""nvcc compilation for Bazel 4.2.3 without rules_cuda (offline).

Each .cu file becomes one object through its own genrule (so edits recompile one file and the two
build cores work in parallel); a cc_library lists the objects in `srcs`, so they belong to that
library in both of Bazel's link modes. No relocatable device code: every .cu is self-contained, so
no device-link step is needed and the host linker sees ordinary objects.

Everything defined here is guarded by cuda_only(): without `--config=cuda` the targets are
incompatible, `bazel build //...` skips them and nvcc never runs.
"""

NVCC = "/usr/local/cuda/bin/nvcc"

# Hopper (H100/H200) machine code only: sm_90 SASS, no PTX, which keeps compile time down (each
# extra target is another full device compile). -O3 for host and device; relaxed constexpr lets
# device code call std:: constexpr helpers; -lineinfo keeps source lines for profilers at no cost
# to the generated code.
NVCC_FLAGS = [
    "-std=c++17",
    "-O3",
    "-gencode=arch=compute_90,code=sm_90",
    "--expt-relaxed-constexpr",
    "-lineinfo",
    "-Xcompiler=-fPIC,-Wall,-Wextra",  # host code in .cu files as warning-clean as the rest
    "-Werror=all-warnings",
]

def cuda_only():
    """target_compatible_with value: compatible only under --config=cuda."""
    return select({
        "//tools/cuda:cuda_enabled": [],
        "//conditions:default": ["@platforms//:incompatible"],
    })

def cuda_select(if_cuda, if_not = []):
    """select() between two lists on --config=cuda."""
    return select({
        "//tools/cuda:cuda_enabled": if_cuda,
        "//conditions:default": if_not,
    })

def cuda_objects(name, srcs, hdrs = [], nvcc_flags = []):
    """Compiles each .cu in srcs with nvcc; `name` is a filegroup of the objects.

    List ":<name>" in a cc_library's srcs. The objects are position independent and named .o:
    Bazel links a library's precompiled .o files both into the shared libraries that tests link
    dynamically and into statically linked binaries (a .pic.o beside it would be linked twice), and
    an object in a library's srcs, unlike a prebuilt archive, always becomes part of that library,
    so the kernels resolve in both link modes.

    Args:
      name: the filegroup of all objects.
      srcs: .cu files of this package.
      hdrs: every header the .cu files include (labels), so the sandbox holds them.
      nvcc_flags: extra flags after NVCC_FLAGS.
    """
    objs = []
    for src in srcs:
        stem = src[:-3] if src.endswith(".cu") else src
        obj_rule = "%s_%s_obj" % (name, stem.replace("/", "_"))
        out = "_nvcc/%s/%s.o" % (name, stem)
        native.genrule(
            name = obj_rule,
            srcs = [src] + hdrs,
            outs = [out],
            cmd = " ".join([
                # nvcc keeps its intermediate files in TMPDIR; give it one of its own, removed after.
                "tmp=$$(mktemp -d) && rc=0 &&",
                "TMPDIR=$$tmp",
                NVCC,
                " ".join(NVCC_FLAGS + nvcc_flags),
                "-I. -I$(GENDIR)",
                "-c $(location %s) -o $@" % src,
                "|| rc=$$?; rm -rf $$tmp; exit $$rc",
            ]),
            message = "nvcc " + src,
            target_compatible_with = cuda_only(),
            visibility = ["//visibility:private"],
        )
        objs.append(":" + obj_rule)
    # (filegroup has no target_compatible_with in Bazel 4; it inherits the genrules'
    # incompatibility, so it is skipped with them.)
    native.filegroup(
        name = name,
        srcs = objs,
        visibility = ["//visibility:private"],
    )

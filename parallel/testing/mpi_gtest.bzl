"""mpi_gtest: a gtest binary run as `ranks` MPI ranks by run_mpi.sh, tagged "mpi"."""

def mpi_gtest(name, ranks, srcs, deps, size = "small"):
    """A multi-rank test: `name`_bin (linked with mpi_gtest_main) and the sh_test `name` running it.

    Args:
      name: the test's name.
      ranks: how many ranks mpirun starts.
      srcs: the test sources.
      deps: their dependencies (mpi_gtest_main and gtest are added).
      size: the test size.
    """
    native.cc_binary(
        name = name + "_bin",
        testonly = True,
        srcs = srcs,
        deps = deps + ["//parallel/testing:mpi_gtest_main", "//third_party:gtest"],
    )
    native.sh_test(
        name = name,
        size = size,
        srcs = ["//parallel/testing:run_mpi.sh"],
        args = [str(ranks), "$(location :%s_bin)" % name],
        data = [":%s_bin" % name],
        tags = ["mpi"],
    )

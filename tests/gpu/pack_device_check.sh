#!/usr/bin/env bash
# Builds the device check's binaries with --config=cuda (on a build machine: no GPU needed) and gathers
# what travels to the GPU machine into tests/gpu/bin/ (not tracked):
#   kernel_check   every CUDA op against its CPU twin
#   bench_step     one training step on the GPU against the CPU, then timed steps
#   nccl_check     the NCCL communicator (--single_process there: one GPU, no MPI launcher)
#   lib.tar.gz     the shared libraries they need that a GPU machine may lack (oneDNN,
#                  protobuf, Abseil, OpenMP, ...), gzipped: oneDNN alone is 40 MB
#                  unpacked; run_device_check.sh unpacks it to lib/. glibc, libstdc++/libgcc and the CUDA
#                  libraries (cudart, cuBLAS/cuBLASLt) are the GPU machine's own
# Then tests/gpu/run_device_check.sh runs there. Prints the bundle's size (the device tool carries at
# most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
bazel build --config=cuda //tests/gpu:kernel_check //tests/gpu:nccl_check //tools:bench_step
BIN=tests/gpu/bin
rm -rf "$BIN"
mkdir -p "$BIN/lib"
cp -f bazel-bin/tests/gpu/kernel_check bazel-bin/tests/gpu/nccl_check bazel-bin/tools/bench_step "$BIN/"
chmod u+w "$BIN"/kernel_check "$BIN"/nccl_check "$BIN"/bench_step
for b in "$BIN/kernel_check" "$BIN/nccl_check" "$BIN/bench_step"; do
  ldd "$b" | awk '/=> \//{print $1, $3}' | while read -r name path; do
    case "$name" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) continue ;;
      libcuda.so*|libcudart.so*|libcublas*|libcudnn*|libnccl*|libnvrtc*|libnvJitLink*) continue ;;
    esac
    [ -f "$BIN/lib/$name" ] || cp -L "$path" "$BIN/lib/$name"
  done
done
tar -C "$BIN" -czf "$BIN/lib.tar.gz" lib
rm -rf "$BIN/lib"
du -sh "$BIN"

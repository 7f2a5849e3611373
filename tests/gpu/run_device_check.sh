#!/usr/bin/env bash
# The one script to run on a GPU machine (no Bazel, MPI or network needed there).
#
#   tests/gpu/run_device_check.sh [KERNEL_CHECK] [kernel_check flags...]
#
# KERNEL_CHECK defaults to tests/gpu/bin/kernel_check (copy it there from
# bazel-bin/tests/gpu/kernel_check after `bazel build --config=cuda //tests/gpu:kernel_check` on a
# build machine; see README.md). The binary needs only libcublasLt.so.13 besides the C/C++ runtime
# and the driver: this script finds the CUDA 13 libraries in the Python environment's nvidia-*
# packages (the ones PyTorch uses), falls back to /usr/local/cuda, points LD_LIBRARY_PATH at them,
# prints the GPU and the resolved libraries, and runs the check under a time limit
# (KERNEL_CHECK_TIMEOUT seconds, default 480). If $OUT is set, the full log is also written there.
set -uo pipefail

BIN=${1:-tests/gpu/bin/kernel_check}
[ $# -gt 0 ] && shift
TIMEOUT=${KERNEL_CHECK_TIMEOUT:-480}
PY=${PYTHON:-python3}

if [ ! -x "$BIN" ]; then
  echo "run_device_check: $BIN not found or not executable" >&2
  exit 2
fi

# Every folder under the nvidia namespace package(s) that holds CUDA shared libraries
# (nvidia/cu13/lib, nvidia/cublas/lib, nvidia/cudnn/lib, nvidia/nccl/lib, ... depending on the
# wheels' layout), then the toolkit's own.
NV_LIBS=$("$PY" - <<'PYEOF' 2>/dev/null
import os
dirs = []
try:
    import nvidia
    roots = list(getattr(nvidia, "__path__", []))
except Exception:
    roots = []
wanted = ("libcublasLt.so", "libcublas.so", "libcudart.so", "libcudnn.so", "libnccl.so")
for root in roots:
    for path, subdirs, files in os.walk(root):
        if path[len(root):].count(os.sep) > 3:
            subdirs[:] = []
            continue
        if any(f.startswith(wanted) for f in files) and path not in dirs:
            dirs.append(path)
print(":".join(dirs))
PYEOF
)
LIBPATH=$NV_LIBS
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -d "$d" ] && LIBPATH=${LIBPATH:+$LIBPATH:}$d
done
export LD_LIBRARY_PATH=${LIBPATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== run_device_check: $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 |
  sed 's/^/   /'
echo "   LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "== shared libraries of $BIN"
ldd "$BIN" | sed 's/^/   /'
if ldd "$BIN" | grep -q "not found"; then
  echo "run_device_check: missing shared libraries (see above)" >&2
  exit 2
fi

LOG=/dev/null
if [ -n "${OUT:-}" ] && [ -d "${OUT}" ]; then LOG=$OUT/kernel_check.log; fi
echo "== $BIN $* (time limit ${TIMEOUT}s)"
timeout --signal=TERM --kill-after=10 "$TIMEOUT" "$BIN" "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
case $rc in
  0) echo "== kernel_check: all checks passed" ;;
  124|137) echo "== kernel_check: TIMED OUT after ${TIMEOUT}s (rc $rc)" ;;
  *) echo "== kernel_check: FAILED (rc $rc)" ;;
esac
exit "$rc"

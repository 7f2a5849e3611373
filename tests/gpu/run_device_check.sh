#!/usr/bin/env bash
# The one script to run on a GPU machine (no Bazel, MPI or network needed there), from the repository
# root, after tests/gpu/pack_device_check.sh filled tests/gpu/bin/ on a build machine:
#
#   tests/gpu/run_device_check.sh [BIN_DIR]        # default tests/gpu/bin
#
# Phases, each under its own time limit (90 + 240 + 100 (+ 60 on a retry) s: 8 minutes at most):
#   1. kernel_check --no_perf: every CUDA op against its CPU twin on fresh random inputs (poisoned
#      outputs); KERNEL_PERF=1 also times the ops at small_1b shapes.
#   2. bench_step on configs/small_1b.textproto (MTP off), device CUDA: one BF16 training step on the
#      GPU against the same step on the CPU (loss 1e-2, grad norm 5e-2, loss after AdamW 1e-2), then
#      timed steps of one micro-batch (8 x 4096 tokens) + AdamW: tokens/s, TFLOP/s, MFU against 989
#      TFLOP/s, op breakdown (attention and expert GEMM TFLOP/s, three largest sinks).
#   3. tests/gpu/hf_train_step.py: a Hugging Face transformers DeepseekV3 training step of the same
#      config and batch (the config.json bench_step wrote), BF16 autocast over FP32 weights + AdamW;
#      on out-of-memory it retries with half the batch.
#   4. The comparison: our tokens/s over transformers', in this one run.
# The CUDA libraries come from the Python environment's nvidia-* packages (the ones PyTorch uses),
# else /usr/local/cuda; the rest from BIN_DIR/lib. Logs go to $OUT when it is set. Exit status: 0 all
# checks passed, 1 a check failed or a phase timed out, 2 a binary or library is missing.
set -uo pipefail

BIN=${1:-tests/gpu/bin}
PY=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/small_1b.textproto}
BATCH=${BATCH:-8}
SEQ=${SEQ:-4096}
LOGDIR=${OUT:-$(mktemp -d)}
mkdir -p "$LOGDIR"

for b in kernel_check bench_step; do
  if [ ! -x "$BIN/$b" ]; then
    echo "run_device_check: $BIN/$b not found (run tests/gpu/pack_device_check.sh on a build machine)" >&2
    exit 2
  fi
done

# The bundled libraries travel gzipped (pack_device_check.sh).
if [ -f "$BIN/lib.tar.gz" ] && [ ! -d "$BIN/lib" ]; then
  tar -C "$BIN" -xzf "$BIN/lib.tar.gz" || { echo "run_device_check: cannot unpack $BIN/lib.tar.gz" >&2; exit 2; }
fi

# Every folder under the nvidia namespace package(s) that holds CUDA shared libraries
# (nvidia/cu13/lib, nvidia/cublas/lib, ... depending on the wheels' layout), then the toolkit's own.
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
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib "$BIN/lib"; do
  [ -d "$d" ] && LIBPATH=${LIBPATH:+$LIBPATH:}$d
done
# Only our binaries get this path: Python (phase 3) keeps its own environment, so the bundled
# libraries cannot shadow the ones PyTorch was built with.
BIN_LD=${LIBPATH}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== run_device_check: $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | sed 's/^/   /'
echo "   LD_LIBRARY_PATH for the binaries: $BIN_LD"
missing=0
for b in kernel_check bench_step; do
  if LD_LIBRARY_PATH=$BIN_LD ldd "$BIN/$b" | grep "not found"; then missing=1; fi
done
[ "$missing" = 0 ] || { echo "run_device_check: missing shared libraries (above)" >&2; exit 2; }

status=0
phase() {  # name seconds command...: runs one phase under a time limit, logging to $LOGDIR/name.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGDIR/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: rc $rc after $((SECONDS - start)) s"
  return "$rc"
}

# 1. Kernels.
KC_FLAGS=(--no_perf)
[ "${KERNEL_PERF:-0}" = 1 ] && KC_FLAGS=()
phase kernel_check 90 env LD_LIBRARY_PATH="$BIN_LD" "$BIN/kernel_check" "${KC_FLAGS[@]}" || status=1

# 2. Our step: checked against the CPU, then timed.
phase bench_step 300 env LD_LIBRARY_PATH="$BIN_LD" "$BIN/bench_step" --config="$CONFIG" --device=CUDA --check_against_cpu \
  --set batch.micro_batch_size="$BATCH" --set batch.seq_len="$SEQ" --micro_batches=1 --warmup=2 --steps=5 \
  --check_fp32_too --hf_config_out="$LOGDIR/hf_config.json" || status=1
OURS=$(grep '^BENCH_RESULT ' "$LOGDIR/bench_step.log" | tail -1 | sed 's/^BENCH_RESULT //')
FLOPS=$(printf '%s' "$OURS" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["flops_per_token"])' 2>/dev/null)

# 3. The transformers baseline on the same config and batch.
HF_ARGS=(--config_json "$LOGDIR/hf_config.json" --seq "$SEQ" --steps 5 --warmup 2)
[ -n "$FLOPS" ] && HF_ARGS+=(--flops_per_token "$FLOPS")
if [ -f "$LOGDIR/hf_config.json" ]; then
  phase hf_train_step 100 "$PY" tests/gpu/hf_train_step.py "${HF_ARGS[@]}" --batch "$BATCH"
  rc=$?
  if [ "$rc" = 4 ]; then  # out of memory: half the batch (tokens/s stays comparable per token)
    phase hf_train_step 60 "$PY" tests/gpu/hf_train_step.py "${HF_ARGS[@]}" --batch $((BATCH / 2))
  fi
fi
THEIRS=$(grep '^HF_RESULT ' "$LOGDIR/hf_train_step.log" 2>/dev/null | tail -1 | sed 's/^HF_RESULT //')

# 4. Side by side.
echo "== summary"
OURS="$OURS" THEIRS="$THEIRS" "$PY" - <<'PYEOF'
import json, os
def load(k):
    try:
        return json.loads(os.environ.get(k, ""))
    except ValueError:
        return None
ours, theirs = load("OURS"), load("THEIRS")
if ours:
    print("   ours:         %10.0f tokens/s  %6.1f TFLOP/s  MFU %5.1f%%  (%d x %d tokens, step %.3f s)" % (
        ours["tokens_per_s"], ours["tflops"], 100 * ours["mfu"], ours["micro_batch"], ours["seq"],
        ours["step_time_s_median"]))
    for name in ("attention_fwd", "attention_bwd", "grouped_gemm", "gemm"):
        op = ours["ops"].get(name)
        if op:
            print("     %-14s %8.2f ms/step  %7.1f TFLOP/s" % (name, op["ms_per_step"], op["tflops"]))
    sinks = sorted(ours["ops"].items(), key=lambda kv: -kv[1]["ms_per_step"])[:3]
    print("     largest sinks: " + ", ".join("%s %.1f ms" % (k, v["ms_per_step"]) for k, v in sinks))
else:
    print("   ours: no BENCH_RESULT (see bench_step.log)")
if theirs and "tokens_per_s" in theirs and not theirs.get("error"):
    print("   transformers: %10.0f tokens/s  %6.1f TFLOP/s  MFU %5.1f%%  (%d x %d tokens, torch %s, "
          "transformers %s)" % (theirs["tokens_per_s"], theirs.get("tflops") or 0, 100 * (theirs.get("mfu") or 0),
                                theirs["batch"], theirs["seq"], theirs.get("torch_version"),
                                theirs.get("transformers_version")))
    if ours:
        print("   ratio (ours / transformers tokens/s): %.2f" % (ours["tokens_per_s"] / theirs["tokens_per_s"]))
else:
    print("   transformers: no result (%s)" % ((theirs or {}).get("error") or "see hf_train_step.log"))
PYEOF
echo "== run_device_check: $([ "$status" = 0 ] && echo "all checks passed" || echo "FAILED") (logs in $LOGDIR)"
exit "$status"

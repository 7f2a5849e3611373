#!/usr/bin/env bash
# The one script to run on a GPU machine (no Bazel, MPI or network needed there), from the repository
# root, after tests/gpu/pack_device_check.sh filled tests/gpu/bin/ on a build machine:
#
#   tests/gpu/run_device_check.sh [BIN_DIR]        # default tests/gpu/bin
#
# Phases, each under its own time limit (about 5 minutes in all when everything passes):
#   1. kernel_check --no_perf, one process per kernel group (a sticky CUDA error in one group cannot
#      hide the others), with CUDA_LAUNCH_BLOCKING=1: every CUDA op against its CPU twin on fresh
#      random inputs (poisoned outputs).
#   2. nccl_check --single_process: the NCCL communicator on a one-member group (no MPI launcher).
#   3. bench_step on configs/small_1b.textproto (MTP off), device CUDA, only once phases 1-2 passed
#      (STEP_ALWAYS=1 runs it regardless): one BF16 training step on the GPU against the same step on
#      the CPU (loss 1e-2, grad norm 5e-2, loss after AdamW 1e-2; FP32 too), then timed steps of one
#      micro-batch (8 x 4096 tokens) + AdamW: tokens/s, TFLOP/s, MFU against 989 TFLOP/s, op
#      breakdown (attention and expert GEMM TFLOP/s, three largest sinks). Then the same step with the
#      tensors in device memory (cuda.memory: DEVICE), and the same step with the experts' products as
#      one cuBLAS grouped call (cuda.grouped_gemm: CUBLAS_GROUPED), each checked against the CPU and
#      timed (3 steps); and the same step with them as one padded cuBLASLt batch (CUBLASLT_PADDED), timed.
#      KERNEL_PERF=1 then also times the ops at small_1b shapes (kernel_check's perf group).
#   4. tests/gpu/hf_train_step.py: a Hugging Face transformers DeepseekV3 training step of the same
#      config and batch (the config.json bench_step wrote), BF16 autocast over FP32 weights + AdamW;
#      on out-of-memory it retries with half the batch.
#   5. compute-sanitizer memcheck over the attention, grouped_gemm and router groups, when the machine
#      has compute-sanitizer (SANITIZER=0 skips it); last, so a slow memcheck cannot crowd out the rest.
#   6. The comparison (our tokens/s over transformers', in this one run) and a VERDICT line against
#      the targets: MFU >= 45% and attention forward >= 450 TFLOP/s (causal half counted).
# The CUDA libraries come from the Python environment's nvidia-* packages (the ones PyTorch uses),
# else /usr/local/cuda; the rest from BIN_DIR/lib. Logs go to $OUT when it is set (eight files at
# most). Exit status: 0 all checks passed, 1 a check failed or a phase timed out, 2 a binary or
# library is missing. Meeting the speed targets is reported, not part of the status.
# nccl_check's one-GPU run also covers the communicator as the trainer uses it: ordered after a compute
# stream by events, with no host wait.
set -uo pipefail

BIN=${1:-tests/gpu/bin}
PY=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/small_1b.textproto}
BATCH=${BATCH:-8}
SEQ=${SEQ:-4096}
LOGDIR=${OUT:-$(mktemp -d)}
mkdir -p "$LOGDIR"

for b in kernel_check nccl_check bench_step; do
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
wanted = ("libcublasLt.so", "libcublas.so", "libcudart.so", "libcudnn.so", "libnccl.so", "libnvrtc.so")
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
for b in kernel_check nccl_check bench_step; do
  if LD_LIBRARY_PATH=$BIN_LD ldd "$BIN/$b" | grep "not found"; then missing=1; fi
done
[ "$missing" = 0 ] || { echo "run_device_check: missing shared libraries (above)" >&2; exit 2; }

status=0
phase() {  # log seconds command...: runs one phase under a time limit, appending to $LOGDIR/log.log
  local log=$1 limit=$2
  shift 2
  echo "== (limit ${limit}s) $*" | sed 's|LD_LIBRARY_PATH=[^ ]* ||' | tee -a "$LOGDIR/$log.log"
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOGDIR/$log.log"
  local rc=${PIPESTATUS[0]}
  echo "== rc $rc after $((SECONDS - start)) s" | tee -a "$LOGDIR/$log.log"
  return "$rc"
}
RUN_BIN=(env LD_LIBRARY_PATH="$BIN_LD")  # how our binaries run (phase cannot time a shell function)
SEED=${SEED:-$(date +%s)}

# 1. Kernels, one process per group.
kernel_failed=()
for g in $("${RUN_BIN[@]}" "$BIN/kernel_check" --list_groups --no_perf); do
  phase kernels 45 "${RUN_BIN[@]}" CUDA_LAUNCH_BLOCKING=1 "$BIN/kernel_check" --no_perf --seed="$SEED" \
    --only="$g" || kernel_failed+=("$g")
done

# 2. NCCL on one GPU.
nccl_failed=0
phase kernels 45 "${RUN_BIN[@]}" "$BIN/nccl_check" --single_process --seed="$SEED" || nccl_failed=1

echo "== kernels: ${#kernel_failed[@]} group(s) failed${kernel_failed:+ (${kernel_failed[*]})};" \
  "nccl: $([ "$nccl_failed" = 0 ] && echo passed || echo FAILED)"
checks_passed=1
[ "${#kernel_failed[@]}" = 0 ] && [ "$nccl_failed" = 0 ] || checks_passed=0
[ "$checks_passed" = 1 ] || status=1

# 3. Our step: checked against the CPU, then timed.
if [ "$checks_passed" = 1 ] || [ "${STEP_ALWAYS:-0}" = 1 ]; then
phase bench_step 240 "${RUN_BIN[@]}" "$BIN/bench_step" --config="$CONFIG" --device=CUDA --check_against_cpu \
  --set batch.micro_batch_size="$BATCH" --set batch.seq_len="$SEQ" --micro_batches=1 --warmup=2 --steps=5 \
  --steps_without_op_times \
  --check_fp32_too --hf_config_out="$LOGDIR/hf_config.json" || status=1
# The same step with the tensors in device memory (cuda.memory: DEVICE) instead of managed memory:
# checked against the CPU again (the host must never touch them), then timed.
phase bench_step_device_memory 150 "${RUN_BIN[@]}" "$BIN/bench_step" --config="$CONFIG" --device=CUDA \
  --check_against_cpu --set cuda.memory=DEVICE --set batch.micro_batch_size="$BATCH" --set batch.seq_len="$SEQ" \
  --micro_batches=1 --warmup=2 --steps=3 --steps_without_op_times || status=1
# The same step with the experts' products as one cuBLAS grouped call (cuda.grouped_gemm:
# CUBLAS_GROUPED): checked against the CPU, then timed beside the default (one cuBLASLt product per expert).
phase bench_step_cublas_grouped 120 "${RUN_BIN[@]}" "$BIN/bench_step" --config="$CONFIG" --device=CUDA \
  --check_against_cpu --set cuda.grouped_gemm=CUBLAS_GROUPED --set batch.micro_batch_size="$BATCH" \
  --set batch.seq_len="$SEQ" --micro_batches=1 --warmup=2 --steps=3 --steps_without_op_times || status=1
# And as one padded cuBLASLt batch (cuda.grouped_gemm: CUBLASLT_PADDED): timed only (3 steps), to keep the
# run short; kernel_check's grouped_gemm group has checked that path against the CPU.
phase bench_step_lt_padded 90 "${RUN_BIN[@]}" "$BIN/bench_step" --config="$CONFIG" --device=CUDA \
  --set cuda.grouped_gemm=CUBLASLT_PADDED --set batch.micro_batch_size="$BATCH" \
  --set batch.seq_len="$SEQ" --micro_batches=1 --warmup=2 --steps=3 --steps_without_op_times || status=1
if [ "${KERNEL_PERF:-0}" = 1 ]; then
  phase kernels 120 "${RUN_BIN[@]}" "$BIN/kernel_check" --seed="$SEED" --only=perf || status=1
fi
else
  echo "== bench_step: not run, the checks above failed (STEP_ALWAYS=1 runs it anyway)"
fi
OURS=$(grep -s '^BENCH_RESULT ' "$LOGDIR/bench_step.log" | tail -1 | sed 's/^BENCH_RESULT //')
OURS_DEVICE=$(grep -s '^BENCH_RESULT ' "$LOGDIR/bench_step_device_memory.log" | tail -1 | sed 's/^BENCH_RESULT //')
OURS_GROUPED=$(grep -s '^BENCH_RESULT ' "$LOGDIR/bench_step_cublas_grouped.log" | tail -1 | sed 's/^BENCH_RESULT //')
OURS_PADDED=$(grep -s '^BENCH_RESULT ' "$LOGDIR/bench_step_lt_padded.log" | tail -1 | sed 's/^BENCH_RESULT //')
FLOPS=$(printf '%s' "$OURS" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["flops_per_token"])' 2>/dev/null)

# 4. The transformers baseline on the same config and batch.
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

# 5. Memory checker on the kernels with the most indexing.
SANITIZER_BIN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
sanitizer_failed=()
if [ "${SANITIZER:-1}" = 1 ] && [ -n "$SANITIZER_BIN" ]; then
  for g in attention grouped_gemm router; do
    phase sanitizer 45 "${RUN_BIN[@]}" "$SANITIZER_BIN" --tool memcheck --error-exitcode 9 \
      "$BIN/kernel_check" --no_perf --seed="$SEED" --only="$g" || sanitizer_failed+=("$g")
  done
else
  echo "== compute-sanitizer: not run (${SANITIZER_BIN:-not installed})"
fi

[ "${#sanitizer_failed[@]}" = 0 ] || status=1
echo "== memcheck: ${#sanitizer_failed[@]} group(s) failed or unfinished${sanitizer_failed:+ (${sanitizer_failed[*]})}"

# 6. Side by side, and the verdict against the targets.
echo "== summary"
# cuBLAS may refuse the grouped call (the run then goes on with one product per expert): say so beside its figure.
GROUPED_REFUSED=$(grep -s -m1 'refused the experts' "$LOGDIR/bench_step_cublas_grouped.log")
OURS="$OURS" OURS_DEVICE="$OURS_DEVICE" OURS_GROUPED="$OURS_GROUPED" GROUPED_REFUSED="$GROUPED_REFUSED" OURS_PADDED="$OURS_PADDED" \
  THEIRS="$THEIRS" "$PY" - <<'PYEOF'
import json, os
def load(k):
    try:
        return json.loads(os.environ.get(k, ""))
    except ValueError:
        return None
ours, theirs, ours_device = load("OURS"), load("THEIRS"), load("OURS_DEVICE")
ours_grouped, ours_padded = load("OURS_GROUPED"), load("OURS_PADDED")
if ours:
    print("   ours:         %10.0f tokens/s  %6.1f TFLOP/s  MFU %5.1f%%  (%d x %d tokens, step %.3f s)" % (
        ours["tokens_per_s"], ours["tflops"], 100 * ours["mfu"], ours["micro_batch"], ours["seq"],
        ours["step_time_s_median"]))
    if ours.get("tokens_per_s_without_op_timing"):
        t = ours["tokens_per_s_without_op_timing"]
        print("     without per-op timing (interleaved steps): %.0f tokens/s, MFU %.1f%%" % (
            t, 100 * ours["mfu"] * t / ours["tokens_per_s"]))
    for name in ("attention_fwd", "attention_bwd", "grouped_gemm", "gemm", "cublaslt_plan (host)",
                 "cublaslt_heuristic (host)"):
        op = ours["ops"].get(name)
        if op:
            print("     %-14s %8.2f ms/step  %7.1f TFLOP/s" % (name, op["ms_per_step"], op["tflops"]))
    if ours.get("device_peak_mb"):
        print("     device memory: step peak %.1f GB, saved activations %.1f GB" % (
            ours["device_peak_mb"] / 1e3, ours["activation_mb"] / 1e3))
    if ours_device:
        print("     tensors in device memory (cuda.memory: DEVICE): %.0f tokens/s (%.0f without per-op timing)" % (
            ours_device["tokens_per_s"], ours_device.get("tokens_per_s_without_op_timing") or 0))
    for what, result in (("one cuBLAS grouped call (cuda.grouped_gemm: CUBLAS_GROUPED)", ours_grouped),
                         ("one padded cuBLASLt batch (cuda.grouped_gemm: CUBLASLT_PADDED)", ours_padded)):
        if not result:
            continue
        g = result["ops"].get("grouped_gemm")
        print("     experts' GEMMs as %s: %.0f tokens/s (%.0f without per-op timing)%s" % (
            what, result["tokens_per_s"], result.get("tokens_per_s_without_op_timing") or 0,
            ", grouped_gemm %.2f ms/step" % g["ms_per_step"] if g else ""))
        if result is ours_grouped and os.environ.get("GROUPED_REFUSED"):
            print("       REFUSED, so that figure is the per-expert path's: " + os.environ["GROUPED_REFUSED"])
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
if ours:
    mfu = 100 * ours["mfu"]
    att = (ours["ops"].get("attention_fwd") or {}).get("tflops", 0.0)
    print("VERDICT MFU %.1f%% (target >= 45%%): %s; attention forward %.1f TFLOP/s (target >= 450): %s" % (
        mfu, "met" if mfu >= 45 else "NOT met", att, "met" if att >= 450 else "NOT met"))
else:
    print("VERDICT no step measured: targets not assessed")
PYEOF
echo "== run_device_check: $([ "$status" = 0 ] && echo "all checks passed" || echo "FAILED") (logs in $LOGDIR)"
exit "$status"

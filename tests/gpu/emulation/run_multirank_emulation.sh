#!/usr/bin/env bash
# Multi-rank training through the CUDA backend and NCCL groups, under the CPU emulation: the trainer
# built by run_model_emulation.sh (TARGET=trainer:train, EMU_NCCL=1: the real
# parallel/communicator_nccl.cc and device_groups_nccl_on.cc on include/nccl.h, NCCL over MPI) runs each
# layout under mpirun with device: CUDA, and its loss curve is compared with the CPU trainer's for the
# same layout (tests/compare_runs.py). This is the only place the GPU path of DP (ZeRO reduce-scatter and
# all-gather, started and overlapped), TP (sequence-parallel all-gather and reduce-scatter) and EP (the
# token all-to-all) runs without GPUs: it checks which buffers, counts, groups and order the trainer
# hands NCCL, and that results are in place when read; not NCCL itself, nor speed. First
# tests/gpu/nccl_check runs on the same emulation (one process, then 3 ranks).
#
#   tests/gpu/emulation/run_multirank_emulation.sh [workdir]
# The data: tests/make_text_corpus.py's generated text, byte-tokenized by tools/prepare_data.
# Environment:
#   MODES       ';'-separated EMU_* settings and extra --set flags per pass (default: the synchronous
#               stream; then deferred stream work, reversed blocks, the reference cuBLAS(Lt), device
#               memory the host may not touch (cuda.memory DEVICE) and the experts' products as one
#               cuBLAS grouped call)
#   ONLY        run only the layouts whose names are listed (default: all; see LAYOUTS below; "resume"
#               and "hang" name the exact-resume and hung-rank checks at the end)
#   PRECISIONS  default "FP32 BF16"; FP32 must agree with the CPU to 1e-5 in every loss, BF16 to 2e-2
#               (the CUDA backward rounds its GEMM operands to BF16, the CPU's does not)
# Exit status 0 iff every run finished, agreed with its CPU run, and printed no EMU warning or error;
# EMU_DEVICE_ONLY passes also list host accesses to device memory (a survey line, not a failure).
# Time on 2 cores: ~1 min to build, then ~5-10 s per emulated run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
EMU=$ROOT/tests/gpu/emulation
WORK=${1:-$(mktemp -d)}
cd "$ROOT"
EMU_NCCL=1 TARGET=trainer:train "$EMU/run_model_emulation.sh" "$WORK"
BIN=$WORK/train_emu
bazel build //trainer:train //tools:prepare_data 2>&1 | tail -n 1  # the CPU reference; the data
CPU=bazel-bin/trainer/train
rm -rf "$WORK/text" "$WORK/data"
mkdir -p "$WORK/text"
python3 tests/make_text_corpus.py "$WORK/text" 8 120
bazel-bin/tools/prepare_data --input="$WORK/text" --output="$WORK/data" --val_fraction=0.25 > /dev/null

LAYOUTS=(
  "dp2 2 --set parallel.dp=2"
  "dp2_overlap 2 --set parallel.dp=2 --set parallel.overlap_grad_reduce=true --set parallel.overlap_param_gather=true --set parallel.grad_bucket_elements=20000"
  "tp2 2 --set parallel.tp=2"
  "ep2 2 --set parallel.ep=2 --set parallel.dp=2"
  "dp2tp2ep4 4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4 --set model.num_nextn_predict_layers=1"
)
MODES=${MODES:-"-;EMU_ASYNC=1 EMU_REVERSE=1 EMU_CUBLASLT=ref EMU_DEVICE_ONLY=1 --set=cuda.memory=DEVICE --set=cuda.grouped_gemm=CUBLAS_GROUPED"}
PRECISIONS=${PRECISIONS:-"FP32 BF16"}
common=(--config=configs/tiny_brown.textproto --set "data.train_path=$WORK/data/train"
        --set "data.val_path=$WORK/data/val" --set logging.progress_bar=false --set schedule.total_steps=3
        --set eval.every=3 --set eval.batches=2 --set batch.micro_batch_size=1 --set num_threads=1
        --set model.aux_loss_alpha=0.01)
run_env=()  # EMU_* settings of the next mpi call
mpi() {  # ranks binary log args...
  local np=$1 bin=$2 log=$3
  shift 3
  env "${run_env[@]}" EMU_DEVICES="$np" timeout 600 mpirun --allow-run-as-root --oversubscribe -np "$np" "$bin" "${common[@]}" "$@" \
    > "$log" 2>&1
}

status=0
failed=()
# tests/gpu/nccl_check on the emulation: every collective against MPI on host buffers, then ordered
# after a compute stream as the trainer uses them (one process, then 3 ranks; the stream lazy).
for np in 1 3; do
  log=$WORK/nccl_check_$np.log
  if [[ $np -eq 1 ]]; then
    EMU_ASYNC=1 timeout 300 "$WORK/nccl_check_emu" --single_process > "$log" 2>&1 || true
  else
    EMU_ASYNC=1 EMU_DEVICES=$np timeout 300 mpirun --allow-run-as-root --oversubscribe -np "$np" \
      "$WORK/nccl_check_emu" > "$log" 2>&1 || true
  fi
  echo "nccl_check, $np rank(s): $(grep -c '^PASS' "$log") PASS, $(grep -c '^FAIL' "$log") FAIL"
  if [[ $(grep -c '^PASS' "$log") -lt 20 ]] || grep -q '^FAIL\|^EMU \(warning\|error\)' "$log"; then
    status=1
    failed+=("nccl_check on $np rank(s)")
    tail -n 20 "$log"
  fi
done
IFS=';' read -r -a mode_list <<< "$MODES"
for prec in $PRECISIONS; do
  tol=1e-5
  [[ $prec == BF16 ]] && tol=2e-2
  for layout in "${LAYOUTS[@]}"; do
    set -- $layout
    name=$1 np=$2
    shift 2
    [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]] && continue
    ref=$WORK/${name}_${prec}_cpu
    rm -rf "$ref"
    run_env=()
    mpi "$np" "$CPU" "$ref.log" --set precision="$prec" --set "output_dir=$ref" "$@" ||
      { tail -n 20 "$ref.log"; exit 1; }
    for m in "${!mode_list[@]}"; do
      mode=${mode_list[$m]}
      run_env=()
      mode_flags=()
      words=()
      [[ $mode != "-" ]] && read -r -a words <<< "$mode"
      for w in "${words[@]}"; do
        if [[ $w == --set=* ]]; then mode_flags+=(--set "${w#--set=}"); else run_env+=("$w"); fi
      done
      out=$WORK/${name}_${prec}_emu$m
      rm -rf "$out"
      start=$(date +%s)
      rc=0
      mpi "$np" "$BIN" "$out.log" --set device=CUDA --set precision="$prec" --set "output_dir=$out" "$@" \
        "${mode_flags[@]}" || rc=$?
      verdict=$(python3 tests/compare_runs.py "$ref" "$out" --loss_rtol="$tol" 2>&1 | tail -n 1) || rc=1
      survey=$(grep -h '^EMU device-only' "$out.log" | sort | uniq -c | sed 's/^ *//' | tr '\n' ' ' || true)
      echo "$prec $name [${mode/#-/synchronous}]: $verdict ($(( $(date +%s) - start )) s)${survey:+; $survey}"
      # A CUBLAS_GROUPED mode that fell back to the per-expert path (cuBLAS refused the call) fails too.
      if [[ $rc -ne 0 ]] || grep -q '^EMU \(cuBLASLt:\|warning\|error\)\|refused the experts' "$out.log"; then
        status=1
        failed+=("$prec $name [$mode]")
        tail -n 20 "$out.log"
      fi
    done
  done
done
# Exact resume through NCCL groups and device memory: DP 2 x TP 2 x EP 4 in the strict mode, stopped
# after a checkpoint at step 2 and resumed to step 3, against the same 3 steps without a stop: the same
# losses and the same exported weights, bit for bit.
if [[ " $PRECISIONS " == *" FP32 "* && ( -z ${ONLY:-} || " $ONLY " == *" resume "* ) ]]; then
  read -r -a run_env <<< "EMU_ASYNC=1 EMU_REVERSE=1 EMU_CUBLASLT=ref EMU_DEVICE_ONLY=1"
  resume=(--set device=CUDA --set precision=FP32 --set cuda.memory=DEVICE --set parallel.dp=2 --set parallel.tp=2
          --set parallel.ep=4 --set model.num_nextn_predict_layers=1 --set checkpoint.save_every=2)
  rm -rf "$WORK/resume_straight" "$WORK/resume_stopped"
  start=$(date +%s)
  rc=0
  mpi 4 "$BIN" "$WORK/resume_straight.log" "${resume[@]}" --set "output_dir=$WORK/resume_straight" \
    --export_hf="$WORK/resume_straight/hf" || rc=$?
  mpi 4 "$BIN" "$WORK/resume_stopped_1.log" "${resume[@]}" --set "output_dir=$WORK/resume_stopped" \
    --set schedule.total_steps=2 || rc=$?
  mpi 4 "$BIN" "$WORK/resume_stopped_2.log" "${resume[@]}" --set "output_dir=$WORK/resume_stopped" \
    --export_hf="$WORK/resume_stopped/hf" || rc=$?
  grep -q 'resum' "$WORK/resume_stopped_2.log" || { echo "the second run did not resume"; rc=1; }
  verdict=$(python3 tests/compare_runs.py "$WORK/resume_straight" "$WORK/resume_stopped" --loss_rtol=0 \
            --param_rtol=0 2>&1 | tail -n 2 | tr '\n' ' ') || rc=1
  echo "FP32 resume dp2tp2ep4 [strict, device memory]: $verdict($(( $(date +%s) - start )) s)"
  if [[ $rc -ne 0 ]] || grep -q '^EMU \(cuBLASLt:\|warning\|error\)' "$WORK"/resume_*.log; then
    status=1
    failed+=("FP32 resume dp2tp2ep4")
    tail -n 20 "$WORK/resume_stopped_2.log"
  fi
fi
# A hung rank through NCCL groups (tests/train_hang_test.sh on the emulated trainer, lazy streams): the
# survivors' watchdogs must report the NCCL collective that timed out and end the job.
if [[ -z ${ONLY:-} || " $ONLY " == *" hang "* ]]; then
  bazel build //tools:prepare_data 2>&1 | tail -n 1
  if EMU_ASYNC=1 EMU_DEVICES=4 JOB_LIMIT_S=120 EXPECT_NCCL=1 TRAIN_EXTRA_ARGS="--set device=CUDA" TEST_TMPDIR="$WORK" \
      tests/train_hang_test.sh "$BIN" bazel-bin/tools/prepare_data configs/tiny.textproto tests/make_text_corpus.py \
      > "$WORK/hang.log" 2>&1; then
    echo "hung rank: $(grep -h '^PASS' "$WORK/hang.log"); $(grep -m1 'NCCL collective' "$WORK/hang.log" | cut -c1-120)"
  else
    status=1
    failed+=("hung rank")
    tail -n 20 "$WORK/hang.log"
  fi
fi
if [[ $status -eq 0 ]]; then
  echo "== every run agreed with the CPU"
else
  printf '== FAILED: %s\n' "${failed[@]}"
fi
exit $status

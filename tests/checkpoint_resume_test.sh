#!/usr/bin/env bash
# Checkpoint contract (docs/checkpoints.md), tiny config, FP32 (BF16 too where stated):
#  1. exact resume: 40 steps straight vs 20 + save + resume + 20, identical loss at every step and
#     bit-identical final weights, for 1 rank and for DP=2 x EP=2, in FP32 and in BF16 (DP=2 x EP=2 in
#     BF16 with the gradient reduce-scatter and weight gather overlapped);
#  2. resharding: the DP=2 x EP=2 step-20 checkpoint resumed at 1 rank and at EP=4 x DP=4 continues the
#     loss curve within 1e-5 relative (weights within 1e-4); 1 and 2 again with two MTP modules (TP=2,
#     resharded to DP=2 x TP=2 x EP=4);
#  3. signals: SIGUSR1 to mpirun, or SIGTERM to the ranks, finishes the step, saves, exits 0;
#  4. crash safety: SIGKILL at many moments (saves stretched so some kills land inside one) and the
#     same command always resumes from the newest complete checkpoint, ending with the final weights
#     of the uninterrupted run, bit for bit.
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; COMPARE="$4"; CORPUS="$5"; RUN_MPI="$6"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/ckpt"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 8 120
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.25 >/dev/null

COMMON=(--config="$CONFIG" --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val"
        --set model.vocab_size=257 --set logging.progress_bar=false --set optimizer.lr=3e-3
        --set batch.global_batch_size=4 --set batch.micro_batch_size=1 --set schedule.total_steps=40
        --set eval.batches=4 --set num_threads=1)
run() {  # name ranks [args...]
  local name=$1 np=$2; shift 2
  MPI_TEST_TIMEOUT_S=300 "$RUN_MPI" "$np" "$TRAIN" "${COMMON[@]}" --set "output_dir=$WORK/$name" \
    --export_hf="$WORK/$name/hf" "$@" >> "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; return 1; }
}
# Signals the rank processes (not mpirun) of the run writing to output directory $2.
kill_ranks() {
  local sig=$1 dir=$2 pid found=1
  for pid in $(pgrep -f "output_dir=$dir( |$)" || true); do
    if [ "$(cat /proc/$pid/comm 2>/dev/null)" = train ]; then kill "-$sig" "$pid" 2>/dev/null && found=0; fi
  done
  return $found
}
same_bits() { cmp "$WORK/$1/hf/model.safetensors" "$WORK/$2/hf/model.safetensors"; }

echo "== 1. exact resume"
DP2EP2=(--set parallel.dp=2 --set parallel.ep=2)
run straight1 1
run resumed1 1 --exit_interval=20
grep -q "exit interval reached after step 20" "$WORK/resumed1.log"
run resumed1 1
grep -q "resumed from .*step-00000020 at step 20" "$WORK/resumed1.log"
python3 "$COMPARE" "$WORK/straight1" "$WORK/resumed1" --loss_rtol=0 --param_rtol=0
same_bits straight1 resumed1
run straight4 2 "${DP2EP2[@]}"
run resumed4 2 "${DP2EP2[@]}" --exit_interval=20
cp -r "$WORK/resumed4" "$WORK/reshard1"; cp -r "$WORK/resumed4" "$WORK/reshard_ep4"
run resumed4 2 "${DP2EP2[@]}"
python3 "$COMPARE" "$WORK/straight4" "$WORK/resumed4" --loss_rtol=0 --param_rtol=0
same_bits straight4 resumed4
# BF16 too (the products read the weights' BF16 bits, which the load must rebuild), 1 rank and DP=2 x EP=2,
# the latter with both ZeRO overlaps in 1000-element buckets (weight gathers in flight at the save).
for layout in 1 2; do
  args=(--set precision=BF16)
  [ "$layout" = 2 ] && args+=("${DP2EP2[@]}" --set parallel.grad_bucket_elements=1000
                               --set parallel.overlap_grad_reduce=true --set parallel.overlap_param_gather=true)
  run "straight_bf16_$layout" "$layout" "${args[@]}"
  run "resumed_bf16_$layout" "$layout" "${args[@]}" --exit_interval=20
  run "resumed_bf16_$layout" "$layout" "${args[@]}"
  grep -q "resumed from .*step-00000020 at step 20" "$WORK/resumed_bf16_$layout.log"
  python3 "$COMPARE" "$WORK/straight_bf16_$layout" "$WORK/resumed_bf16_$layout" --loss_rtol=0 --param_rtol=0
  same_bits "straight_bf16_$layout" "resumed_bf16_$layout"
done

echo "== 2. resharding"
rm -rf "$WORK/reshard1/hf" "$WORK/reshard_ep4/hf"
run reshard1 1
grep -q "resharding checkpoint from dp=2 tp=1 ep=2 (2 ranks) to dp=1 tp=1 ep=1 (1 ranks)" "$WORK/reshard1.log"
python3 "$COMPARE" "$WORK/straight4" "$WORK/reshard1" --loss_rtol=1e-5 --param_rtol=1e-4
run reshard_ep4 4 --set parallel.dp=4 --set parallel.ep=4
grep -q "resharding checkpoint" "$WORK/reshard_ep4.log"
python3 "$COMPARE" "$WORK/straight4" "$WORK/reshard_ep4" --loss_rtol=1e-5 --param_rtol=1e-4

echo "== 1b. exact resume and resharding with multi-token prediction (two MoE MTP blocks)"
MTP=(--set model.num_nextn_predict_layers=2 --set model.aux_loss_alpha=0.01 --set seed=7)
run mtp_straight 2 "${MTP[@]}" --set parallel.tp=2
run mtp_resumed 2 "${MTP[@]}" --set parallel.tp=2 --exit_interval=20
cp -r "$WORK/mtp_resumed" "$WORK/mtp_reshard"
run mtp_resumed 2 "${MTP[@]}" --set parallel.tp=2
python3 "$COMPARE" "$WORK/mtp_straight" "$WORK/mtp_resumed" --loss_rtol=0 --param_rtol=0
same_bits mtp_straight mtp_resumed
rm -rf "$WORK/mtp_reshard/hf"
run mtp_reshard 4 "${MTP[@]}" --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4
grep -q "resharding checkpoint from dp=1 tp=2 ep=1 (2 ranks) to dp=2 tp=2 ep=4 (4 ranks)" "$WORK/mtp_reshard.log"
python3 "$COMPARE" "$WORK/mtp_straight" "$WORK/mtp_reshard" --loss_rtol=1e-5 --param_rtol=1e-4

echo "== 3. signals"
signal_run() {  # name signal target(mpirun|ranks)
  local name=$1 sig=$2 target=$3
  MPI_TEST_TIMEOUT_S=120 "$RUN_MPI" 2 "$TRAIN" "${COMMON[@]}" "${DP2EP2[@]}" --set schedule.total_steps=1000000 \
    --set "output_dir=$WORK/$name" > "$WORK/$name.log" 2>&1 &
  local job=$!
  for _ in $(seq 1 200); do grep -q "^step    20 " "$WORK/$name.log" 2>/dev/null && break; sleep 0.1; done
  if [ "$target" = mpirun ]; then
    pkill "-$sig" -f "^mpirun .*output_dir=$WORK/$name( |$)"
  else
    kill_ranks "$sig" "$WORK/$name"
  fi
  local rc=0; wait "$job" || rc=$?
  [ "$rc" = 0 ] || { echo "$name: exit code $rc"; cat "$WORK/$name.log"; return 1; }
  grep -q "stopped by signal after step" "$WORK/$name.log"
  test -f "$WORK/$name/checkpoints/latest"
  local step; step=$(sed -n 's/.*stopped by signal after step \([0-9]*\).*/\1/p' "$WORK/$name.log")
  grep -q "step-$(printf %08d "$step")" "$WORK/$name/checkpoints/latest"
  echo "$name: saved and stopped after step $step"
}
signal_run sigusr1_mpirun USR1 mpirun
signal_run sigterm_ranks TERM ranks

echo "== 4. crash safety"
CRASH=(--set checkpoint.save_every=3 --set checkpoint.keep_last=2 --set schedule.total_steps=60)
run crash_ref 2 "${DP2EP2[@]}" "${CRASH[@]}"
kills=0
for delay in 0.4 0.9 0.6 1.3 0.5 1.1 0.7 1.6 0.8 1.0 0.45 1.2; do
  steps_before=$(cat "$WORK/crash.log" 2>/dev/null | grep -c "^step " || true)
  MOE_TEST_SAVE_DELAY_MS=150 MPI_TEST_TIMEOUT_S=120 "$RUN_MPI" 2 "$TRAIN" "${COMMON[@]}" "${DP2EP2[@]}" "${CRASH[@]}" \
    --set "output_dir=$WORK/crash" --export_hf="$WORK/crash/hf" >> "$WORK/crash.log" 2>&1 &
  job=$!
  # Count the delay from this job's first step, not from its launch: start-up time varies with the
  # machine's load, and kills during start-up test nothing.
  for _ in $(seq 1 600); do
    kill -0 "$job" 2>/dev/null || break
    [ "$(grep -c "^step " "$WORK/crash.log" || true)" -gt "${steps_before:-0}" ] && break
    sleep 0.1
  done
  sleep "$delay"
  if kill -0 "$job" 2>/dev/null; then
    kill_ranks KILL "$WORK/crash" || true
    kills=$((kills + 1))
  fi
  wait "$job" || true
  [ -f "$WORK/crash/hf/model.safetensors" ] && break
done
# Finish whatever is left, then compare with the uninterrupted run.
[ -f "$WORK/crash/hf/model.safetensors" ] || run crash 2 "${DP2EP2[@]}" "${CRASH[@]}"
resumes=$(grep -c "resumed from" "$WORK/crash.log" || true)
echo "crash safety: $kills kills, $resumes resumes"
[ "$kills" -ge 3 ] || { echo "too few kills landed ($kills)"; exit 1; }
[ "$resumes" -ge 2 ] || { echo "too few resumes ($resumes)"; exit 1; }
cmp "$WORK/crash_ref/hf/model.safetensors" "$WORK/crash/hf/model.safetensors"
echo PASS

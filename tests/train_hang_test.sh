#!/usr/bin/env bash
# The trainer under a hung rank: 4 ranks (dp=2 tp=2 ep=4, tiny config, 20000 steps so the job is still
# running, parallel.collective_timeout_s=5; the gradient reduce-scatter overlapped with the backward and
# the weight all-gather with the forward, in small buckets, so collectives are in flight when it
# stops). Once a few steps are logged, rank 2 is stopped with SIGSTOP. Its peers' next collective
# must time out, print a line naming their rank, the group and the collective, and MPI_Abort, so
# mpirun exits non-zero within 40 s of the SIGSTOP. `timeout` bounds the job so the test can never
# hang; the EXIT trap continues and kills whatever ranks are left.
#   train_hang_test.sh TRAIN PREPARE_DATA CONFIG MAKE_TEXT_CORPUS [RUN_MPI]
# RUN_MPI (parallel/testing/run_mpi.sh) starts the job; without it, mpirun is called here with the same
# isolation (own session and shared-memory directories, so concurrent sandboxed jobs cannot collide).
# TRAIN_EXTRA_ARGS (words) go to the trainer, JOB_LIMIT_S (default 60) bounds the job, and with
# EXPECT_NCCL=1 the timeout must be reported by an NCCL group's watchdog
# (tests/gpu/emulation/run_multirank_emulation.sh runs this on the emulated CUDA backend).
set -u
TRAIN=$1; PREPARE=$2; CONFIG=$3; CORPUS=$4; RUN_MPI=${5:-}
case "$RUN_MPI" in ""|/*) ;; *) RUN_MPI="$PWD/$RUN_MPI" ;; esac
WORK="${TEST_TMPDIR:-$(mktemp -d)}/train_hang"
VICTIM_RANK=2
LIMIT_S=40
fail() { echo "FAIL: $*"; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 8 120 || fail "corpus generation failed"
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.25 >/dev/null ||
  fail "prepare_data failed"

job=""
tree_pids=""   # the job's processes (launcher, timeout, mpirun, ranks), recorded once the ranks run
session=""
# Continues and kills every rank still there, then the launcher processes (only pids that still run
# one of our commands), then removes the session directories.
cleanup() {
  local p
  for p in $tree_pids; do
    if grep -q train "/proc/$p/cmdline" 2>/dev/null; then
      kill -CONT "$p" 2>/dev/null
      kill -KILL "$p" 2>/dev/null
    fi
  done
  for p in $tree_pids; do
    grep -qE "mpirun|timeout|run_mpi" "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  done
  [ -n "$job" ] && kill -KILL "$job" 2>/dev/null
  [ -n "$session" ] && rm -rf "$session"
  return 0
}
trap cleanup EXIT
# Prints the pids of every descendant of process $1.
descendants() {
  local c
  for c in $(pgrep -P "$1"); do
    echo "$c"
    descendants "$c"
  done
}

LOG="$WORK/job.log"
launch() {  # NP PROGRAM ARGS...: 4 ranks on this machine, at most 60 s
  if [ -n "$RUN_MPI" ]; then
    MPI_TEST_TIMEOUT_S=60 "$RUN_MPI" "$@"
  else
    # self,vader without CMA single-copy (sandboxes may forbid process_vm_readv), as run_mpi.sh does.
    local np=$1
    shift
    TMPDIR="$session" timeout -k 5 "${JOB_LIMIT_S:-60}" mpirun --allow-run-as-root --oversubscribe -np "$np" \
      --mca orte_tmpdir_base "$session" --mca btl self,vader \
      --mca btl_vader_single_copy_mechanism none --mca btl_vader_backing_directory "$session" "$@"
  fi
}
[ -n "$RUN_MPI" ] || session=$(mktemp -d /tmp/moe_hang.XXXXXX) || fail "mktemp failed"
launch 4 "$TRAIN" --config="$CONFIG" \
  --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val" \
  --set model.vocab_size=257 --set "output_dir=$WORK/run" --set logging.progress_bar=false \
  --set schedule.total_steps=20000 --set batch.micro_batch_size=1 --set num_threads=1 \
  --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4 --set parallel.collective_timeout_s=5 \
  --set parallel.overlap_grad_reduce=true --set parallel.overlap_param_gather=true \
  --set parallel.grad_bucket_elements=1000 ${TRAIN_EXTRA_ARGS:-} \
  >"$LOG" 2>&1 &
job=$!   # the launcher: mpirun is below it, and the ranks are mpirun's children

# Waits (up to JOB_LIMIT_S) for 3 logged steps, then finds the ranks among the job's processes: the trainer
# processes, each with its OMPI_COMM_WORLD_RANK in its environment.
victim=""
for _ in $(seq $(( ${JOB_LIMIT_S:-60} * 10 ))); do
  kill -0 "$job" 2>/dev/null || { cat "$LOG"; fail "the job ended before it was stopped"; }
  if [ "$(grep -c '^step' "$LOG")" -ge 3 ]; then
    tree_pids=$(descendants "$job")
    for p in $tree_pids; do
      grep -q train "/proc/$p/cmdline" 2>/dev/null || continue
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$VICTIM_RANK"; then
        victim=$p
      fi
    done
    break
  fi
  sleep 0.1
done
[ -n "$victim" ] || { cat "$LOG"; fail "did not find rank $VICTIM_RANK among the job's processes ($tree_pids)"; }
steps_before=$(grep -c '^step' "$LOG")
kill -STOP "$victim" || fail "could not stop rank $VICTIM_RANK (pid $victim)"
stopped=$(date +%s.%N)
echo "stopped rank $VICTIM_RANK (pid $victim) after $steps_before logged steps"

wait "$job"
rc=$?
took=$(echo "$(date +%s.%N) $stopped" | awk '{printf "%.1f", $1 - $2}')
echo "--- mpirun exit code $rc, ${took} s after SIGSTOP; output after the last step:"
grep -v '^step' "$LOG" | grep -v '^\s*$' | tail -25

[ "$rc" -ne 0 ] || fail "mpirun exited 0 although rank $VICTIM_RANK was stopped"
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "the job hung until timeout(1) killed it (rc $rc)"
awk -v t="$took" -v l="$LIMIT_S" 'BEGIN { exit !(t <= l) }' ||
  fail "mpirun took $took s after SIGSTOP to exit (limit $LIMIT_S s)"
grep -qE "moe: rank [013] \(world\): (NCCL )?collective [A-Za-z]+ on group '[^']+' \(size [0-9]+, group rank [0-9]+.*\) did not complete within 5 s" "$LOG" ||
  fail "no line names a surviving rank, its group and the collective that timed out"
grep -q "did not complete within" "$LOG" || fail "output lacks 'did not complete within'"
if [ "${EXPECT_NCCL:-0}" = 1 ]; then
  grep -qE "\(world\): NCCL collective [A-Za-z]+ on group .* did not complete within" "$LOG" ||
    fail "no NCCL group's watchdog reported the timeout"
fi
echo "PASS (others exited ${took} s after the SIGSTOP)"

#!/bin/bash
# Hang test: 4 ranks repeat a collective with a 5 s timeout; after ~1 s one rank is stopped with
# SIGSTOP. The others must time out, print a line naming the stuck collective and their rank, and
# abort, so mpirun exits non-zero within ~30 s. `timeout` bounds everything; leftovers are killed.
#   hang_test.sh RUN_MPI WORKER      (RUN_MPI: parallel/testing/run_mpi.sh)
set -u
run_mpi=$1
worker=$2
case "$worker" in /*) ;; *) worker="$PWD/$worker" ;; esac
base="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*"; exit 1; }

# Kills what is left of one run's ranks (by the pids they wrote; only if still our worker).
cleanup_ranks() {
  local dir=$1 f p
  for f in "$dir"/pid.[0-9]*; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if grep -q hang_worker "/proc/$p/cmdline" 2>/dev/null; then
      kill -CONT "$p" 2>/dev/null
      kill -KILL "$p" 2>/dev/null
    fi
  done
}

# run_case MODE EXPECTED_TEXT...: one mpirun with rank 2 stopped; checks exit code, time and stderr.
run_case() {
  local mode=$1
  shift
  local dir="$base/$mode"
  mkdir -p "$dir"
  trap "cleanup_ranks '$dir'" EXIT
  MPI_TEST_TIMEOUT_S=60 "$run_mpi" 4 "$worker" "$dir" "$mode" >"$dir/stdout.txt" 2>"$dir/stderr.txt" &
  local job=$!
  local i
  for i in $(seq 300); do
    [ "$(ls "$dir"/pid.[0-9] 2>/dev/null | wc -l)" -eq 4 ] && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  [ "$(ls "$dir"/pid.[0-9] 2>/dev/null | wc -l)" -eq 4 ] || {
    cat "$dir/stderr.txt"
    fail "$mode: the 4 ranks did not start"
  }
  sleep 1
  local victim
  victim=$(cat "$dir/pid.2")
  kill -STOP "$victim" || fail "$mode: could not stop rank 2 (pid $victim)"
  local stopped=$SECONDS
  wait "$job"
  local rc=$?
  local took=$((SECONDS - stopped))
  cleanup_ranks "$dir"
  trap - EXIT
  echo "--- $mode: mpirun exit code $rc, $took s after SIGSTOP; stderr:"
  grep -v '^\s*$' "$dir/stderr.txt" | head -20
  [ "$rc" -ne 0 ] || fail "$mode: mpirun exited 0 although rank 2 was stopped"
  [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "$mode: the job hung until timeout(1) killed it"
  [ "$took" -le 30 ] || fail "$mode: took $took s after SIGSTOP (limit 30)"
  local want
  for want in "$@"; do
    grep -qE "$want" "$dir/stderr.txt" || fail "$mode: stderr lacks /$want/"
  done
}

run_case allreduce \
  "moe: rank [013] \(world\): collective AllReduceSum on group 'world' \(size 4, group rank [013], 16384 floats\) did not complete within 5 s; a peer rank is dead or hung"
# dp groups of a (2, 2, 2) mesh are {0, 2} and {1, 3}: only rank 0 waits on the stopped rank 2.
run_case alltoallv \
  "moe: rank 0 \(world\): collective AllToAllV on group 'dp' \(size 2, group rank 0, send 16384, recv 16384 floats\) did not complete within 5 s" \
  "group members: world ranks 0,2"
echo PASS

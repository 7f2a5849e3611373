#!/bin/bash
# Runs a program as NP MPI ranks on this machine (oversubscribed), for multi-rank sh_tests:
#   run_mpi.sh NP PROGRAM [ARGS...]
# Exits with mpirun's status (non-zero if any rank fails). `timeout` bounds the whole job
# (MPI_TEST_TIMEOUT_S, default 120 s) so a bug can never hang the test suite.
#
# Each job gets its own Open MPI session directory and shared-memory backing directory. Bazel runs
# each test in its own PID namespace, so concurrent mpiruns all have the same small pid and hence the
# same Open MPI job id; with the default shared /tmp and /dev/shm paths, concurrent jobs then collide
# ("orte_init failed ... getting local rank failed").
set -u
np=$1
prog=$2
shift 2
case "$prog" in /*) ;; *) prog="$PWD/$prog" ;; esac
session=$(mktemp -d /tmp/moe_mpi.XXXXXX) || exit 1
shm=$(mktemp -d /dev/shm/moe_mpi.XXXXXX 2>/dev/null || mktemp -d /tmp/moe_mpi_shm.XXXXXX) || exit 1
trap 'rm -rf "$session" "$shm"' EXIT
# Shared memory between ranks (vader) without the CMA single-copy path, which sandboxes may forbid.
TMPDIR="$session" timeout -k 5 "${MPI_TEST_TIMEOUT_S:-120}" \
  mpirun --allow-run-as-root --oversubscribe -np "$np" \
  --mca orte_tmpdir_base "$session" \
  --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
  --mca btl_vader_backing_directory "$shm" \
  "$prog" "$@"

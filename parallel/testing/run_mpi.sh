#!/bin/bash
# Runs a program as NP MPI ranks on this machine (oversubscribed), for multi-rank sh_tests:
#   run_mpi.sh NP PROGRAM [ARGS...]
# Fails if any rank fails; `timeout` bounds the whole job so a bug can never hang the test suite.
set -u
np=$1
prog=$2
shift 2
case "$prog" in /*) ;; *) prog="$PWD/$prog" ;; esac
# Shared memory between ranks (vader) without the CMA single-copy path, which sandboxes may forbid.
exec timeout -k 5 "${MPI_TEST_TIMEOUT_S:-120}" mpirun --allow-run-as-root --oversubscribe -np "$np" \
  --mca btl self,vader --mca btl_vader_single_copy_mechanism none "$prog" "$@"

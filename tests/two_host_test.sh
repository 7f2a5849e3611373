#!/usr/bin/env bash
# Two "hosts" on one machine (Open MPI with an rsh agent, as on one machine): two network namespaces joined by a veth
# pair (10.213.7.1/24 and 10.213.7.2/24, nothing in the machine's own namespace), each with its own
# hostname (UTS namespace). mpirun starts inside host A; an rsh agent stands in for ssh and starts
# Open MPI's daemon inside host B via `ip netns exec`. The trainer (tiny, dp=2 tp=2 ep=4, 10 steps,
# FP32, lr 3e-3) runs 2 ranks per host over TCP, then the same job runs on one host (plain mpirun), and
# the two must agree: loss within 1e-5 relative at every step, final weights within 1e-4 per tensor.
# The data and the output directory are on the filesystem both hosts share (as a cluster's shared
# filesystem would be: every rank writes its own checkpoint shard under output_dir/checkpoints, and the
# run saves one at the end); /tmp and /dev/shm are private to host B (tmpfs), so nothing may rely on them
# being shared.
# Needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN); where `ip netns add` fails the test prints SKIP and passes.
# Run unsandboxed (tags "local"). Deletes its namespaces (and with them the veth pair) on exit.
#   two_host_test.sh TRAIN PREPARE_DATA CONFIG COMPARE_RUNS MAKE_TEXT_CORPUS [RUN_MPI]
# RUN_MPI (parallel/testing/run_mpi.sh) starts the one-host job; without it, plain mpirun.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
TRAIN=$(abspath "$1"); PREPARE=$(abspath "$2"); CONFIG=$(abspath "$3"); COMPARE=$(abspath "$4")
CORPUS=$(abspath "$5"); RUN_MPI=${6:+$(abspath "$6")}
WORK=$(abspath "${TEST_TMPDIR:-$(mktemp -d)}")/two_host
fail() { echo "FAIL: $*"; exit 1; }

NET=10.213.7
ADDR_A=$NET.1
ADDR_B=$NET.2
NS_A=moe2h-$$-a   # namespace (and hostname) of each host; the pid keeps concurrent runs apart
NS_B=moe2h-$$-b

rm -rf "$WORK"
mkdir -p "$WORK/text"

command -v ip >/dev/null || { echo "SKIP: no 'ip' command (iproute2), cannot create network namespaces"; exit 0; }
if ! err=$(ip netns add "$NS_A" 2>&1); then
  echo "SKIP: cannot create network namespaces here (ip netns add: $err); needs root / CAP_NET_ADMIN"
  [ "$(id -u)" -ne 0 ] || echo "(running as root: a sandbox? the Bazel target must be tagged \"local\")"
  exit 0
fi

# Kills whatever still runs inside the namespaces, then deletes them (the veth pair goes with them).
cleanup() {
  set +e
  local ns p
  for ns in "$NS_A" "$NS_B"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  ip -n "$NS_A" link del veth-a 2>/dev/null
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  return 0
}
trap cleanup EXIT

# From here on, every failure fails the test.
ip netns add "$NS_B"
ip link add veth-a netns "$NS_A" type veth peer name veth-b netns "$NS_B"
ip -n "$NS_A" addr add "$ADDR_A/24" dev veth-a
ip -n "$NS_B" addr add "$ADDR_B/24" dev veth-b
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set veth-a up
ip -n "$NS_B" link set veth-b up

python3 "$CORPUS" "$WORK/text" 8 120
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.25 >/dev/null
OUT_TWO=$WORK/two_host_run

# enter_host.sh a|b CMD...: runs CMD as that host, already inside its network namespace and a new
# UTS + mount namespace: sets the hostname; host B also gets a private /dev/shm and /tmp (the /tmp one
# only when nothing the job reads lives under /tmp: the work directory, the binary, the config and the
# source tree the runfiles point into — e.g. a checkout cloned under /tmp).
PRIVATE_TMP=1
for p in "$WORK" "$(readlink -f "$TRAIN")" "$(readlink -f "$CONFIG")" "$(pwd -P)"; do
  case "$p" in /tmp/*) PRIVATE_TMP=0 ;; esac
done
ENTER=$WORK/enter_host.sh
cat >"$ENTER" <<EOF
#!/bin/sh
set -e
host=\$1; shift
if [ "\$host" = a ]; then hostname "$NS_A"; else
  hostname "$NS_B"
  mount -t tmpfs tmpfs /dev/shm
  if [ "$PRIVATE_TMP" = 1 ]; then mount -t tmpfs tmpfs /tmp; fi
fi
exec "\$@"
EOF
# The rsh agent: Open MPI calls it as `AGENT [options] HOST COMMAND...` (like ssh). It runs the command
# through a shell inside that host with a clean environment, as a remote login would.
AGENT=$WORK/rsh_agent.sh
cat >"$AGENT" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host=\$1; shift
case "\$host" in
  $ADDR_A) ns=$NS_A; id=a ;;
  $ADDR_B) ns=$NS_B; id=b ;;
  *) echo "rsh_agent: unknown host \$host" >&2; exit 1 ;;
esac
echo "rsh_agent: \$host: \$*" >>"$WORK/rsh_agent.log"
exec ip netns exec "\$ns" unshare --uts --mount sh "$ENTER" "\$id" \
  env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="\${HOME:-/root}" /bin/sh -c "\$*"
EOF
chmod +x "$ENTER" "$AGENT"
printf '%s slots=2\n%s slots=2\n' "$ADDR_A" "$ADDR_B" >"$WORK/hostfile"

# two_host_mpirun ARGS...: mpirun of 4 ranks across both hosts, started on host A; TCP only, and
# only on the test's own /24 (both the MPI traffic and Open MPI's out-of-band channel).
two_host_mpirun() {
  timeout -k 5 120 ip netns exec "$NS_A" unshare --uts sh "$ENTER" a \
    mpirun --allow-run-as-root --hostfile "$WORK/hostfile" --mca plm_rsh_agent "$AGENT" \
    --mca btl tcp,self --mca btl_tcp_if_include "$NET.0/24" --mca oob_tcp_if_include "$NET.0/24" \
    -np 4 "$@"
}
# one_host_mpirun ARGS...: the same 4 ranks on this machine (outside the namespaces).
one_host_mpirun() {
  if [ -n "$RUN_MPI" ]; then
    MPI_TEST_TIMEOUT_S=120 "$RUN_MPI" 4 "$@"
  else
    timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe -np 4 \
      --mca btl self,vader --mca btl_vader_single_copy_mechanism none "$@"
  fi
}

TRAIN_ARGS=(--config="$CONFIG" --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val"
  --set model.vocab_size=257 --set logging.progress_bar=false --set precision=FP32 --set optimizer.lr=3e-3
  --set batch.global_batch_size=4 --set batch.micro_batch_size=1 --set schedule.total_steps=10
  --set eval.batches=4 --set num_threads=1 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4
  --set parallel.collective_timeout_s=60)

# 1. The plumbing: ranks 0,1 on host A and 2,3 on host B.
t0=$SECONDS
two_host_mpirun /bin/sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname)"' >"$WORK/where.log" 2>&1 ||
  { cat "$WORK/where.log"; fail "mpirun across the two hosts failed"; }
for want in "rank 0 on $NS_A" "rank 1 on $NS_A" "rank 2 on $NS_B" "rank 3 on $NS_B"; do
  grep -qx "$want" "$WORK/where.log" || { cat "$WORK/where.log"; fail "expected '$want'"; }
done
echo "placement:"; sort "$WORK/where.log"

# 2. The trainer on two hosts.
t1=$SECONDS
two_host_mpirun "$TRAIN" "${TRAIN_ARGS[@]}" --set "output_dir=$OUT_TWO" --export_hf="$OUT_TWO/hf" \
  >"$WORK/two_host.log" 2>&1 || { cat "$WORK/two_host.log"; fail "training on two hosts failed"; }
echo "two hosts: $((SECONDS - t1)) s"

# 3. The same job on one host.
t2=$SECONDS
one_host_mpirun "$TRAIN" "${TRAIN_ARGS[@]}" --set "output_dir=$WORK/one_host_run" --export_hf="$WORK/one_host_run/hf" \
  >"$WORK/one_host.log" 2>&1 || { cat "$WORK/one_host.log"; fail "training on one host failed"; }
echo "one host: $((SECONDS - t2)) s"

python3 "$COMPARE" "$WORK/one_host_run" "$OUT_TWO" --loss_rtol=1e-5 --param_rtol=1e-4
echo "PASS ($((SECONDS - t0)) s)"

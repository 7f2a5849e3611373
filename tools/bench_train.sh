#!/usr/bin/env bash
# Training throughput of one config at 1, 2 and 4 ranks on this machine, in one run (the machines are
# noisy: compare the ratios, not the absolute numbers). Reports the median tokens/s and MFU over the
# steps after warm-up, and the ratio to 1 rank.
#   tools/bench_train.sh [config] [steps]     (needs data_cache/brown from tools/setup.sh)
# Then the CPU speed benchmark: configs/bench_wide.textproto on one rank at 1 and 2 threads, BF16 and FP32,
# side by side with the same model in PyTorch eager (tools/torch_baseline.py; Debian's python3-torch,
# run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset so OpenBLAS picks its current kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/brown_small.textproto}
STEPS=${2:-30}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
bazel build //trainer:train //tools:cpu_peak
run() {  # name ranks [--set ...]
  local name=$1 np=$2; shift 2
  mpirun --allow-run-as-root --oversubscribe ${MPI_FLAGS:-} -np "$np" bazel-bin/trainer/train --config="${RUN_CONFIG:-$CONFIG}" \
    --set "output_dir=$OUT/$name" --set schedule.total_steps="$STEPS" --set eval.every=0 \
    --set checkpoint.save_at_end=false --set logging.progress_bar=false --set batch.micro_batch_size=4 "$@" \
    > "$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log"; return 1; }
  python3 - "$OUT/$name/metrics.jsonl" "$name" "$np" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][5:]  # skip warm-up
tps = statistics.median(r["tokens_per_s"] for r in rows)
mfu = statistics.median(r["mfu"] for r in rows)
gemm = statistics.median(r["gemm_fraction"] for r in rows)
sync = f"  grad sync {1e3 * statistics.median(r['grad_sync_s'] for r in rows):6.1f} ms/step" if "grad_sync_s" in rows[0] else ""
log = open(sys.argv[1].replace("/metrics.jsonl", ".log")).read()  # $OUT/NAME.log
peak = re.search(r"MFU denominator ([0-9.]+) GFLOP/s", log).group(1)
print(f"{sys.argv[2]:<16} ranks={sys.argv[3]}  tokens/s={tps:9.0f}  MFU={100*mfu:5.1f}%  "
      f"GEMM share of step={100*gemm:4.1f}%  MFU denominator (all ranks)={peak} GFLOP/s{sync}")
open(sys.argv[1] + ".tps", "w").write(str(tps))
PY
}
run 1rank 1 --set parallel.dp=1 --set parallel.ep=1
run dp2 2 --set parallel.dp=2 --set parallel.ep=1
# The gradient reduce-scatter overlapped with the backward, against the same buckets without.
BUCKETS="--set parallel.grad_bucket_elements=262144"
run dp2_buckets 2 --set parallel.dp=2 --set parallel.ep=1 $BUCKETS
run dp2_overlap 2 --set parallel.dp=2 --set parallel.ep=1 $BUCKETS --set parallel.overlap_grad_reduce=true
run dp2_ep2 2 --set parallel.dp=2 --set parallel.ep=2
run tp2 2 --set parallel.dp=1 --set parallel.tp=2 --set parallel.ep=1
run dp4_ep4 4 --set parallel.dp=4 --set parallel.ep=4
run dp2_tp2_ep4 4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4
base=$(cat "$OUT/1rank/metrics.jsonl.tps")
for r in dp2 dp2_buckets dp2_overlap dp2_ep2 tp2 dp4_ep4 dp2_tp2_ep4; do
  python3 -c "print(f'{\"$r\":<16} / 1 rank = {$(cat "$OUT/$r/metrics.jsonl.tps") / $base:.2f}x')"
done

# The CPU speed benchmark: bench_wide, one rank, against PyTorch eager FP32 in its best thread setting.
# WIDE_ROUNDS rounds (default 3), each running every setting back to back, so each ratio compares runs
# minutes apart; the medians over the rounds are the figures to quote (these machines drift by 1.5x).
# Each round first measures the MFU denominator with tools/cpu_peak (oneDNN's matmul, best of three) at
# 1 and 2 threads and records it for that round's runs (logging.peak_tflops), instead of each run timing
# its own at start-up.
# --bind-to none: Open MPI would bind the single rank to one core.
WIDE=configs/bench_wide.textproto
ROUNDS=${WIDE_ROUNDS:-3}
export MPI_FLAGS="--bind-to none"
have_torch=0
/usr/bin/python3 -c "import torch" 2>/dev/null && have_torch=1
for round in $(seq "$ROUNDS"); do
  echo "wide round $round of $ROUNDS"
  for threads in 1 2; do
    bazel-bin/tools/cpu_peak --threads=$threads | grep '^{' > "$OUT/peak_${threads}t_r$round.json"
    cat "$OUT/peak_${threads}t_r$round.json"
  done
  for precision in BF16 FP32; do
    for threads in 1 2; do
      peak=$(python3 -c "import json; print(json.load(open('$OUT/peak_${threads}t_r$round.json'))['${precision,,}_gflops'] / 1e3)")
      RUN_CONFIG=$WIDE run "wide_${precision}_${threads}t_r$round" 1 --set precision=$precision \
        --set num_threads=$threads --set batch.micro_batch_size=8 --set logging.peak_tflops=$peak
    done
  done
  if [ "$have_torch" = 1 ]; then
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 tools/torch_baseline.py --config=$WIDE \
      --threads=1,2 > "$OUT/torch_r$round.log"
    grep TORCH_RESULT "$OUT/torch_r$round.log"
  fi
done
[ "$have_torch" = 1 ] || echo "PyTorch baseline skipped: Debian's python3-torch is not installed (apt-get install python3-torch)"
python3 - "$OUT" "$ROUNDS" "$have_torch" <<'PY'
import json, statistics, sys
out, rounds, have_torch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def tps(name):
    return float(open(f"{out}/{name}/metrics.jsonl.tps").read())
def mfu(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl")][5:]
    return statistics.median(r["mfu"] for r in rows)
scaling, vs_torch, mfus = [], [], []
for r in range(1, rounds + 1):
    ours = {f"{p}_{t}t": tps(f"wide_{p}_{t}t_r{r}") for p in ("BF16", "FP32") for t in (1, 2)}
    scaling.append(ours["BF16_2t"] / ours["BF16_1t"])
    mfus.append(mfu(f"wide_BF16_2t_r{r}"))
    line = (f"wide round {r}: BF16 1t {ours['BF16_1t']:.0f}, 2t {ours['BF16_2t']:.0f} tokens/s "
            f"({scaling[-1]:.2f}x); FP32 1t {ours['FP32_1t']:.0f}, 2t {ours['FP32_2t']:.0f}; "
            f"BF16 2t MFU {100 * mfus[-1]:.1f}%")
    if have_torch:
        torch = max(json.loads(l.split(" ", 1)[1])["tokens_per_s"]
                    for l in open(f"{out}/torch_r{r}.log") if l.startswith("TORCH_RESULT"))
        best = max(ours, key=ours.get)
        vs_torch.append(ours[best] / torch)
        line += f"; PyTorch eager FP32 best {torch:.0f}, ours best ({best}) = {vs_torch[-1]:.2f}x"
    print(line)
print(f"wide, median of {rounds} rounds: BF16 2 threads / 1 thread = {statistics.median(scaling):.2f}x; "
      f"BF16 2t MFU = {100 * statistics.median(mfus):.1f}%"
      + (f"; ours / PyTorch eager = {statistics.median(vs_torch):.2f}x" if vs_torch else ""))
PY

#!/usr/bin/env bash
# Training throughput of one config at 1, 2 and 4 ranks on this machine, in one run (the machines are
# noisy: compare the ratios, not the absolute numbers). Reports the median tokens/s and MFU over the
# steps after warm-up, and the ratio to 1 rank.
#   tools/bench_train.sh [config] [steps]     (needs data_cache/brown from tools/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/brown_small.textproto}
STEPS=${2:-30}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {  # name ranks [--set ...]
  local name=$1 np=$2; shift 2
  mpirun --allow-run-as-root --oversubscribe -np "$np" bazel-bin/trainer/train --config="$CONFIG" \
    --set "output_dir=$OUT/$name" --set schedule.total_steps="$STEPS" --set eval.every=0 \
    --set checkpoint.save_at_end=false --set logging.progress_bar=false --set batch.micro_batch_size=4 "$@" \
    > "$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log"; return 1; }
  python3 - "$OUT/$name/metrics.jsonl" "$name" "$np" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][5:]  # skip warm-up
tps = statistics.median(r["tokens_per_s"] for r in rows)
mfu = statistics.median(r["mfu"] for r in rows)
gemm = statistics.median(r["gemm_fraction"] for r in rows)
log = open(sys.argv[1].replace("/metrics.jsonl", ".log")).read()  # $OUT/NAME.log
peak = re.search(r"peak measured at ([0-9.]+) GFLOP/s", log).group(1)
print(f"{sys.argv[2]:<16} ranks={sys.argv[3]}  tokens/s={tps:9.0f}  MFU={100*mfu:5.1f}%  "
      f"GEMM share of step={100*gemm:4.1f}%  FP32 GEMM peak (all ranks)={peak} GFLOP/s")
open(sys.argv[1] + ".tps", "w").write(str(tps))
PY
}
run 1rank 1 --set parallel.dp=1 --set parallel.ep=1
run dp2 2 --set parallel.dp=2 --set parallel.ep=1
run dp2_ep2 2 --set parallel.dp=2 --set parallel.ep=2
run tp2 2 --set parallel.dp=1 --set parallel.tp=2 --set parallel.ep=1
run dp4_ep4 4 --set parallel.dp=4 --set parallel.ep=4
run dp2_tp2_ep4 4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4
# A wider model of the same shape (4x the hidden size), one rank.
run wide_1rank 1 --set parallel.dp=1 --set parallel.ep=1 --set model.hidden_size=512 \
  --set model.intermediate_size=1536 --set model.moe_intermediate_size=256 --set model.num_attention_heads=8 \
  --set model.q_lora_rank=256 --set model.kv_lora_rank=128 --set model.qk_nope_head_dim=64 \
  --set model.qk_rope_head_dim=32 --set model.v_head_dim=64
base=$(cat "$OUT/1rank/metrics.jsonl.tps")
for r in dp2 dp2_ep2 tp2 dp4_ep4 dp2_tp2_ep4; do
  python3 -c "print(f'{\"$r\":<16} / 1 rank = {$(cat "$OUT/$r/metrics.jsonl.tps") / $base:.2f}x')"
done

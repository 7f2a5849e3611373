#!/usr/bin/env bash
# bench_step on the CPU with the tiny config: a timed run prints its BENCH_RESULT JSON with the op
# breakdown, the HF config.json it writes parses, and a bad --device is one clear error. The step check
# (--check_against_cpu) runs too, but on a CPU-only machine it compares two instances of the same CPU
# backend, so here it only proves the plumbing; it compares CUDA with the CPU on a GPU machine
# (tests/gpu/run_device_check.sh).
set -euo pipefail
BENCH="$1"
OUT="${TEST_TMPDIR:-$(mktemp -d)}/bench"
mkdir -p "$OUT"
"$BENCH" --config=configs/tiny.textproto --set precision=BF16 --steps=2 --warmup=1 --micro_batches=2 \
  --steps_without_op_times --check_against_cpu --check_seq=16 --hf_config_out="$OUT/config.json" --threads=1 > "$OUT/log" 2>&1 ||
  { cat "$OUT/log"; exit 1; }
cat "$OUT/log"
[ "$(grep -c '^PASS  step_vs_cpu' "$OUT/log")" = 3 ] || { echo "expected 3 PASS lines"; exit 1; }
python3 - "$OUT/log" "$OUT/config.json" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("BENCH_RESULT ")][-1]
r = json.loads(line[len("BENCH_RESULT "):])
assert r["device"] == "CPU" and r["precision"] == "BF16" and r["tokens_per_step"] == 2 * 4 * 32, r
assert r["tokens_per_s"] > 0 and r["step_time_s_median"] > 0 and 0 < r["mfu"] < 1, r
assert r["tokens_per_s_without_op_timing"] > 0, r  # the interleaved steps without per-op timing
for op in ("gemm", "grouped_gemm", "attention_fwd", "attention_bwd"):
    assert r["ops"][op]["ms_per_step"] > 0, op
hf = json.load(open(sys.argv[2]))
assert hf["model_type"] == "deepseek_v3" and hf["hidden_size"] == 64 and hf["n_routed_experts"] == 8, hf
print("BENCH_RESULT and config.json OK")
PY
if "$BENCH" --config=configs/tiny.textproto --device=TPU > "$OUT/bad" 2>&1; then
  echo "--device=TPU should fail"; exit 1
fi
grep -q "device must be CPU or CUDA, not 'TPU'" "$OUT/bad" || { cat "$OUT/bad"; exit 1; }
echo PASS

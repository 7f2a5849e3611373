#!/usr/bin/env bash
# tools/hf_eval on the golden tiny HF directory gives the float64 reference loss and gradient norms
# (FP32 mode), also with multi-token prediction, and refuses a token file shorter than B*T+1 tokens.
set -euo pipefail
HF_EVAL="$1"; GOLDEN="$2"; MAKE_BAD="$3"
OUT="${TEST_TMPDIR:-/tmp}/hf_eval.json"
"$HF_EVAL" --model="$GOLDEN/tiny_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 > "$OUT"
python3 - "$OUT" "$GOLDEN/expected_loss.json" <<'PY'
import json, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert abs(got["loss"] - want["loss"]) < 1e-5, (got["loss"], want["loss"])
assert abs(got["grad_norm"] / want["global_grad_norm"] - 1) < 1e-5
assert set(got["grad_norms"]) == set(want["grad_norms"]), set(got["grad_norms"]) ^ set(want["grad_norms"])
for k, v in want["grad_norms"].items():
    assert abs(got["grad_norms"][k] - v) <= 1e-4 * v + 1e-9, (k, got["grad_norms"][k], v)
print("hf_eval matches the golden values:", got["loss"])
PY
# Multi-token prediction: with --include_mtp the golden MTP model's main, MTP and total losses and the
# gradients of the total; without it, the same losses and the main loss's gradients (no MTP tensors).
"$HF_EVAL" --model="$GOLDEN/tiny_mtp_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 \
  --include_mtp > "$OUT"
"$HF_EVAL" --model="$GOLDEN/tiny_mtp_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 > "$OUT.main"
python3 - "$OUT" "$OUT.main" "$GOLDEN/expected_loss_mtp.json" <<'PY'
import json, sys
got, main, want = (json.load(open(p)) for p in sys.argv[1:4])
for g in (got, main):
    assert abs(g["loss"] - want["ce_loss"]) < 1e-5, (g["loss"], want["ce_loss"])
    assert abs(g["mtp_loss"] - want["mtp_loss"]) < 1e-5, (g["mtp_loss"], want["mtp_loss"])
assert abs(got["total_loss"] - want["loss"]) < 1e-5 and "total_loss" not in main
assert abs(got["grad_norm"] / want["global_grad_norm"] - 1) < 1e-5
assert set(got["grad_norms"]) == set(want["grad_norms"]), set(got["grad_norms"]) ^ set(want["grad_norms"])
for k, v in want["grad_norms"].items():
    assert abs(got["grad_norms"][k] - v) <= 1e-4 * v + 1e-9, (k, got["grad_norms"][k], v)
assert not any(k.startswith("model.layers.3.") for k in main["grad_norms"]), "MTP tensors listed without --include_mtp"
assert main["grad_norm"] < got["grad_norm"]
print("hf_eval matches the golden MTP values:", got["total_loss"])
PY
if "$HF_EVAL" --model="$GOLDEN/tiny_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 --include_mtp 2> "$OUT.err"; then exit 1; fi
grep -q "no multi-token-prediction modules" "$OUT.err"
# BF16 precision: loss within 1e-3 relative.
"$HF_EVAL" --model="$GOLDEN/tiny_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 \
  --precision=bf16 | python3 -c "import json,sys; l=json.load(sys.stdin)['loss']; assert abs(l/5.531171090037839-1)<1e-3, l"
# 129 tokens cannot feed batch 5 x 32.
if "$HF_EVAL" --model="$GOLDEN/tiny_fp32" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=5 2> "$OUT.err"; then
  echo "short token file accepted"; exit 1
fi
grep -q "needs 161" "$OUT.err"

# A missing tensor and a wrong shape: one clear line naming the tensor, non-zero exit.
BAD="${TEST_TMPDIR:-/tmp}/bad_models"
python3 "$MAKE_BAD" "$GOLDEN/tiny_fp32" "$BAD"
if "$HF_EVAL" --model="$BAD/missing" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 2> "$OUT.err"; then exit 1; fi
grep -q "model.layers.1.self_attn.kv_b_proj.weight is missing" "$OUT.err" || { cat "$OUT.err"; exit 1; }
[ "$(wc -l < "$OUT.err")" = 1 ] || { echo "expected one error line"; cat "$OUT.err"; exit 1; }
if "$HF_EVAL" --model="$BAD/wrong_shape" --tokens="$GOLDEN/tokens_b4_t32.bin" --seq_len=32 --batch=4 2> "$OUT.err"; then exit 1; fi
grep -q "model.norm.weight" "$OUT.err" && grep -q "shape" "$OUT.err" || { cat "$OUT.err"; exit 1; }
[ "$(wc -l < "$OUT.err")" = 1 ] || { echo "expected one error line"; cat "$OUT.err"; exit 1; }
cat "$OUT.err"
echo PASS

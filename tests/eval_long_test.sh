#!/usr/bin/env bash
# tools/eval_long end to end on the golden tiny HF directory (vocab 256, YaRN factor 4 from L0 64): loss per
# position bucket from a token shard written by tools/prepare_data, the passkey section, the RoPE scaling
# override, a flat token file, byte-identical JSON across runs (and thread counts), and refused inputs.
# The shard's end-of-document id is 256, outside the tiny model's vocabulary, so the test first checks that
# it is refused and then rewrites a copy whose documents end in '\n' (id 10) with vocab_size 256.
# Last, the model's tokenizer: the golden weights padded to 272 ids with a tiny BPE tokenizer.json beside
# them (HF directory and its native conversion) are evaluated on a shard of that tokenizer, passkey prompts
# encoded with it; a shard of another tokenizer is refused unless --tokenizer says otherwise.
#   eval_long_test.sh EVAL_LONG PREPARE_DATA MAKE_TEXT_CORPUS GOLDEN_DIR MAKE_TINY_TOKENIZER PAD_HF_VOCAB
#                     CONVERT_CHECKPOINT
set -euo pipefail
EVAL_LONG="$1"; PREPARE_DATA="$2"; MAKE_CORPUS="$3"; GOLDEN="$4"; MAKE_TOKENIZER="$5"; PAD_VOCAB="$6"
CONVERT="$7"
MODEL="$GOLDEN/tiny_fp32"
W="${TEST_TMPDIR:-$(mktemp -d)}/eval_long"
rm -rf "$W"; mkdir -p "$W/text" "$W/data"

python3 "$MAKE_CORPUS" "$W/text" 40 3 7
"$PREPARE_DATA" --input="$W/text" --output="$W/data" --val_fraction=0 > /dev/null

# 1. The raw shard holds id 256: refused, naming the vocabulary.
if "$EVAL_LONG" --model="$MODEL" --tokens="$W/data/train" --seq_len=64 --num_sequences=8 \
    > /dev/null 2> "$W/err"; then
  echo "FAIL: a shard with id 256 was accepted by a vocab-256 model"; exit 1
fi
grep -q "vocab_size 256" "$W/err" || { cat "$W/err"; echo "FAIL: error does not name vocab_size"; exit 1; }

# A copy of the shard with every end-of-document id replaced by '\n' and vocab_size 256.
python3 - "$W/data/train" "$W/bytes" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
ids = open(src + ".tokens", "rb").read()
import array
a = array.array("I"); a.frombytes(ids)
assert max(a) == 256 and a[-1] == 256
a = array.array("I", [10 if t == 256 else t for t in a])
open(dst + ".tokens", "wb").write(a.tobytes())
index = open(src + ".index").read()
index = re.sub(r"vocab_size: \d+", "vocab_size: 256", index)
index = re.sub(r"end_of_document_id: \d+", "end_of_document_id: 10", index)
open(dst + ".index", "w").write(index)
# The same tokens as a flat uint32 file.
open(dst + ".flat", "wb").write(a.tobytes())
PY

ARGS=(--model="$MODEL" --tokens="$W/bytes" --seq_len=128 --base_len=32 --num_sequences=4 --batch=3
      --passkey=true --passkey_trials=2)

# 2. Buckets [0,32) [32,64) [64,128), passkey per depth, JSON.
"$EVAL_LONG" "${ARGS[@]}" --json="$W/a.json" > "$W/a.txt"
cat "$W/a.txt"
for want in "[0,32)" "[32,64)" "[64,128)" "mean loss [32,128) / mean loss [0,32)" "passkey retrieval" \
    "rope_scaling: yarn factor 4 L0 64"; do
  grep -qF "$want" "$W/a.txt" || { echo "FAIL: stdout lacks '$want'"; exit 1; }
done
python3 - "$W/a.json" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
b = r["buckets"]
assert [(x["begin"], x["end"], x["tokens"]) for x in b] == [(0, 32, 128), (32, 64, 128), (64, 128, 256)], b
assert all(math.isfinite(x["loss"]) and 4.5 < x["loss"] < 7 for x in b), b  # an untrained 256-way model
assert len(r["position_loss"]) == 128
mean = sum(r["position_loss"]) / 128
assert abs(mean - r["loss"]) < 1e-6, (mean, r["loss"])
short = sum(r["position_loss"][:32]) / 32
assert abs(r["long_over_short"] - r["loss_long"] / r["loss_short"]) < 1e-12
assert abs(short - r["loss_short"]) < 1e-6
pk = r["passkey"]
assert pk["prompt_tokens"] == 124 and pk["trials"] == 2
assert [d["depth"] for d in pk["depths"]] == [0, 0.25, 0.5, 0.75, 1]
for d in pk["depths"]:
    assert len(d["keys"]) == 2 and len(d["answers"]) == 2 and 0 <= d["accuracy"] <= 1
    assert all(len(k) == 5 and k.isdigit() for k in d["keys"])
assert pk["depths"][0]["key_offset"] == 0
print("JSON ok: loss", r["loss"], "ratio", r["long_over_short"])
PY

# 3. Deterministic: the same run again, and with one thread, gives byte-identical JSON.
"$EVAL_LONG" "${ARGS[@]}" --json="$W/b.json" > /dev/null
cmp "$W/a.json" "$W/b.json" || { echo "FAIL: two identical runs differ"; exit 1; }
"$EVAL_LONG" "${ARGS[@]}" --threads=1 --json="$W/c.json" > /dev/null
cmp "$W/a.json" "$W/c.json" || { echo "FAIL: --threads=1 differs"; exit 1; }

# 4. The flat uint32 file of the same tokens gives the same numbers.
"$EVAL_LONG" "${ARGS[@]}" --tokens="$W/bytes.flat" --json="$W/flat.json" > /dev/null
python3 - "$W/a.json" "$W/flat.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["buckets"] == b["buckets"] and a["passkey"] == b["passkey"]
PY

# 5. RoPE override: none and linear change the numbers and say so; yarn:4 equals the config's own block.
"$EVAL_LONG" "${ARGS[@]}" --passkey=false --rope_scaling=none --json="$W/none.json" | grep -q "rope_scaling: none"
"$EVAL_LONG" "${ARGS[@]}" --passkey=false --rope_scaling=linear:4 --json="$W/lin.json" | grep -q "linear factor 4"
"$EVAL_LONG" "${ARGS[@]}" --passkey=false --rope_scaling=yarn:4 --json="$W/yarn.json" > /dev/null
python3 - "$W/a.json" "$W/none.json" "$W/lin.json" "$W/yarn.json" <<'PY'
import json, sys
a, none, lin, yarn = (json.load(open(p)) for p in sys.argv[1:])
assert none["loss"] != a["loss"] and lin["loss"] != a["loss"] and none["loss"] != lin["loss"]
assert abs(none["softmax_scale"] - 24 ** -0.5) < 1e-15, none["softmax_scale"]
assert yarn["buckets"] == a["buckets"], "yarn:4 should reproduce the config's own YaRN block"
PY

# 6. Refused inputs.
expect_error() {  # expect_error PATTERN ARGS...
  local pattern="$1"; shift
  if "$EVAL_LONG" "$@" > /dev/null 2> "$W/err"; then echo "FAIL: accepted: $*"; exit 1; fi
  grep -q -- "$pattern" "$W/err" || { cat "$W/err"; echo "FAIL: error lacks '$pattern'"; exit 1; }
}
expect_error "unknown kind 'ntk'" --model="$MODEL" --tokens="$W/bytes" --seq_len=64 --rope_scaling=ntk:4
expect_error "FACTOR must be" --model="$MODEL" --tokens="$W/bytes" --seq_len=64 --rope_scaling=yarn:x
expect_error "passkey needs --seq_len >= " --model="$MODEL" --tokens="$W/bytes" --seq_len=64 --passkey=true
expect_error "too few for" --model="$MODEL" --tokens="$W/bytes" --seq_len=128 --num_sequences=100000
python3 -c "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())" "$W/data/train.tokens" > "$W/raw.flat"
expect_error "is >= vocab_size 256" --model="$MODEL" --tokens="$W/raw.flat" --seq_len=128 --num_sequences=40
expect_error "neither" --model="$W/text" --tokens="$W/bytes" --seq_len=64
expect_error "not a number in" --model="$MODEL" --tokens="$W/bytes" --seq_len=128 --passkey=true --passkey_depths=2

# 7. The model's tokenizer.
python3 "$MAKE_TOKENIZER" "$W/tok"  # 265 ids
python3 "$PAD_VOCAB" "$MODEL" "$W/hf272" 272 --tokenizer="$W/tok"
"$PREPARE_DATA" --input="$W/text" --output="$W/tokdata" --tokenizer="$W/tok" --val_fraction=0 > /dev/null
FP=$(sed -n 's/^tokenizer_fingerprint: "\(.*\)"$/\1/p' "$W/tokdata/train.index")
[[ "$FP" == fnv1a64:* ]] || { cat "$W/tokdata/train.index" | head; echo "FAIL: no fingerprint in the shard index"; exit 1; }
# The byte shard does not match the stored tokenizer: refused naming both; --tokenizer=byte overrides.
expect_error "was written with tokenizer byte" --model="$W/hf272" --tokens="$W/bytes" --seq_len=64 --num_sequences=2
grep -qF "the model's tokenizer (stored with the model) is $FP" "$W/err" || { cat "$W/err"; echo "FAIL: fingerprints"; exit 1; }
"$EVAL_LONG" --model="$W/hf272" --tokens="$W/bytes" --seq_len=64 --num_sequences=2 --tokenizer=byte > /dev/null
# A too-short --seq_len for a passkey prompt in tokens.
expect_error "passkey needs a longer --seq_len" --model="$W/hf272" --tokens="$W/tokdata/train" --seq_len=40 \
  --num_sequences=2 --passkey=true
TARGS=(--model="$W/hf272" --tokens="$W/tokdata/train" --seq_len=128 --base_len=32 --num_sequences=2 --batch=3
       --passkey=true --passkey_trials=2)
"$EVAL_LONG" "${TARGS[@]}" --json="$W/tok.json" > "$W/tok.txt"
cat "$W/tok.txt"
grep -qF "tokenizer $W/hf272/tokenizer.json ($FP, vocabulary 265), stored with the model" "$W/tok.txt" ||
  { echo "FAIL: the stored tokenizer was not used"; exit 1; }
grep -q "passkey retrieval: prompts of up to 12[0-4] tokens" "$W/tok.txt" || { echo "FAIL: passkey prompt line"; exit 1; }
python3 - "$W/tok.json" "$FP" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["tokenizer"] == sys.argv[2], r["tokenizer"]
pk = r["passkey"]
# Prompts of at most T - 5 + 1 = 124 tokens (the key is 5 tokens: no digit merges), filled nearly to it.
assert 120 <= pk["prompt_tokens"] <= 124, pk["prompt_tokens"]
for d in pk["depths"]:
    assert len(d["keys"]) == 2 and all(len(k) == 5 and k.isdigit() for k in d["keys"])
    assert 0 <= d["accuracy"] <= 1 and 0 <= d["digit_accuracy"] <= 1
print("tokenizer JSON ok")
PY
# The native conversion (a checkpoint root: latest -> step-00000000) stores the tokenizer: same results.
"$CONVERT" --from="$W/hf272" --to="$W/ckpt272" > /dev/null
"$EVAL_LONG" "${TARGS[@]}" --model="$W/ckpt272" --json="$W/tok_native.json" > "$W/tok_native.txt"
grep -qF "tokenizer $W/ckpt272/step-00000000/tokenizer.json ($FP" "$W/tok_native.txt" ||
  { cat "$W/tok_native.txt"; echo "FAIL: native: the stored tokenizer was not used"; exit 1; }
python3 - "$W/tok.json" "$W/tok_native.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["buckets"] == b["buckets"] and a["passkey"] == b["passkey"] and a["tokenizer"] == b["tokenizer"]
PY
echo PASS

#!/bin/bash
# End-to-end check of tools/generate on the golden tiny model: greedy output is deterministic and the
# same from the HF directory and from a native checkpoint of it; seeded sampling repeats exactly and
# another seed differs; the stats line reports the absorbed and full-MHA cache sizes; bad flags and
# too-long requests are refused with one clear line. Then the model's tokenizer: the golden weights padded
# to a 272-id vocabulary with a tiny BPE tokenizer.json beside them: generate encodes with the stored
# tokenizer (from the HF directory and from its native conversion), --tokenizer overrides it, generation
# stops at the tokenizer's EOS and prints it, and a tokenizer too large for the model is refused.
#   generate_test.sh GENERATE CONVERT GOLDEN_HF_DIR MAKE_TINY_TOKENIZER PAD_HF_VOCAB
set -euo pipefail

gen="$1"; convert="$2"; hf="$3"; make_tokenizer="$4"; pad_vocab="$5"
tmp="${TEST_TMPDIR:-$(mktemp -d)}/generate_test"
rm -rf "$tmp" && mkdir -p "$tmp"
fail() { echo "FAIL: $*" >&2; exit 1; }

run() { "$gen" --model="$1" --prompt="The cat" --max_new_tokens=20 --threads=1 "${@:2}"; }
text() { sed '$d' "$1"; }  # all but the final stats line

run "$hf" --temperature=0 > "$tmp/greedy1"
run "$hf" --temperature=0 > "$tmp/greedy2"
cat "$tmp/greedy1"; echo
cmp <(text "$tmp/greedy1") <(text "$tmp/greedy2") || fail "greedy output differs between runs"
head -c 7 "$tmp/greedy1" | grep -q '^The cat$' || fail "the prompt is not echoed first"
stats="$(tail -n 1 "$tmp/greedy1")"
[[ "$stats" == "# generate: 20 new tokens in "* ]] || fail "stats line: $stats"
# tiny: 3 layers x (16 + 8) x 4 = 288 bytes absorbed; 3 x 4 heads x (24 + 16) x 4 = 1920 bytes full MHA.
[[ "$stats" == *"absorbed 288 bytes"*"full MHA 1920 bytes"* ]] || fail "cache sizes: $stats"
# 7 prompt bytes + 20 new bytes (vocabulary 256: no end-of-document id to stop at).
[[ $(text "$tmp/greedy1" | head -c -1 | wc -c) == 27 ]] || fail "expected 27 bytes of text"

run "$hf" --temperature=0.8 --top_p=0.95 --seed=5 > "$tmp/s1"
run "$hf" --temperature=0.8 --top_p=0.95 --seed=5 > "$tmp/s2"
run "$hf" --temperature=1.5 --top_p=1 --seed=6 > "$tmp/s3"
cmp <(text "$tmp/s1") <(text "$tmp/s2") || fail "seeded sampling differs between runs"
if cmp -s <(text "$tmp/s1") <(text "$tmp/s3"); then fail "another seed and temperature gave the same text"; fi

# --speculative=mtp on the golden MTP model: the plain greedy text (FP32), an acceptance line; refused
# with sampling and for a model without MTP modules.
mtp_hf="$(dirname "$hf")/tiny_mtp_fp32"
run "$mtp_hf" --temperature=0 --max_new_tokens=40 > "$tmp/mtp_plain"
run "$mtp_hf" --temperature=0 --max_new_tokens=40 --speculative=mtp > "$tmp/mtp_spec"
cmp <(sed '/^# /d' "$tmp/mtp_plain") <(sed '/^# /d' "$tmp/mtp_spec") || fail "speculative text differs from greedy"
grep -q "^# speculative: [0-9]* rounds, [0-9]* of [0-9]* drafts accepted" "$tmp/mtp_spec" || fail "no speculative line"
if run "$mtp_hf" --temperature=0.8 --speculative=mtp 2> "$tmp/err"; then fail "speculative sampling accepted"; fi
grep -q "pass --temperature=0" "$tmp/err" || fail "speculative sampling error: $(cat "$tmp/err")"
if run "$hf" --temperature=0 --speculative=mtp 2> "$tmp/err"; then fail "speculative without MTP accepted"; fi
grep -q "num_nextn_predict_layers 0" "$tmp/err" || fail "no-MTP error: $(cat "$tmp/err")"

# A native checkpoint of the same weights gives the same greedy text.
"$convert" --from="$hf" --to="$tmp/ckpt" > /dev/null
run "$tmp/ckpt/step-00000000" --temperature=0 > "$tmp/native"
cmp <(text "$tmp/greedy1") <(text "$tmp/native") || fail "native checkpoint output differs from the HF directory's"
# ... and so does the checkpoints root (its `latest`), as every tool resolves model directories.
run "$tmp/ckpt" --temperature=0 > "$tmp/root"
cmp <(text "$tmp/greedy1") <(text "$tmp/root") || fail "checkpoints root output differs"

# Refusals.
if run "$hf" --max_new_tokens=300 2> "$tmp/err"; then fail "a request beyond max_position_embeddings was accepted"; fi
grep -q "max_position_embeddings is 256" "$tmp/err" || fail "length error: $(cat "$tmp/err")"
if run "$hf" --top_p=0 2> "$tmp/err"; then fail "top_p=0 accepted"; fi
grep -q -- "--top_p must be in" "$tmp/err" || fail "top_p error: $(cat "$tmp/err")"
if "$gen" --model="$tmp/nowhere" --prompt=x 2> "$tmp/err"; then fail "a missing model was accepted"; fi
grep -q "is neither a Hugging Face directory (config.json), a checkpoint step directory" "$tmp/err" ||
  fail "missing model error: $(cat "$tmp/err")"
# A vocabulary other than 256/257 without a stored tokenizer is refused, naming the fix.
mkdir -p "$tmp/bigvocab"
sed 's/"vocab_size": 256/"vocab_size": 1000/' "$hf/config.json" > "$tmp/bigvocab/config.json"
if "$gen" --model="$tmp/bigvocab" --prompt=x 2> "$tmp/err"; then fail "vocab 1000 accepted"; fi
grep -q "stores no tokenizer .* pass --tokenizer=" "$tmp/err" || fail "vocab error: $(cat "$tmp/err")"

# --- The model's tokenizer --------------------------------------------------------------------------
python3 "$make_tokenizer" "$tmp/tok"  # 265 ids: bytes, 8 merges, <|endoftext|> = 264 (BOS and EOS)
# The golden model has 256 ids: the tokenizer does not fit it.
if run "$hf" --tokenizer="$tmp/tok" 2> "$tmp/err"; then fail "a 265-id tokenizer accepted for a 256-id model"; fi
grep -q "has 265 ids but .* has vocab_size 256: it is not this model's tokenizer" "$tmp/err" ||
  fail "tokenizer size error: $(cat "$tmp/err")"
python3 "$pad_vocab" "$hf" "$tmp/hf272" 272 --tokenizer="$tmp/tok"
# "the the" is 3 tokens (t, he, Ġthe) with the stored tokenizer, 7 with the byte tokenizer.
prompt() { "$gen" --model="$1" --prompt="the the" --max_new_tokens=12 --temperature=0 --threads=1 "${@:2}"; }
prompt "$tmp/hf272" > "$tmp/bpe_hf"
stats="$(tail -n 1 "$tmp/bpe_hf")"
[[ "$stats" == *"prefill 3 tokens"*"tokenizer $tmp/hf272/tokenizer.json (fnv1a64:"*", vocabulary 265), stored with the model" ]] ||
  fail "stored tokenizer not used: $stats"
head -c 7 "$tmp/bpe_hf" | grep -q '^the the$' || fail "the prompt is not echoed first"
prompt "$tmp/hf272" --tokenizer=byte > "$tmp/bpe_byte"
[[ "$(tail -n 1 "$tmp/bpe_byte")" == *"prefill 7 tokens"*"tokenizer byte (vocabulary 257), --tokenizer" ]] ||
  fail "--tokenizer=byte: $(tail -n 1 "$tmp/bpe_byte")"
# HF -> native carries the tokenizer along: the step directory holds it, and generate uses it.
"$convert" --from="$tmp/hf272" --to="$tmp/ckpt272" > /dev/null
cmp "$tmp/tok/tokenizer.json" "$tmp/ckpt272/step-00000000/tokenizer.json" || fail "tokenizer.json not carried to native"
cmp "$tmp/tok/tokenizer_config.json" "$tmp/ckpt272/step-00000000/tokenizer_config.json" ||
  fail "tokenizer_config.json not carried to native"
prompt "$tmp/ckpt272/step-00000000" > "$tmp/bpe_native"
[[ "$(tail -n 1 "$tmp/bpe_native")" == *"prefill 3 tokens"*"stored with the model" ]] ||
  fail "native: $(tail -n 1 "$tmp/bpe_native")"
cmp <(text "$tmp/bpe_hf") <(text "$tmp/bpe_native") || fail "native checkpoint output differs from the HF directory's"

# The end of generation is the tokenizer's EOS (264), printed as <|endoftext|>. With a zero head every id
# is equally likely; some seed samples 264 before 100 tokens.
python3 "$pad_vocab" "$hf" "$tmp/uniform" 272 --zero_head --tokenizer="$tmp/tok"
stopped=""
for seed in $(seq 1 40); do
  "$gen" --model="$tmp/uniform" --prompt="the" --max_new_tokens=100 --temperature=1 --top_p=1 --seed="$seed" \
    --threads=1 > "$tmp/eos"
  if [[ "$(text "$tmp/eos")" == *"<|endoftext|>" ]]; then stopped=$seed; break; fi
done
[ -n "$stopped" ] || fail "no seed in 1..40 sampled the EOS id"
n=$(tail -n 1 "$tmp/eos" | sed -E 's/^# generate: ([0-9]+) new tokens.*/\1/')
[ "$n" -lt 100 ] || fail "generation did not stop at the EOS (seed $stopped, $n tokens)"
[ "$(text "$tmp/eos" | grep -o '<|endoftext|>' | wc -l)" = 1 ] || fail "EOS printed more than once"
echo "EOS after $n tokens with seed $stopped"
echo PASS

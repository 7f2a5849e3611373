#!/bin/bash
# End-to-end check of tools/generate on the golden tiny model: greedy output is deterministic and the
# same from the HF directory and from a native checkpoint of it; seeded sampling repeats exactly and
# another seed differs; the stats line reports the absorbed and full-MHA cache sizes; bad flags and
# too-long requests are refused with one clear line.
set -euo pipefail

gen="$1"; convert="$2"; hf="$3"
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

# A native checkpoint of the same weights gives the same greedy text.
"$convert" --from="$hf" --to="$tmp/ckpt" > /dev/null
run "$tmp/ckpt/step-00000000" --temperature=0 > "$tmp/native"
cmp <(text "$tmp/greedy1") <(text "$tmp/native") || fail "native checkpoint output differs from the HF directory's"

# Refusals.
if run "$hf" --max_new_tokens=300 2> "$tmp/err"; then fail "a request beyond max_position_embeddings was accepted"; fi
grep -q "max_position_embeddings is 256" "$tmp/err" || fail "length error: $(cat "$tmp/err")"
if run "$hf" --top_p=0 2> "$tmp/err"; then fail "top_p=0 accepted"; fi
grep -q -- "--top_p must be in" "$tmp/err" || fail "top_p error: $(cat "$tmp/err")"
if "$gen" --model="$tmp/nowhere" --prompt=x 2> "$tmp/err"; then fail "a missing model was accepted"; fi
grep -q "neither a native checkpoint" "$tmp/err" || fail "missing model error: $(cat "$tmp/err")"
# A vocabulary other than 256/257 is refused (no BPE tokenizer).
mkdir -p "$tmp/bigvocab"
sed 's/"vocab_size": 256/"vocab_size": 1000/' "$hf/config.json" > "$tmp/bigvocab/config.json"
if "$gen" --model="$tmp/bigvocab" --prompt=x 2> "$tmp/err"; then fail "vocab 1000 accepted"; fi
grep -q "no BPE tokenizer" "$tmp/err" || fail "vocab error: $(cat "$tmp/err")"
echo PASS

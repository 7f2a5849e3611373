#!/bin/bash
# End-to-end check of tools/prepare_data: plain-text and Brown-format inputs become train/val shards of
# the expected sizes, the split is deterministic, and bad input is refused with a one-line error.
set -euo pipefail

bin="$1"
tmp="${TEST_TMPDIR:-$(mktemp -d)}/prepare_data_test"
rm -rf "$tmp" && mkdir -p "$tmp/in/sub" "$tmp/brown"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Ten documents of 5 bytes each, one empty file, one hidden file; the split must keep val non-empty.
for i in 0 1 2 3 4; do printf 'doc%02d' "$i" > "$tmp/in/d$i.txt"; done
for i in 5 6 7 8 9; do printf 'doc%02d' "$i" > "$tmp/in/sub/d$i.txt"; done
: > "$tmp/in/empty.txt"
printf 'hidden' > "$tmp/in/.hidden"

out="$("$bin" --input="$tmp/in" --output="$tmp/out" --val_fraction=0.05 --seed=3)"
echo "$out"
[[ "$out" == *"10 documents"* ]] || fail "summary: $out"
[[ "$out" == *"1 empty skipped"* ]] || fail "empty file not skipped: $out"
train_bytes=$(stat -c %s "$tmp/out/train.tokens")
val_bytes=$(stat -c %s "$tmp/out/val.tokens")
# 10 documents x (5 bytes + EOD) x 4 bytes per token.
[[ $((train_bytes + val_bytes)) == 240 ]] || fail "token bytes $train_bytes + $val_bytes"
[[ $val_bytes -gt 0 ]] || fail "validation split is empty"
grep -q 'magic: "moe.data.TokenShard"' "$tmp/out/train.index" || fail "index magic"

# Same inputs, same seed: identical shards. Running again over an input that contains the output
# directory must not read the shards back as documents.
"$bin" --input="$tmp/in" --output="$tmp/in/out2" --val_fraction=0.05 --seed=3 >/dev/null
cmp "$tmp/out/train.tokens" "$tmp/in/out2/train.tokens" || fail "not deterministic"
out3="$("$bin" --input="$tmp/in" --output="$tmp/in/out2" --val_fraction=0.05 --seed=3)"
[[ "$out3" == *"10 documents"* ]] || fail "output directory read as input: $out3"

# Brown format: tags stripped, only sample files taken.
cat > "$tmp/brown/ca01" <<'TAGGED'


	The/at jury/nn said/vbd ``/`` no/at ''/'' ./.
TAGGED
cat > "$tmp/brown/cb02" <<'TAGGED'


	It/pps rained/vbd ./.
TAGGED
printf 'not a sample\n' > "$tmp/brown/README"
"$bin" --input="$tmp/brown" --output="$tmp/brown_out" --format=brown --val_fraction=0.5 >/dev/null
total=$(( $(stat -c %s "$tmp/brown_out/train.tokens") + $(stat -c %s "$tmp/brown_out/val.tokens") ))
# 'The jury said "no".\n' (20 bytes) + 'It rained.\n' (11 bytes) + 2 EOD = 33 tokens.
[[ $total == 132 ]] || fail "brown token bytes $total"

# Bad input: a clear one-line error and a non-zero exit.
if err="$("$bin" --input="$tmp/nope" --output="$tmp/x" 2>&1)"; then fail "missing input accepted"; fi
[[ "$err" == *"$tmp/nope"* ]] || fail "error does not name the input: $err"
if "$bin" --input="$tmp/in" --output="$tmp/x" --val_fraction=1.5 2>/dev/null; then fail "val_fraction 1.5 accepted"; fi
echo PASS

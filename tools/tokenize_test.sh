#!/bin/bash
# tools/tokenize as users run it: invalid UTF-8 is repaired exactly as the reference reads it (Node's
# lossy decoder) and counted, --strict refuses it naming the byte offset, --decode with and without
# --skip_special_tokens, the byte tokenizer, and bad arguments.
#
#   tokenize_test.sh TOKENIZE_BINARY
set -euo pipefail
tokenize="$1"
refdir="external/hf_tokenizers"
export TOKENIZERS_NODE_MODULES="$refdir/reference/node_modules"
encode="tools/tokenizer_reference/encode.js"
work="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*"; exit 1; }

# Invalid UTF-8: a truncated 3-byte sequence, a surrogate, an overlong '/', a lone continuation byte.
printf 'ok \xe2\x82 then \xed\xa0\x80 and \xc0\xaf end \x80<|endoftext|>' > "$work/bad.txt"
for name in gpt2 deepseek_v3; do
  node "$encode" --tokenizer="$refdir/$name" --input="$work/bad.txt" > "$work/expected.ids"
  "$tokenize" --tokenizer="$refdir/$name" --input="$work/bad.txt" > "$work/actual.ids" 2> "$work/err.txt"
  cmp -s "$work/expected.ids" "$work/actual.ids" || fail "$name: repaired ids differ from Hugging Face's"
  grep -q "7 invalid UTF-8 sequence(s) replaced by U+FFFD (first at byte 3)" "$work/err.txt" ||
    { cat "$work/err.txt"; fail "$name: replacements not counted"; }
  [ "$(wc -l < "$work/actual.ids")" = 1 ] || fail "$name: stdout is not one line"
done
if "$tokenize" --tokenizer="$refdir/gpt2" --input="$work/bad.txt" --strict > "$work/out.txt" 2> "$work/err.txt"; then
  fail "--strict accepted invalid UTF-8"
fi
grep -q "invalid UTF-8 at byte offset 3" "$work/err.txt" || { cat "$work/err.txt"; fail "--strict: no byte offset"; }
[ ! -s "$work/out.txt" ] || fail "--strict printed ids"

# --decode: special tokens kept or skipped, as the reference does.
printf 'Hello<|endoftext|> world' > "$work/special.txt"
"$tokenize" --tokenizer="$refdir/gpt2" --input="$work/special.txt" > "$work/special.ids"
[ "$(cat "$work/special.ids")" = "[15496,50256,995]" ] || fail "gpt2 ids: $(cat "$work/special.ids")"
for skip in "" --skip_special_tokens; do
  node "$encode" --tokenizer="$refdir/gpt2" --input="$work/special.ids" --decode $skip > "$work/expected.txt"
  "$tokenize" --tokenizer="$refdir/gpt2" --input="$work/special.ids" --decode $skip > "$work/actual.txt"
  cmp -s "$work/expected.txt" "$work/actual.txt" || fail "decode ${skip:-with special tokens} differs"
done
[ "$(cat "$work/actual.txt")" = "Hello world" ] || fail "skip_special_tokens kept: $(cat "$work/actual.txt")"

# The byte tokenizer takes any bytes as they are.
"$tokenize" --tokenizer=byte --input="$work/bad.txt" > "$work/byte.ids" 2> "$work/err.txt"
[ "$(head -c 12 "$work/byte.ids")" = "[111,107,32," ] || fail "byte ids: $(head -c 40 "$work/byte.ids")"
[ ! -s "$work/err.txt" ] || fail "byte tokenizer reported invalid UTF-8"

# Bad arguments name what is wrong.
if "$tokenize" --tokenizer="$refdir/gpt2" 2> "$work/err.txt"; then fail "no --input accepted"; fi
grep -q "input is required" "$work/err.txt" || fail "missing --input not named"
echo '[1, "x"]' > "$work/notids.json"
if "$tokenize" --tokenizer="$refdir/gpt2" --input="$work/notids.json" --decode 2> "$work/err.txt"; then fail "bad ids accepted"; fi
grep -q "element 1 is not a token id" "$work/err.txt" || { cat "$work/err.txt"; fail "bad id not named"; }
if "$tokenize" --tokenizer="$work/nowhere" --input="$work/bad.txt" 2> "$work/err.txt"; then fail "missing tokenizer accepted"; fi
grep -q "nowhere" "$work/err.txt" || { cat "$work/err.txt"; fail "missing tokenizer not named"; }
echo "PASS"

#!/bin/bash
# The whole Brown corpus (6.2 MB, its word/TAG annotations stripped) through the four real tokenizers:
# decode(encode(text)) == text for each (Qwen3's NFC leaves this ASCII-and-Latin-1 text unchanged), and
# the ids equal Hugging Face's own for DeepSeek-V3 and Llama 3 (ignore_merges).
#
#   tokenizer_brown_test.sh TOKENIZE_BINARY
set -euo pipefail
tokenize="$1"
refdir="external/hf_tokenizers"
export TOKENIZERS_NODE_MODULES="$refdir/reference/node_modules"
work="${TEST_TMPDIR:-$(mktemp -d)}"
fail() { echo "FAIL: $*"; exit 1; }

samples=(external/brown_corpus/c[a-r][0-9][0-9])
[ "${#samples[@]}" = 500 ] || fail "expected 500 Brown samples, found ${#samples[@]}"
cat "${samples[@]}" | sed 's#/[^ ]*##g' > "$work/brown.txt"
for name in deepseek_v3 llama3 qwen3 gpt2; do
  "$tokenize" --tokenizer="$refdir/$name" --input="$work/brown.txt" --strict > "$work/$name.ids"
  "$tokenize" --tokenizer="$refdir/$name" --input="$work/$name.ids" --decode > "$work/$name.txt"
  cmp -s "$work/brown.txt" "$work/$name.txt" || fail "$name: decode(encode(Brown)) differs from Brown"
done
for name in deepseek_v3 llama3; do
  node tools/tokenizer_reference/encode.js --tokenizer="$refdir/$name" --input="$work/brown.txt" > "$work/ref.ids"
  cmp -s "$work/ref.ids" "$work/$name.ids" || fail "$name: Brown ids differ from Hugging Face's"
done
echo "PASS: Brown ($(wc -c < "$work/brown.txt") bytes) round-trips through 4 tokenizers; ids equal the reference's"

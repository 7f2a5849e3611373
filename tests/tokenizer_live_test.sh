#!/bin/bash
# tools/tokenize against Hugging Face's tokenizers itself (the reference Node package that
# tools/fetch_tokenizers.sh installs), on seeded random texts in many scripts: encode with and without
# special tokens, and decode of the reference ids, must be identical for the four real tokenizers.
#
#   tokenizer_live_test.sh TOKENIZE_BINARY
set -euo pipefail
tokenize="$1"
refdir="external/hf_tokenizers"
scripts="tools/tokenizer_reference"
export TOKENIZERS_NODE_MODULES="$refdir/reference/node_modules"
work="${TEST_TMPDIR:-$(mktemp -d)}"

node "$scripts/random_texts.js" --out="$work/texts" --count=6 --chars=6000 --seed=7
failures=0
for name in deepseek_v3 llama3 qwen3 gpt2; do
  for text in "$work"/texts/*.txt; do
    for special in "" --add_special_tokens; do
      node "$scripts/encode.js" --tokenizer="$refdir/$name" --input="$text" $special > "$work/expected.ids"
      "$tokenize" --tokenizer="$refdir/$name" --input="$text" $special > "$work/actual.ids"
      if ! cmp -s "$work/expected.ids" "$work/actual.ids"; then
        echo "FAIL: $name $(basename "$text") ${special:-no special tokens}: ids differ from Hugging Face"
        failures=$((failures + 1))
      fi
    done
    node "$scripts/encode.js" --tokenizer="$refdir/$name" --input="$work/expected.ids" --decode > "$work/expected.txt"
    "$tokenize" --tokenizer="$refdir/$name" --input="$work/expected.ids" --decode > "$work/actual.txt"
    if ! cmp -s "$work/expected.txt" "$work/actual.txt"; then
      echo "FAIL: $name $(basename "$text"): decoded text differs from Hugging Face"
      failures=$((failures + 1))
    fi
  done
done
[ "$failures" = 0 ] || { echo "$failures comparisons failed"; exit 1; }
echo "PASS: 4 tokenizers x 6 random texts: ids (with and without special tokens) and decoding identical"

#!/bin/bash
# Regenerates tests/testdata/tokenizers/golden_{deepseek_v3,llama3,qwen3,gpt2}.json from
# tests/testdata/tokenizers/edge_cases.json with the pinned reference (Hugging Face tokenizers for Node),
# fetching the tokenizers first if needed. Run after editing edge_cases.json or moving a pin in
# tools/fetch_tokenizers.sh, and commit the result.
#
#   tools/tokenizer_reference/regenerate_golden.sh [CACHE_DIR]   (default: data_cache/tokenizers)
set -euo pipefail
cd "$(dirname "$0")/../.."

cache_dir="${1:-data_cache/tokenizers}"
tools/fetch_tokenizers.sh "$cache_dir"
node tools/tokenizer_reference/golden.js --node_modules="$cache_dir/reference/node_modules" \
    "$cache_dir/deepseek_v3" "$cache_dir/llama3" "$cache_dir/qwen3" "$cache_dir/gpt2"
ls -l tests/testdata/tokenizers/golden_*.json

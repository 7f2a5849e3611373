#!/usr/bin/env bash
# End-to-end test of the `train` command line as users run it (under mpirun -np 1): a tiny model on a
# small corpus must learn (loss falls well below ln 256), write metrics.jsonl with the documented keys,
# and bad input (a config typo, a missing data file) must fail with one clear line.
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; RUN_MPI="$4"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/train_cli"
mkdir -p "$WORK/text"
# A small, learnable corpus: a few sentences repeated with variation, 12 documents.
for d in $(seq 1 12); do
  for i in $(seq 1 60); do
    echo "The quick brown fox $d jumps over the lazy dog number $i. Pack my box with five dozen liquor jugs."
  done > "$WORK/text/doc$d.txt"
done
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.2 >/dev/null

MPIRUN=("$RUN_MPI" 1)
COMMON=(--config="$CONFIG" --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val"
        --set "output_dir=$WORK/run" --set "model.vocab_size=257")

"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set schedule.total_steps=40 --set eval.every=20 \
  --set logging.progress_bar=false > "$WORK/log.txt" 2>&1 || { cat "$WORK/log.txt"; exit 1; }
cat "$WORK/log.txt"

python3 - "$WORK/run/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 40, f"expected 40 rows, got {len(rows)}"
for key in ["step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "expert_load_max_mean"]:
    assert all(key in r for r in rows), f"metrics.jsonl rows lack '{key}'"
val = [r for r in rows if "val_loss" in r]
assert [r["step"] for r in val] == [20, 40], val
first, last = rows[0]["loss"], rows[-1]["loss"]
assert abs(first - math.log(257)) < 0.1, f"initial loss {first} should be near ln(257)"
assert last < 0.6 * first, f"loss did not fall: {first} -> {last}"
assert val[-1]["val_loss"] < 0.7 * first, val
assert all(0 < r["mfu"] < 1 for r in rows)
print("metrics ok:", first, "->", last, "val", val[-1]["val_loss"])
PY

# A config typo: refused with the field named, exit code 1.
if "$TRAIN" "${COMMON[@]}" --set optimzer.lr=1 2> "$WORK/err.txt"; then echo "typo accepted"; exit 1; fi
grep -q "unknown field 'optimzer'" "$WORK/err.txt" || { cat "$WORK/err.txt"; exit 1; }
# A truncated data file: refused naming the file.
cp "$WORK/data/train.index" "$WORK/data/bad.index"
head -c 1000 "$WORK/data/train.tokens" > "$WORK/data/bad.tokens"
if "$TRAIN" "${COMMON[@]}" --set "data.train_path=$WORK/data/bad" 2> "$WORK/err.txt"; then
  echo "truncated shard accepted"; exit 1
fi
grep -q "bad.tokens" "$WORK/err.txt" || { cat "$WORK/err.txt"; exit 1; }
# MTP configs validate and dry-run but are not trained yet.
"$TRAIN" "${COMMON[@]}" --set model.num_nextn_predict_layers=1 --dry_run | grep -q '"mtp_params": 77168'
if "$TRAIN" "${COMMON[@]}" --set model.num_nextn_predict_layers=1 2> "$WORK/err.txt"; then exit 1; fi
grep -q "multi-token prediction" "$WORK/err.txt"
# device: CUDA in a CPU-only build is one line saying how to build it.
if "$TRAIN" "${COMMON[@]}" --set device=CUDA 2> "$WORK/err.txt"; then exit 1; fi
grep -q "built without the CUDA backend (rebuild with bazel build --config=cuda)" "$WORK/err.txt" ||
  { cat "$WORK/err.txt"; exit 1; }
echo PASS

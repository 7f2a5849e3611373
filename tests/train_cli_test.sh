#!/usr/bin/env bash
# End-to-end test of the `train` command line as users run it (under mpirun -np 1): a tiny model on a
# small corpus must learn (loss falls well below ln 256), write metrics.jsonl with the documented keys,
# and bad input (a config typo, a missing data file) must fail with one clear line. Then the tokenizer
# travels with the model: data.tokenizer is validated with the config; shards of another tokenizer or a
# larger vocabulary are refused before any work; a run with a (tiny, hand-written) BPE tokenizer stores
# its files in every checkpoint and the --export_hf directory; a resume with another tokenizer is refused
# and one without data.tokenizer uses the checkpoint's; --init_from an HF directory carries its tokenizer.
# TensorBoard event files hold the metrics' scalars and continue across a resume.
#   train_cli_test.sh TRAIN PREPARE_DATA CONFIG RUN_MPI MAKE_TINY_TOKENIZER
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; RUN_MPI="$4"; MAKE_TOKENIZER="$5"
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

# TensorBoard: the events file holds metrics.jsonl's scalars for every step, and a resumed run adds a
# second file whose steps continue. Read with the standard library (TFRecord framing with masked
# CRC32C, then the Event/Summary protobuf wire format).
cp -r "$WORK/run" "$WORK/run_tb"
"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set "output_dir=$WORK/run_tb" --set schedule.total_steps=45 \
  --set eval.every=20 --set logging.progress_bar=false > "$WORK/tb.log" 2>&1 || { cat "$WORK/tb.log"; exit 1; }
python3 - "$WORK/run_tb" <<'PY'
import glob, json, math, struct, sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
def records(path):
    raw, pos = open(path, "rb").read(), 0
    while pos < len(raw):
        (n,), (lc,) = struct.unpack("<Q", raw[pos:pos + 8]), struct.unpack("<I", raw[pos + 8:pos + 12])
        assert lc == masked(raw[pos:pos + 8]), "length CRC"
        data = raw[pos + 12:pos + 12 + n]
        assert struct.unpack("<I", raw[pos + 12 + n:pos + 16 + n])[0] == masked(data), "data CRC"
        yield data
        pos += 16 + n
def fields(buf):  # protobuf wire format: (field number, value) pairs
    pos = 0
    def varint():
        nonlocal pos
        shift = value = 0
        while True:
            b = buf[pos]; pos += 1
            value |= (b & 0x7F) << shift; shift += 7
            if b < 0x80: return value
    while pos < len(buf):
        key = varint(); number, wire = key >> 3, key & 7
        if wire == 0: yield number, varint()
        elif wire == 1: yield number, struct.unpack("<d", buf[pos:pos + 8])[0]; pos += 8
        elif wire == 5: yield number, struct.unpack("<f", buf[pos:pos + 4])[0]; pos += 4
        elif wire == 2:
            n = varint(); yield number, buf[pos:pos + n]; pos += n
        else: raise ValueError(wire)
files = sorted(glob.glob(sys.argv[1] + "/events.out.tfevents.*"))
assert len(files) == 2, files
metrics = {}
for line in open(sys.argv[1] + "/metrics.jsonl"):
    row = json.loads(line); metrics[row["step"]] = row
seen = []
for f in files:
    recs = list(records(f))
    assert dict(fields(recs[0])).get(3) == b"brain.Event:2", f
    steps = []
    for rec in recs[1:]:
        ev = dict(fields(rec))
        step, values = ev[2], {}
        for number, value in fields(ev[5]):
            v = dict(fields(value)); values[v[1].decode()] = v[2]
        want = {k: x for k, x in metrics[step].items() if k != "step"}
        assert set(values) == set(want), (step, set(values) ^ set(want))
        for k, x in want.items():
            assert abs(values[k] - x) <= 1e-6 * max(1.0, abs(x)), (step, k, values[k], x)
        steps.append(step)
    seen.append(steps)
assert seen == [list(range(1, 41)), list(range(41, 46))], seen
print("tensorboard events ok:", [len(s) for s in seen], "steps in", len(files), "files")
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
# Multi-token prediction (two depths): dry-run counts, and training reports the main loss as `loss`,
# the weighted MTP loss and each depth's raw loss, and both validation losses; both objectives learn.
"$TRAIN" "${COMMON[@]}" --set model.num_nextn_predict_layers=1 --dry_run | grep -q '"mtp_params": 77168'
"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set model.num_nextn_predict_layers=2 --set "output_dir=$WORK/mtp" \
  --set schedule.total_steps=30 --set eval.every=15 --set logging.progress_bar=false > "$WORK/mtp.log" 2>&1 \
  || { cat "$WORK/mtp.log"; exit 1; }
grep -q "| mtp loss " "$WORK/mtp.log" || { cat "$WORK/mtp.log"; exit 1; }
python3 - "$WORK/mtp/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for key in ["loss", "mtp_loss", "mtp_loss_1", "mtp_loss_2"]:
    assert all(key in r for r in rows), f"metrics.jsonl rows lack '{key}'"
assert "mtp_loss_3" not in rows[0]
for r in rows:  # lambda = 0.3 (tiny config), D = 2
    assert abs(r["mtp_loss"] - 0.3 / 2 * (r["mtp_loss_1"] + r["mtp_loss_2"])) < 1e-6 * r["mtp_loss"], r
val = [r for r in rows if "val_loss" in r]
assert [r["step"] for r in val] == [15, 30] and all("val_mtp_loss" in r for r in val), val
assert abs(rows[0]["mtp_loss_1"] - math.log(257)) < 0.1, rows[0]
for key in ["loss", "mtp_loss_1", "mtp_loss_2"]:
    assert rows[-1][key] < 0.7 * rows[0][key], (key, rows[0][key], rows[-1][key])
print("mtp metrics ok:", rows[0]["mtp_loss"], "->", rows[-1]["mtp_loss"])
PY
# --init_from a checkpoint trained without MTP: the main model's weights, fresh MTP modules (a warning).
"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set model.num_nextn_predict_layers=2 --set "output_dir=$WORK/mtp_init" \
  --set schedule.total_steps=2 --init_from="$WORK/run/checkpoints/step-00000040" > "$WORK/mtp_init.log" 2>&1 \
  || { cat "$WORK/mtp_init.log"; exit 1; }
grep -q "multi-token-prediction module(s) 1..2 are not in" "$WORK/mtp_init.log" || { cat "$WORK/mtp_init.log"; exit 1; }
python3 -c "
import json, sys
r = json.loads(open('$WORK/mtp_init/metrics.jsonl').readline())
assert r['loss'] < 1.5 and r['mtp_loss_1'] > 2.5, r  # a trained main model, untrained MTP modules
"
# device: CUDA in a CPU-only build is one line saying how to build it.
if "$TRAIN" "${COMMON[@]}" --set device=CUDA 2> "$WORK/err.txt"; then exit 1; fi
grep -q "built without the CUDA backend (rebuild with bazel build --config=cuda)" "$WORK/err.txt" ||
  { cat "$WORK/err.txt"; exit 1; }

# --- The tokenizer travels with the model -----------------------------------------------------------
fail() { echo "FAIL: $*"; exit 1; }
# expect_fail PATTERN CMD...: CMD exits non-zero and its stderr holds the fixed string PATTERN.
expect_fail() {
  local pattern=$1; shift
  if "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then cat "$WORK/out.txt"; fail "accepted: $*"; fi
  grep -qF -- "$pattern" "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "no '$pattern' in the error of: $*"; }
}
# data.tokenizer must name a tokenizer (checked with the config, --dry_run is enough), the error naming
# the field; a tokenizer.json the tokenizers do not support is refused when the run loads it, naming the
# unsupported field and value.
expect_fail "data.tokenizer (\"$WORK/nowhere\") is neither" "$TRAIN" "${COMMON[@]}" --set "data.tokenizer=$WORK/nowhere" --dry_run
echo '{"model": {"type": "WordPiece", "vocab": {}}}' > "$WORK/wordpiece.json"
expect_fail "model.type: 'WordPiece' is not supported" "$TRAIN" "${COMMON[@]}" --set "data.tokenizer=$WORK/wordpiece.json"
expect_fail "data.tokenizer is empty" "$TRAIN" "${COMMON[@]}" --set "data.tokenizer=" --dry_run
"$TRAIN" "${COMMON[@]}" --set data.tokenizer=byte --dry_run > /dev/null
# The byte-level run's checkpoint records the byte tokenizer and stores no tokenizer files.
STEP="$WORK/run/checkpoints/step-00000040"
grep -q '^tokenizer_fingerprint: "byte"$' "$STEP/manifest" || fail "byte checkpoint: no byte fingerprint"
[ ! -e "$STEP/tokenizer.json" ] || fail "byte checkpoint holds a tokenizer.json"
# A shard with more ids than the model: refused before any work (no output directory), naming the fix.
expect_fail "data shard $WORK/data/train has vocab size 257 > model.vocab_size 200" \
  "$TRAIN" "${COMMON[@]}" --set model.vocab_size=200 --set "output_dir=$WORK/refused"
grep -qF "re-run tools/prepare_data --tokenizer=byte" "$WORK/err.txt" || fail "vocab error names no fix"
[ ! -e "$WORK/refused" ] || fail "the refused run created its output directory"
# A shard of another tokenizer (its index says so): refused naming the shard, both fingerprints, the fix.
cp "$WORK/data/train.tokens" "$WORK/data/other.tokens"
python3 - "$WORK/data/train.index" "$WORK/data/other.index" <<'PY'
import re, sys
text = re.sub(r'(?m)^tokenizer_fingerprint: .*\n', '', open(sys.argv[1]).read())
open(sys.argv[2], "w").write(text + 'tokenizer_fingerprint: "fnv1a64:0123456789abcdef"\n')
PY
expect_fail "data shard $WORK/data/other was written with tokenizer fnv1a64:0123456789abcdef" \
  "$TRAIN" "${COMMON[@]}" --set "data.train_path=$WORK/data/other" --set "output_dir=$WORK/refused"
grep -qF "but this run's tokenizer is byte" "$WORK/err.txt" || fail "fingerprint error: run's fingerprint"
grep -qF "re-run tools/prepare_data --tokenizer=byte, or set data.tokenizer to the shard's" "$WORK/err.txt" ||
  fail "fingerprint error names no fix"
[ ! -e "$WORK/refused" ] || fail "the refused run created its output directory"

# A BPE tokenizer (265 ids) and shards made with it.
python3 "$MAKE_TOKENIZER" "$WORK/tok"
python3 "$MAKE_TOKENIZER" "$WORK/tok2" --variant=2  # another tokenizer
"$PREPARE" --input="$WORK/text" --output="$WORK/tokdata" --tokenizer="$WORK/tok" --val_fraction=0.2 > /dev/null
FP=$(sed -n 's/^tokenizer_fingerprint: "\(.*\)"$/\1/p' "$WORK/tokdata/train.index")
[[ "$FP" == fnv1a64:* ]] || fail "no fingerprint in the BPE shard's index"
TOK=(--config="$CONFIG" --set "data.train_path=$WORK/tokdata/train" --set "data.val_path=$WORK/tokdata/val"
     --set model.vocab_size=272 --set logging.progress_bar=false --set checkpoint.save_every=2 --set eval.every=0)
# Without data.tokenizer the run is byte-level: the BPE shards are refused.
expect_fail "was written with tokenizer $FP" "$TRAIN" "${TOK[@]}" --set "output_dir=$WORK/refused"
grep -qF "this run's tokenizer is byte" "$WORK/err.txt" || fail "BPE shards vs byte run"
# With data.tokenizer it trains; every checkpoint and the HF export hold the tokenizer's files.
"${MPIRUN[@]}" "$TRAIN" "${TOK[@]}" --set "data.tokenizer=$WORK/tok" --set "output_dir=$WORK/tokrun" \
  --set schedule.total_steps=2 --export_hf="$WORK/tokrun/hf" > "$WORK/tok.log" 2>&1 || { cat "$WORK/tok.log"; fail "BPE run"; }
grep -qF "tokenizer: $WORK/tok/tokenizer.json ($FP, vocabulary 265)" "$WORK/tok.log" || { cat "$WORK/tok.log"; fail "tokenizer line"; }
S2="$WORK/tokrun/checkpoints/step-00000002"
for f in tokenizer.json tokenizer_config.json; do
  cmp "$WORK/tok/$f" "$S2/$f" || fail "checkpoint $f differs from the tokenizer's"
  cmp "$WORK/tok/$f" "$WORK/tokrun/hf/$f" || fail "HF export $f differs from the tokenizer's"
done
grep -qF "tokenizer_fingerprint: \"$FP\"" "$S2/manifest" || fail "manifest: no fingerprint"
python3 - "$S2" <<'PY'
import os, re, sys
d = sys.argv[1]
m = open(os.path.join(d, "manifest")).read()
files = re.findall(r'files \{\s*name: "([^"]+)"\s*size: (\d+)\s*crc32c: (\d+)\s*\}', m)
assert sorted(f[0] for f in files) == ["tokenizer.json", "tokenizer_config.json"], files
for name, size, _ in files:
    assert os.path.getsize(os.path.join(d, name)) == int(size), (name, size)
print("manifest lists", files)
PY
# Resuming with another tokenizer is refused, naming the checkpoint and both tokenizers.
expect_fail "cannot resume from $S2: it was trained with tokenizer $FP" \
  "$TRAIN" "${TOK[@]}" --set data.tokenizer=byte --set "output_dir=$WORK/tokrun" --set schedule.total_steps=4
grep -qF "but data.tokenizer (\"byte\") is byte" "$WORK/err.txt" || fail "resume mismatch: fingerprints"
# Resuming without data.tokenizer uses the checkpoint's tokenizer, and keeps storing it.
"${MPIRUN[@]}" "$TRAIN" "${TOK[@]}" --set "output_dir=$WORK/tokrun" --set schedule.total_steps=4 \
  > "$WORK/tok_resume.log" 2>&1 || { cat "$WORK/tok_resume.log"; fail "resume without data.tokenizer"; }
grep -qF "tokenizer: $S2/tokenizer.json ($FP, vocabulary 265), stored with $S2" "$WORK/tok_resume.log" ||
  { cat "$WORK/tok_resume.log"; fail "the resumed run did not use the checkpoint's tokenizer"; }
grep -q "resumed from .*step-00000002 at step 2" "$WORK/tok_resume.log" || fail "did not resume"
cmp "$WORK/tok/tokenizer.json" "$WORK/tokrun/checkpoints/step-00000004/tokenizer.json" || fail "step 4 tokenizer.json"
# --init_from the HF export: its tokenizer is carried along into the new run's checkpoints ...
"${MPIRUN[@]}" "$TRAIN" "${TOK[@]}" --init_from="$WORK/tokrun/hf" --set "output_dir=$WORK/fromhf" \
  --set schedule.total_steps=2 > "$WORK/fromhf.log" 2>&1 || { cat "$WORK/fromhf.log"; fail "--init_from"; }
# keep_last: 0 keeps every complete checkpoint (torchtitan's keep_latest_k = 0); 1 keeps the newest.
for keep in 0 1; do
  "${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set checkpoint.save_every=1 --set checkpoint.keep_last=$keep     --set schedule.total_steps=3 --set "output_dir=$WORK/keep$keep" > "$WORK/keep.log" 2>&1 ||
    { cat "$WORK/keep.log"; fail "keep_last=$keep"; }
done
[ "$(ls -d "$WORK"/keep0/checkpoints/step-* | wc -l)" = 3 ] || fail "keep_last 0 did not keep every checkpoint"
[ "$(ls -d "$WORK"/keep1/checkpoints/step-* | wc -l)" = 1 ] || fail "keep_last 1 kept more than the newest"
[ -d "$WORK/keep1/checkpoints/step-00000003" ] || fail "keep_last 1 did not keep the newest"
# A resume with another global batch size continues from the samples consumed (2 steps of 4), not from
# step x 8; it says so, and the manifest then records 2 x 4 + 2 x 8 samples consumed.
"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set schedule.total_steps=2 --set "output_dir=$WORK/gbs" > "$WORK/gbs.log" 2>&1 ||
  { cat "$WORK/gbs.log"; fail "global batch 4 run"; }
grep -q "^next_sample_index: 8$" "$WORK/gbs/checkpoints/step-00000002/manifest" || fail "next_sample_index after 2 x 4"
"${MPIRUN[@]}" "$TRAIN" "${COMMON[@]}" --set schedule.total_steps=4 --set batch.global_batch_size=8 \
  --set "output_dir=$WORK/gbs" > "$WORK/gbs.log" 2>&1 || { cat "$WORK/gbs.log"; fail "resume with global batch 8"; }
grep -qF "global batch size 4 -> 8: the data continue from sample 8 (the samples consumed)" "$WORK/gbs.log" ||
  { cat "$WORK/gbs.log"; fail "no global batch note"; }
grep -q "^next_sample_index: 24$" "$WORK/gbs/checkpoints/step-00000004/manifest" || fail "next_sample_index after 2 x 4 + 2 x 8"
grep -qF "stored with $WORK/tokrun/hf" "$WORK/fromhf.log" || { cat "$WORK/fromhf.log"; fail "--init_from tokenizer"; }
cmp "$WORK/tok/tokenizer.json" "$WORK/fromhf/checkpoints/step-00000002/tokenizer.json" || fail "--init_from: tokenizer.json"
# ... and a data.tokenizer naming another tokenizer is refused.
expect_fail "--init_from=$WORK/tokrun/hf holds weights for tokenizer $FP" \
  "$TRAIN" "${TOK[@]}" --init_from="$WORK/tokrun/hf" --set "data.tokenizer=$WORK/tok2" --set "output_dir=$WORK/refused"
echo PASS

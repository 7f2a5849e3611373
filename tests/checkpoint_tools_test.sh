#!/usr/bin/env bash
# tools/inspect_checkpoint and tools/convert_checkpoint end to end. The tiny config trains 4 steps on
# 2 ranks (dp=2, ep=2, FP32, a checkpoint every 2 steps), then:
#   - inspect verifies the checkpoint; native -> HF (F32) equals the trainer's own --export_hf, and
#     -> native -> HF again is bit-identical (single file and sharded); BF16 export = RNE of the masters
#     (correction biases F32); the converted 1-rank checkpoint resumes in the dp=2 ep=2 layout;
#   - one changed digit in the manifest or in COMPLETE's manifest checksum: inspect, convert and train refuse
#     naming the manifest; a checkpoint whose COMPLETE has no checksum (older ones) loads with a warning;
#   - one flipped byte: inspect exits 1 naming file and tensor, and `train` refuses to resume naming the
#     file; a truncated and a deleted data file: inspect, convert and train fail naming the file;
#   - the golden HF directory -> native -> HF F32 holds the original tensors bit for bit, also with an MTP
#     module (and its embedding/head copies); --drop_mtp; a copy that differs from the shared tensor;
#   - tokenizers: a byte-level checkpoint stores none (and one whose manifest predates tokenizers still
#     resumes); a BPE run's checkpoint stores tokenizer.json + tokenizer_config.json, which inspect lists
#     and verifies and convert copies native -> HF -> native -> HF; a flipped byte or a deleted tokenizer
#     file is refused naming the file by inspect, convert and train.
#   checkpoint_tools_test.sh TRAIN PREPARE_DATA CONFIG INSPECT CONVERT MAKE_TEXT_CORPUS GOLDEN_HF_DIR
#                            MAKE_TINY_TOKENIZER
set -uo pipefail
TRAIN=$1; PREPARE=$2; CONFIG=$3; INSPECT=$4; CONVERT=$5; CORPUS=$6; GOLDEN=$7; MAKE_TOKENIZER=$8
WORK="${TEST_TMPDIR:-$(mktemp -d)}/checkpoint_tools"
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 8 120 || fail "corpus generation failed"
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.25 >/dev/null || fail "prepare_data failed"

# train OUTPUT_DIR TOTAL_STEPS [extra flags]: the tiny model, 2 ranks, dp=2 ep=2, FP32.
train() {
  local out=$1 steps=$2; shift 2
  timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 \
    --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    "$TRAIN" --config="$CONFIG" \
    --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val" \
    --set model.vocab_size=257 --set "output_dir=$out" --set logging.progress_bar=false \
    --set precision=FP32 --set batch.micro_batch_size=1 --set schedule.total_steps="$steps" \
    --set checkpoint.save_every=2 --set eval.batches=2 --set num_threads=1 \
    --set parallel.dp=2 --set parallel.ep=2 "$@"
}

# Reads HF directories with the standard library only (single file or index + shards).
cat >"$WORK/hfcheck.py" <<'EOF'
import array, json, os, struct, sys

def read_dir(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
            data = fh.read()
        for name, info in header.items():
            if name != "__metadata__":
                b, e = info["data_offsets"]
                out[name] = (info["dtype"], info["shape"], data[b:e])
    return out

def rne_bf16(u32):  # FP32 bits -> BF16 bits, round to nearest even (no NaNs in weights)
    return ((u32 + 0x7FFF + ((u32 >> 16) & 1)) >> 16) & 0xFFFF

cmd, a, b = sys.argv[1], read_dir(sys.argv[2]), read_dir(sys.argv[3])
if set(a) != set(b):
    sys.exit(f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
if cmd == "same":  # every tensor: dtype, shape and bytes identical
    for name in sorted(a):
        if a[name] != b[name]:
            sys.exit(f"{name} differs: {a[name][:2]} vs {b[name][:2]}")
    print(f"{len(a)} tensors bit-identical")
elif cmd == "bf16":  # b is the BF16 export of F32 directory a
    checked = 0
    for name in sorted(a):
        (da, sa, ba), (db, sb, bb) = a[name], b[name]
        assert da == "F32" and sa == sb, (name, da, sa, sb)
        if name.endswith("e_score_correction_bias"):
            if db != "F32" or ba != bb:
                sys.exit(f"{name}: expected the F32 values, got {db}")
            continue
        if db != "BF16":
            sys.exit(f"{name}: dtype {db}, expected BF16")
        f32, bf = array.array("I"), array.array("H")
        f32.frombytes(ba); bf.frombytes(bb)
        for i, (u, h) in enumerate(zip(f32, bf)):
            if rne_bf16(u) != h:
                sys.exit(f"{name}[{i}]: BF16 bits {h:#06x}, expected {rne_bf16(u):#06x} (FP32 {u:#010x})")
        checked += len(f32)
    print(f"{checked} BF16 elements are the round-to-nearest-even of the FP32 masters")
EOF
check() { python3 "$WORK/hfcheck.py" "$@" || fail "hfcheck $*"; }

# --- A trained checkpoint -----------------------------------------------------------------------
RUN="$WORK/run"
train "$RUN" 4 --export_hf="$RUN/hf_export" >"$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; fail "training failed"; }
STEP="$RUN/checkpoints/step-00000004"
[ -f "$STEP/COMPLETE" ] || fail "no checkpoint at step 4"
"$INSPECT" --checkpoint="$STEP" >"$WORK/inspect.log" 2>&1 || { cat "$WORK/inspect.log"; fail "inspect of a good checkpoint"; }
grep -q "^OK" "$WORK/inspect.log" || fail "inspect printed no OK"
grep -q "layout dp=2 tp=1 ep=2, world size 2" "$WORK/inspect.log" || { cat "$WORK/inspect.log"; fail "inspect summary"; }
"$INSPECT" --checkpoint="$RUN/checkpoints" >/dev/null 2>&1 || fail "inspect of a checkpoints root (latest)"

# native -> HF F32 == the trainer's export (FP32 run: working weights are the masters).
"$CONVERT" --from="$STEP" --to="$WORK/hf1" --dtype=fp32 >/dev/null || fail "native -> HF fp32"
check same "$RUN/hf_export" "$WORK/hf1"
# -> native (1 rank) -> HF again: bit-identical, as one file and sharded.
"$CONVERT" --from="$WORK/hf1" --to="$WORK/native2" --config="$CONFIG" --set model.vocab_size=257 >/dev/null ||
  fail "HF -> native"
"$INSPECT" --checkpoint="$WORK/native2/step-00000000" >/dev/null || fail "inspect of the converted checkpoint"
"$CONVERT" --from="$WORK/native2/step-00000000" --to="$WORK/hf2" --dtype=fp32 >/dev/null || fail "native2 -> HF"
cmp "$WORK/hf1/model.safetensors" "$WORK/hf2/model.safetensors" || fail "native -> HF -> native -> HF changed the weights"
"$CONVERT" --from="$WORK/native2" --to="$WORK/hf3" --dtype=fp32 --max_shard_mb=0.3 >/dev/null || fail "sharded export"
[ -f "$WORK/hf3/model.safetensors.index.json" ] && [ ! -f "$WORK/hf3/model.safetensors" ] || fail "no sharded export"
check same "$WORK/hf1" "$WORK/hf3"
# A model mismatch is refused, naming the field.
if "$CONVERT" --from="$WORK/hf1" --to="$WORK/mismatch" --config="$CONFIG" >"$WORK/mismatch.log" 2>&1; then
  fail "HF -> native accepted a config of another vocab size"
fi
grep -q "vocab_size: 257 -> 256" "$WORK/mismatch.log" || { cat "$WORK/mismatch.log"; fail "mismatch message"; }

# BF16 export (default) = RNE of the FP32 masters, correction biases F32.
"$CONVERT" --from="$STEP" --to="$WORK/hf_bf16" >/dev/null || fail "native -> HF bf16"
grep -q '"torch_dtype": "bfloat16"' "$WORK/hf_bf16/config.json" || fail "bf16 config.json torch_dtype"
check bf16 "$WORK/hf1" "$WORK/hf_bf16"

# The converted 1-rank checkpoint resumes in the dp=2 ep=2 layout (resharding).
mkdir -p "$WORK/fromhf" && cp -r "$WORK/native2" "$WORK/fromhf/checkpoints"
train "$WORK/fromhf" 4 --exit_interval=1 >"$WORK/fromhf.log" 2>&1 || { cat "$WORK/fromhf.log"; fail "resume from converted"; }
grep -q "resumed from .*step-00000000 at step 0" "$WORK/fromhf.log" || { cat "$WORK/fromhf.log"; fail "did not resume"; }

# --- Damaged checkpoints ---------------------------------------------------------------------------
# damaged NAME: a copy of the run's checkpoints under WORK/NAME/checkpoints; prints its step dir.
damaged() {
  rm -rf "$WORK/$1" && mkdir -p "$WORK/$1" && cp -r "$RUN/checkpoints" "$WORK/$1/" && echo "$WORK/$1/checkpoints/step-00000004"
}
flip() {  # FILE OFFSET: inverts one byte
  python3 -c 'import sys; p, o = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, "rb").read()); b[o] ^= 0xFF; open(p, "wb").write(b)' "$1" "$2"
}
# expect_fail WHAT PATTERN LOG CMD...: CMD must exit non-zero with PATTERN in its output.
expect_fail() {
  local what=$1 pattern=$2 log=$3; shift 3
  if "$@" >"$log" 2>&1; then cat "$log"; fail "$what succeeded"; fi
  grep -q -- "$pattern" "$log" || { cat "$log"; fail "$what: no '$pattern' in the output"; }
}

# One flipped byte in rank 1's file (an Adam moment): inspect names file and tensor.
D=$(damaged flip1)
flip "$D/rank-00001.bin" 700000
expect_fail "inspect (flipped byte)" "CRC32C mismatch in checkpoint data file $D/rank-00001.bin at byte [0-9]* (tensor model\." \
  "$WORK/flip1_inspect.log" "$INSPECT" --checkpoint="$D"
grep -q "^FAILED: 1 problem" "$WORK/flip1_inspect.log" || { cat "$WORK/flip1_inspect.log"; fail "expected exactly 1 problem"; }
# In rank 0's file (rank 0 reads it itself, so its message is certain to appear before the abort):
# train resuming from <output_dir>/checkpoints/latest fails naming the file.
D=$(damaged flip0)
flip "$D/rank-00000.bin" 1
expect_fail "inspect (flipped byte, rank 0)" "master piece 0: .*rank-00000.bin at byte 0 " "$WORK/flip0_inspect.log" \
  "$INSPECT" --checkpoint="$D"
# Byte 1 lies in the file's first piece, always a master: converting reads it and fails too.
expect_fail "convert (flipped byte)" "CRC32C mismatch.*rank-00000.bin" "$WORK/flip0_convert.log" \
  "$CONVERT" --from="$D" --to="$WORK/flip0_hf"
expect_fail "train resume (flipped byte)" "CRC32C mismatch in checkpoint data file $D/rank-00000.bin" \
  "$WORK/flip0_train.log" train "$WORK/flip0" 6

# Truncated data file.
D=$(damaged trunc)
truncate -s 1000000 "$D/rank-00001.bin"
expect_fail "inspect (truncated)" "data file $D/rank-00001.bin is truncated: 1000000 bytes" "$WORK/trunc_inspect.log" \
  "$INSPECT" --checkpoint="$D"
grep -q "tensor model\..* extends past the end of the data file" "$WORK/trunc_inspect.log" || fail "truncation names no tensor"
expect_fail "convert (truncated)" "rank-00001.bin is truncated" "$WORK/trunc_convert.log" \
  "$CONVERT" --from="$D" --to="$WORK/trunc_hf"

# Deleted data file.
D=$(damaged deleted)
rm "$D/rank-00000.bin"
expect_fail "inspect (deleted)" "data file $D/rank-00000.bin is missing" "$WORK/del_inspect.log" "$INSPECT" --checkpoint="$D"
expect_fail "convert (deleted)" "rank-00000.bin is missing" "$WORK/del_convert.log" "$CONVERT" --from="$D" --to="$WORK/del_hf"
expect_fail "train resume (deleted)" "checkpoint data file $D/rank-00000.bin is missing" "$WORK/del_train.log" \
  train "$WORK/deleted" 6

# One changed digit in the manifest (the step, which no data CRC covers), or in COMPLETE's checksum:
# inspect, convert and train refuse naming the manifest. No rank's merged manifest part is left behind.
ls "$STEP" | grep -q '\.part$' && fail "manifest parts left in $STEP"
D=$(damaged manifest_digit)
sed -i 's/^step: 4$/step: 5/' "$D/manifest" && grep -q "^step: 5$" "$D/manifest" || fail "could not edit the manifest"
expect_fail "inspect (manifest digit)" "CRC32C mismatch in checkpoint file $D/manifest" "$WORK/mdigit_inspect.log" \
  "$INSPECT" --checkpoint="$D"
expect_fail "convert (manifest digit)" "CRC32C mismatch in checkpoint file $D/manifest" "$WORK/mdigit_convert.log" \
  "$CONVERT" --from="$D" --to="$WORK/mdigit_hf"
expect_fail "train resume (manifest digit)" "CRC32C mismatch in checkpoint file $D/manifest" "$WORK/mdigit_train.log" \
  train "$WORK/manifest_digit" 6
D=$(damaged complete_digit)
python3 - "$D/COMPLETE" <<'PY' || fail "could not edit COMPLETE"
import sys
text = open(sys.argv[1]).read()
i = text.index("manifest_crc32c: ") + len("manifest_crc32c: ")
open(sys.argv[1], "w").write(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
PY
expect_fail "inspect (COMPLETE digit)" "CRC32C mismatch in checkpoint file $D/manifest" "$WORK/cdigit_inspect.log" \
  "$INSPECT" --checkpoint="$D"

# --- The golden HF model -> native -> HF ---------------------------------------------------------------
"$CONVERT" --from="$GOLDEN" --to="$WORK/golden_native" >"$WORK/golden.log" 2>&1 || { cat "$WORK/golden.log"; fail "golden -> native"; }
"$INSPECT" --checkpoint="$WORK/golden_native/step-00000000" >/dev/null || fail "inspect of the converted golden model"
"$CONVERT" --from="$WORK/golden_native" --to="$WORK/golden_hf" --dtype=fp32 >/dev/null || fail "golden native -> HF"
check same "$GOLDEN" "$WORK/golden_hf"
# With a multi-token-prediction module: its tensors and its copies of the embedding and head come back
# bit for bit; --drop_mtp writes an inference-only copy (num_nextn_predict_layers 0, no layer-3 tensors).
GOLDEN_MTP="$(dirname "$GOLDEN")/tiny_mtp_fp32"
"$CONVERT" --from="$GOLDEN_MTP" --to="$WORK/mtp_native" >"$WORK/mtp.log" 2>&1 || { cat "$WORK/mtp.log"; fail "golden MTP -> native"; }
grep -q "warning" "$WORK/mtp.log" && { cat "$WORK/mtp.log"; fail "golden MTP -> native warned"; }
"$CONVERT" --from="$WORK/mtp_native" --to="$WORK/mtp_hf" --dtype=fp32 >/dev/null || fail "golden MTP native -> HF"
check same "$GOLDEN_MTP" "$WORK/mtp_hf"
"$CONVERT" --from="$WORK/mtp_native" --to="$WORK/mtp_dropped" --dtype=fp32 --drop_mtp >/dev/null || fail "--drop_mtp"
python3 - "$WORK/mtp_dropped" <<'PY' || fail "--drop_mtp output"
import json, os, struct, sys
cfg = json.load(open(os.path.join(sys.argv[1], "config.json")))
assert cfg["num_nextn_predict_layers"] == 0, cfg["num_nextn_predict_layers"]
with open(os.path.join(sys.argv[1], "model.safetensors"), "rb") as f:
    names = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
assert "lm_head.weight" in names and not any(n.startswith("model.layers.3.") for n in names)
PY
# A copy that differs from the shared tensor is reported (the shared one is used).
cp -r "$WORK/mtp_hf" "$WORK/mtp_bad_copy"
python3 - "$WORK/mtp_bad_copy/model.safetensors" <<'PY' || fail "could not alter the copy"
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
b, _ = json.loads(raw[8:8 + n])["model.layers.3.shared_head.head.weight"]["data_offsets"]
raw[8 + n + b + 3] ^= 0x40
open(sys.argv[1], "wb").write(raw)
PY
"$CONVERT" --from="$WORK/mtp_bad_copy" --to="$WORK/mtp_bad_native" >"$WORK/bad_copy.log" 2>&1 || fail "convert with a differing copy"
grep -q "model.layers.3.shared_head.head.weight .* differs from lm_head.weight" "$WORK/bad_copy.log" ||
  { cat "$WORK/bad_copy.log"; fail "a differing MTP copy was not reported"; }

# --- Tokenizers -------------------------------------------------------------------------------------------
# The byte-level run: no tokenizer files in the checkpoint, its export or its conversions.
grep -q "tokenizer byte$" "$WORK/inspect.log" || { cat "$WORK/inspect.log"; fail "inspect: no byte tokenizer line"; }
for d in "$STEP" "$RUN/hf_export" "$WORK/hf1" "$WORK/native2/step-00000000"; do
  [ ! -e "$d/tokenizer.json" ] || fail "$d holds a tokenizer.json"
done
# A checkpoint written before tokenizers were stored (no tokenizer_fingerprint in its manifest) resumes.
mkdir -p "$WORK/old" && cp -r "$RUN/checkpoints" "$WORK/old/"
sed -i '/^tokenizer_fingerprint:/d' "$WORK/old/checkpoints/step-00000004/manifest"
grep -q tokenizer "$WORK/old/checkpoints/step-00000004/manifest" && fail "could not strip the fingerprint"
echo complete > "$WORK/old/checkpoints/step-00000004/COMPLETE"  # nor a manifest checksum then
train "$WORK/old" 6 >"$WORK/old.log" 2>&1 || { cat "$WORK/old.log"; fail "resume of a pre-tokenizer checkpoint"; }
grep -q "resumed from .*step-00000004 at step 4" "$WORK/old.log" || { cat "$WORK/old.log"; fail "did not resume"; }
grep -q "warning: .*step-00000004 was written before manifests carried a checksum" "$WORK/old.log" ||
  { cat "$WORK/old.log"; fail "no warning for a manifest without a checksum"; }
# Without a checksum, recorded optimizer counters that disagree with the step are still refused.
mkdir -p "$WORK/old2" && cp -r "$RUN/checkpoints" "$WORK/old2/"
D2="$WORK/old2/checkpoints/step-00000004"
echo complete > "$D2/COMPLETE"
sed -i 's/^adam_step: 4$/adam_step: 3/' "$D2/manifest" && grep -q "^adam_step: 3$" "$D2/manifest" || fail "could not edit adam_step"
if train "$WORK/old2" 6 >"$WORK/old2.log" 2>&1; then cat "$WORK/old2.log"; fail "resumed though adam_step disagrees with step"; fi
grep -q "manifest: adam_step 3 differs from step 4" "$WORK/old2.log" || { cat "$WORK/old2.log"; fail "no adam_step message"; }

# A BPE run on 2 ranks (rank 0 writes the tokenizer files).
python3 "$MAKE_TOKENIZER" "$WORK/tok" && python3 "$MAKE_TOKENIZER" "$WORK/tok2" --variant=2 || fail "tokenizer"
"$PREPARE" --input="$WORK/text" --output="$WORK/tokdata" --tokenizer="$WORK/tok" --val_fraction=0.25 >/dev/null ||
  fail "prepare_data --tokenizer"
TOKRUN="$WORK/tokrun"
train "$TOKRUN" 2 --set "data.train_path=$WORK/tokdata/train" --set "data.val_path=$WORK/tokdata/val" \
  --set model.vocab_size=272 --set "data.tokenizer=$WORK/tok" >"$WORK/tokrun.log" 2>&1 ||
  { cat "$WORK/tokrun.log"; fail "BPE training"; }
TSTEP="$TOKRUN/checkpoints/step-00000002"
same_tokenizer() {  # DIR: holds tok's two files
  cmp "$WORK/tok/tokenizer.json" "$1/tokenizer.json" && cmp "$WORK/tok/tokenizer_config.json" "$1/tokenizer_config.json" ||
    fail "$1 does not hold the run's tokenizer files"
}
same_tokenizer "$TSTEP"
"$INSPECT" --checkpoint="$TSTEP" >"$WORK/tok_inspect.log" 2>&1 || { cat "$WORK/tok_inspect.log"; fail "inspect (BPE)"; }
grep -q "tokenizer fnv1a64:[0-9a-f]*: tokenizer.json [0-9]* bytes, tokenizer_config.json [0-9]* bytes" \
  "$WORK/tok_inspect.log" || { cat "$WORK/tok_inspect.log"; fail "inspect: tokenizer line"; }
# native -> HF -> native -> HF: the tokenizer files travel every way.
"$CONVERT" --from="$TSTEP" --to="$WORK/tok_hf" >/dev/null || fail "BPE native -> HF"
same_tokenizer "$WORK/tok_hf"
"$CONVERT" --from="$WORK/tok_hf" --to="$WORK/tok_native" >"$WORK/tok_native.log" 2>&1 ||
  { cat "$WORK/tok_native.log"; fail "BPE HF -> native"; }
same_tokenizer "$WORK/tok_native/step-00000000"
grep -q "^tokenizer_fingerprint: \"fnv1a64:" "$WORK/tok_native/step-00000000/manifest" || fail "HF -> native: fingerprint"
"$INSPECT" --checkpoint="$WORK/tok_native" >/dev/null || fail "inspect of the converted BPE checkpoint"
"$CONVERT" --from="$WORK/tok_native" --to="$WORK/tok_hf2" >/dev/null || fail "BPE native -> HF again"
same_tokenizer "$WORK/tok_hf2"
# HF -> native with a --config naming another tokenizer than the directory's: refused.
expect_fail "HF -> native (other tokenizer)" "$WORK/tok_hf holds weights for tokenizer fnv1a64:" "$WORK/tok_other.log" \
  "$CONVERT" --from="$WORK/tok_hf" --to="$WORK/tok_other" --config="$CONFIG" --set model.vocab_size=272 \
  --set "data.tokenizer=$WORK/tok2"
# A byte-level export over a directory holding tokenizer files removes them (they would pass for its own).
cp -r "$WORK/tok_hf" "$WORK/stale_hf"
"$CONVERT" --from="$STEP" --to="$WORK/stale_hf" >/dev/null || fail "byte export over a BPE directory"
[ ! -e "$WORK/stale_hf/tokenizer.json" ] && [ ! -e "$WORK/stale_hf/tokenizer_config.json" ] || fail "stale tokenizer files kept"

# A flipped byte in the stored tokenizer.json: inspect, convert and train refuse naming the file.
rm -rf "$WORK/tokflip" && mkdir -p "$WORK/tokflip" && cp -r "$TOKRUN/checkpoints" "$WORK/tokflip/"
D="$WORK/tokflip/checkpoints/step-00000002"
flip "$D/tokenizer.json" 100
expect_fail "inspect (tokenizer.json)" "PROBLEM: CRC32C mismatch in checkpoint file $D/tokenizer.json" \
  "$WORK/tokflip_inspect.log" "$INSPECT" --checkpoint="$D"
grep -q "^FAILED: 1 problem" "$WORK/tokflip_inspect.log" || { cat "$WORK/tokflip_inspect.log"; fail "expected 1 problem"; }
expect_fail "convert (tokenizer.json)" "CRC32C mismatch in checkpoint file $D/tokenizer.json" "$WORK/tokflip_convert.log" \
  "$CONVERT" --from="$D" --to="$WORK/tokflip_hf"
expect_fail "train resume (tokenizer.json)" "CRC32C mismatch in checkpoint file $D/tokenizer.json" \
  "$WORK/tokflip_train.log" train "$WORK/tokflip" 4 --set "data.train_path=$WORK/tokdata/train" \
  --set "data.val_path=$WORK/tokdata/val" --set model.vocab_size=272
# A deleted tokenizer_config.json.
rm -rf "$WORK/tokdel" && mkdir -p "$WORK/tokdel" && cp -r "$TOKRUN/checkpoints" "$WORK/tokdel/"
D="$WORK/tokdel/checkpoints/step-00000002"
rm "$D/tokenizer_config.json"
expect_fail "inspect (deleted tokenizer_config.json)" "checkpoint file $D/tokenizer_config.json is missing" \
  "$WORK/tokdel_inspect.log" "$INSPECT" --checkpoint="$D"
expect_fail "train resume (deleted tokenizer_config.json)" "checkpoint file $D/tokenizer_config.json is missing" \
  "$WORK/tokdel_train.log" train "$WORK/tokdel" 4 --set "data.train_path=$WORK/tokdata/train" \
  --set "data.val_path=$WORK/tokdata/val" --set model.vocab_size=272
echo PASS

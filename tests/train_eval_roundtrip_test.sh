#!/usr/bin/env bash
# Round trip train -> native checkpoint -> Hugging Face -> tools/hf_eval: the exported directory gives the
# loss that `train --eval_tokens` reports for the same weights and the same batch (docs/model.md), on one
# rank and on DP=2 x TP=2 x EP=4 (FP32); then the same with two multi-token-prediction modules (the main
# and the weighted MTP loss), whose export (train --export_hf and convert_checkpoint) carries each module's
# copies of the embedding and head, equal to the shared tensors.
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; CORPUS="$4"; RUN_MPI="$5"; CONVERT="$6"; HF_EVAL="$7"; TOKENS="$8"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/roundtrip"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 6 80
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.3 >/dev/null

# roundtrip NAME [--set ...]: train 6 steps, convert, compare hf_eval with train --eval_tokens.
roundtrip() {
  local name=$1; shift
  local common=(--config="$CONFIG" --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val"
                --set model.vocab_size=257 --set logging.progress_bar=false --set "output_dir=$WORK/$name"
                --set batch.micro_batch_size=1 --set num_threads=1 "$@")
  "$RUN_MPI" 1 "$TRAIN" "${common[@]}" --set schedule.total_steps=6 --export_hf="$WORK/$name/export" \
    > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; exit 1; }
  "$CONVERT" --from="$WORK/$name/checkpoints/step-00000006" --to="$WORK/$name/hf" --dtype=fp32 > /dev/null
  "$HF_EVAL" --model="$WORK/$name/hf" --tokens="$TOKENS" --seq_len=32 --batch=4 > "$WORK/$name/want.json"
  for layout in "1" "4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4"; do
    set -- $layout
    local np=$1; shift
    "$RUN_MPI" "$np" "$TRAIN" "${common[@]}" "$@" --eval_tokens="$TOKENS" --eval_batch=4 2>/dev/null \
      | grep '^{' > "$WORK/$name/got.json"
    python3 - "$WORK/$name/want.json" "$WORK/$name/got.json" "$np" <<'PY'
import json, sys
want, got = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for key in ("loss", "mtp_loss"):
    assert (key in want) == (key in got), key
    if key in want:
        assert abs(got[key] - want[key]) <= 1e-6 * abs(want[key]), (key, "train eval", got[key], "hf_eval", want[key])
        print(f"ranks={sys.argv[3]}: train --eval_tokens {key} {got[key]} == hf_eval {want[key]}")
PY
  done
}

roundtrip plain
roundtrip mtp --set model.num_nextn_predict_layers=2
python3 - "$WORK/mtp/export" "$WORK/mtp/hf" <<'PY'
import json, os, struct, sys
for d in sys.argv[1:]:
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    raw = lambda n: data[slice(*header[n]["data_offsets"])]
    assert json.load(open(os.path.join(d, "config.json")))["num_nextn_predict_layers"] == 2
    for layer in (3, 4):  # tiny: 3 main layers, MTP modules at 3 and 4
        for copy, shared in (("embed_tokens.weight", "model.embed_tokens.weight"), ("shared_head.head.weight", "lm_head.weight")):
            name = f"model.layers.{layer}.{copy}"
            assert name in header and raw(name) == raw(shared), (d, name)
        for own in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight"):
            assert f"model.layers.{layer}.{own}" in header, (d, layer, own)
    print(d, ": MTP modules and their copies of the embedding and head present")
PY
echo PASS

#!/usr/bin/env bash
# Round trip train -> native checkpoint -> Hugging Face -> tools/hf_eval: the exported directory gives the
# loss that `train --eval_tokens` reports for the same weights and the same spec §6.1 batch, on one rank
# and on DP=2 x TP=2 x EP=4 (FP32).
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; CORPUS="$4"; RUN_MPI="$5"; CONVERT="$6"; HF_EVAL="$7"; TOKENS="$8"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/roundtrip"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 6 80
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.3 >/dev/null
COMMON=(--config="$CONFIG" --set "data.train_path=$WORK/data/train" --set "data.val_path=$WORK/data/val"
        --set model.vocab_size=257 --set logging.progress_bar=false --set "output_dir=$WORK/run"
        --set batch.micro_batch_size=1 --set num_threads=1)
"$RUN_MPI" 1 "$TRAIN" "${COMMON[@]}" --set schedule.total_steps=6 > "$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; exit 1; }
"$CONVERT" --from="$WORK/run/checkpoints/step-00000006" --to="$WORK/hf" --dtype=fp32 > /dev/null
want=$("$HF_EVAL" --model="$WORK/hf" --tokens="$TOKENS" --seq_len=32 --batch=4 | python3 -c "import json,sys; print(json.load(sys.stdin)['loss'])")
for layout in "1" "4 --set parallel.dp=2 --set parallel.tp=2 --set parallel.ep=4"; do
  set -- $layout
  np=$1; shift
  got=$("$RUN_MPI" "$np" "$TRAIN" "${COMMON[@]}" "$@" --eval_tokens="$TOKENS" --eval_batch=4 2>/dev/null \
        | python3 -c "import json,sys; print([json.loads(l) for l in sys.stdin if l.startswith('{')][0]['loss'])")
  python3 -c "
w, g = $want, $got
assert abs(g - w) <= 1e-6 * abs(w), ('train eval', g, 'hf_eval', w)
print('ranks=$np: train --eval_tokens loss', g, '== hf_eval loss', w)"
done
echo PASS

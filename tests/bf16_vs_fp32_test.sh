#!/usr/bin/env bash
# BF16 mode against FP32 mode on the brown_small model, same seed and data: the training losses agree
# within 2% relative at every one of the first 50 steps (BF16 working weights and activations, FP32
# masters, moments and accumulation: the BF16 run must track the FP32 one, not drift from it).
set -euo pipefail
TRAIN="$1"; PREPARE="$2"; CONFIG="$3"; COMPARE="$4"; CORPUS="$5"; RUN_MPI="$6"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/bf16"
mkdir -p "$WORK/text"
python3 "$CORPUS" "$WORK/text" 12 200
"$PREPARE" --input="$WORK/text" --output="$WORK/data" --val_fraction=0.2 >/dev/null
for precision in FP32 BF16; do
  MPI_TEST_TIMEOUT_S=600 "$RUN_MPI" 1 "$TRAIN" --config="$CONFIG" --set "data.train_path=$WORK/data/train" \
    --set "data.val_path=$WORK/data/val" --set "output_dir=$WORK/$precision" --set precision=$precision \
    --set parallel.dp=1 --set parallel.ep=1 --set schedule.total_steps=50 --set eval.every=0 \
    --set eval.batches=1 --set checkpoint.save_at_end=false --set logging.progress_bar=false \
    > "$WORK/$precision.log" 2>&1 || { cat "$WORK/$precision.log"; exit 1; }
done
python3 "$COMPARE" "$WORK/FP32" "$WORK/BF16" --loss_rtol=0.02
echo PASS

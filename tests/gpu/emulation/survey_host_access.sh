#!/usr/bin/env bash
# Where host code touches device memory in a whole training run through the CUDA backend, under the
# emulation (include/emu.h, EMU_DEVICE_ONLY with EMU_ASYNC): device and managed allocations are
# inaccessible except while the emulated stream works on them, and every host access is reported with
# its call stack. Runs the trainer (built on the shim by run_model_emulation.sh with TARGET) on
# configs/tiny_brown.textproto with one MTP module: 2 steps with validation and a checkpoint, then a resume for a third
# step with --export_hf, then one step from each with --init_from (the exported Hugging Face
# directory, the native checkpoint). Prints each distinct place once (the innermost named functions), with how
# many accesses it made. A survey of what a move from unified memory to a device pool must turn into
# Backend::CopyFromHost / CopyToHost (tests/gpu/emulation/README.md "Survey"), not a pass/fail check;
# exits non-zero only when a run fails.
#   tests/gpu/emulation/survey_host_access.sh [workdir]     (needs data_cache/brown: tools/setup.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
EMU=$ROOT/tests/gpu/emulation
WORK=${1:-$(mktemp -d)}
cd "$ROOT"
TARGET=trainer:train "$EMU/run_model_emulation.sh" "$WORK"
BIN=$WORK/train_emu
OUT=$WORK/run
rm -rf "$OUT"
train() {  # log-name output-dir flags...
  local log=$WORK/$1.log out=$2
  shift 2
  EMU_ASYNC=1 EMU_DEVICE_ONLY=1 mpirun --allow-run-as-root -np 1 "$BIN" --config=configs/tiny_brown.textproto \
    --set device=CUDA --set "output_dir=$out" --set logging.progress_bar=false --set eval.every=2 \
    --set eval.batches=1 --set checkpoint.save_every=2 --set model.num_nextn_predict_layers=1 "$@" > "$log" 2>&1 || { tail -n 20 "$log"; exit 1; }
  grep -E '^EMU device-only' "$log"
}
train first "$OUT" --set schedule.total_steps=2
train resumed "$OUT" --set schedule.total_steps=3 --export_hf="$WORK/hf"
rm -rf "$WORK/from_hf" "$WORK/from_native"
train from_hf "$WORK/from_hf" --set schedule.total_steps=1 --init_from="$WORK/hf"
train from_native "$WORK/from_native" --set schedule.total_steps=1 --init_from="$OUT/checkpoints/step-00000002"
python3 - "$WORK"/{first,resumed,from_hf,from_native}.log <<'PY'
import collections, re, subprocess, sys
# The handler prints "EMU host access N ..." then the stack, innermost first (backtrace_symbols_fd).
places = collections.OrderedDict()
for path in sys.argv[1:]:
    frames, current = [], None
    for line in open(path, errors="replace"):
        if line.startswith("EMU host access"):
            current = []
            frames.append(current)
        elif current is not None and re.match(r"^/\S+\(.*\)\[0x", line):
            m = re.match(r"^(\S+?)\(([^+)]*)\+0x", line)
            if m and m.group(1).endswith("_emu") and m.group(2):
                current.append(m.group(2))
        else:
            current = None
    for stack in frames:
        names = subprocess.run(["c++filt"], input="\n".join(stack[:2]), capture_output=True,
                               text=True).stdout.split("\n")
        key = " <- ".join(re.sub(r"\(.*", "", n) for n in names if n) or "(no named frame: an OpenMP worker)"
        places[key] = places.get(key, 0) + 1
print("host-access places (call stacks per place) over the four runs:")
for key, stacks in places.items():
    print(f"  {stacks:3d}  {key}")
PY

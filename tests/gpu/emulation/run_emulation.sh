#!/usr/bin/env bash
# Runs the CUDA backend's kernels on the CPU under the emulation shim and compares them with the CPU
# twin (see README.md). No GPU, no nvcc, no Bazel: g++ and oneDNN, a few minutes on 2 cores.
#   tests/gpu/emulation/run_emulation.sh [workdir]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
EMU=$ROOT/tests/gpu/emulation
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK/src"
source "$EMU/emu_common.sh"
translate_kernels "$WORK/src"

CPU_CXX="g++ -std=c++17 -O3 -mavx2 -mfma -fopenmp -I$ROOT"   # the CPU backend's own flags
objs=()
for k in $KERNELS; do
  $EMU_CXX -c "$WORK/src/$k.cc" -o "$WORK/src/$k.o" &
  objs+=("$WORK/src/$k.o")
done
for f in attention cpu_backend data_movement elementwise gemm loss norm optimizer rope router; do
  $CPU_CXX -c "$ROOT/kernels/cpu/$f.cc" -o "$WORK/cpu_$f.o" &
  objs+=("$WORK/cpu_$f.o")
done
$EMU_CXX -c "$ROOT/kernels/cuda/unified_memory.cc" -o "$WORK/unified_memory.o" &
objs+=("$WORK/unified_memory.o")
$EMU_CXX -c "$EMU/emu_check.cc" -o "$WORK/emu_check.o" &
$EMU_CXX -c "$EMU/emu_check_elementwise.cc" -o "$WORK/emu_check_elementwise.o" &
wait
g++ -fopenmp -pthread "$WORK/emu_check.o" "$WORK/emu_check_elementwise.o" "${objs[@]}" -ldnnl -o "$WORK/emu_check"
echo "== $WORK/emu_check"
"$WORK/emu_check"

#!/usr/bin/env bash
# The WHOLE model's training step through the CUDA backend under the CPU emulation of README.md:
# tools/bench_step --check_against_cpu, built so that --device=CUDA is kernels/cuda/cuda_backend.cc +
# every kernels/cuda/*.cu + kernels/cuda/unified_memory.cc + kernels/cuda_factory_on.cc running on the
# shim in include/ (each CUDA thread a fiber, include/emu.h; cuBLASLt emulated by include/cublasLt.h),
# compared with the CPU backend from the same weights and batch: loss, gradient norm and the loss
# after one AdamW step, in FP32 and in BF16. No GPU, no nvcc. run_emulation.sh checks each kernel
# alone and tightly; this checks how the model, the optimizer and the dispatcher drive them: op
# order, scratch and workspace sizing, unified memory and its cache, synchronisation before host
# access, the backend class's own code (Gemm, plans, results, op timers), all through one step.
#
# How it builds (reproducible from a clean checkout, 2 cores: ~1 min after Bazel's own build):
#   1. `bazel build //tools:bench_step` (the ordinary CPU-only build) compiles everything that does not
#      touch CUDA: model/, parallel/ (token dispatcher, distributed optimizer), configs/ (loader and
#      generated protobuf), kernels/cpu, kernels/backend_factory.cc, tools/bench_step.cc.
#   2. Its link command line (bazel-bin/tools/bench_step-2.params, the objects Bazel links, in
#      order, plus the system libraries) is reused with ONE object removed: cuda_factory_off.pic.o,
#      the stub that says "built without CUDA".
#   3. g++ compiles against the shim (as run_emulation.sh does, same flags): every kernels/cuda/*.cu
#      (launches rewritten to EmuLaunch), kernels/cuda/cuda_backend.cc, cuda_gemm.cc, cuda_attention.cc, unified_memory.cc,
#      kernels/cuda_factory_on.cc (the real factory: CudaBackend + unified memory as the Buffer space)
#      and model_emu_init.cc (the shim's modes from the environment, totals at exit, and a wrapper of
#      CudaUnifiedMemorySpace() that NaN-poisons every Buffer it hands out, linked with --wrap).
#   4. One g++ link of the two.
#   5. tests/gpu/kernel_check's sources, compiled the same way and linked with the same objects less
#      bench_step's main: the device check's own program runs its op groups that need neither cuDNN nor
#      gigabytes (KERNEL_CHECK_GROUPS) against the CPU backend. Then the model runs below.
#
#   tests/gpu/emulation/run_model_emulation.sh [workdir]
# Environment:
#   PRECISIONS  default "FP32 BF16"
#   KERNEL_CHECK_GROUPS  kernel_check --only groups (default: elementwise, rows, rmsnorm, rope,
#               cross_entropy, router, gemm, grouped_gemm; "" skips it); SEED its seed (default 1)
#   MODES       ';'-separated runs, each a list of EMU_* settings (model_emu_init.cc) and extra flags
#               for bench_step ("-": none). Default: the plain mode (synchronous stream, cuBLASLt
#               offering no algorithm, so every Gemm takes the built-in kernel), then the strict mode
#               (stream work deferred until the host waits, cuBLASLt a checked reference GEMM, blocks
#               and threads last to first, activation recomputation on), then the experts' products
#               as one cuBLAS grouped call (the reference cuBLAS, deferred stream work), then as one padded
#               cuBLASLt batch (reference cuBLASLt, deferred, reversed).
#   SEQ         tokens per sequence of the checked step (default 80: two query tiles of the attention
#               kernels, the second partial, and three key tiles; YaRN beyond its original 64)
#   SETS        --set overrides (default: grad_clip low enough that the step clips)
#   FP32_TOL    FP32 runs must also agree to this relative error in all three numbers (default 1e-5;
#               they agree to ~1e-7, while bench_step's own tolerances, 1e-2 and 5e-2, are sized for
#               BF16 on a real GPU and let e.g. a missing __syncthreads in the attention pass)
#   TARGET      the Bazel binary to emulate (default tools:bench_step); with another one (trainer:train,
#               for survey_host_access.sh) the script only builds WORKDIR/<name>_emu and exits
#   EMU_NCCL=1  also link the real parallel/communicator_nccl.cc and device_groups_nccl_on.cc on the
#               shim's NCCL over MPI (include/nccl.h) instead of the "built without NCCL" stub, so
#               multi-rank runs use NCCL groups (run_multirank_emulation.sh); with TARGET=trainer:train
#               it also links WORKDIR/nccl_check_emu (tests/gpu/nccl_check.cc)
# The tiny model as configs/tiny.textproto has it (every feature on: q compression, YaRN, group-limited
# biased routing, a shared expert, 1 dense + 2 MoE layers), micro-batch of 4 sequences.
# Exit status 0 iff kernel_check passed (no cuBLAS call refused) and every run printed its PASS lines (three scalars, FP32 within FP32_TOL; in FP32 also
# every gradient and every updated weight), no FAIL and no
# EMU warning or error (a cuBLASLt call the real library would reject counts as one).
# Time on 2 cores: ~1.5 min to build (less when Bazel's outputs are current), ~15-25 s per run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
EMU=$ROOT/tests/gpu/emulation
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK/src" "$WORK/obj"
cd "$ROOT"

# ---- 1. Bazel: everything that is not CUDA. ----
# The objects are copied into $WORK at once, so a later Bazel command in this tree (which may delete
# and rebuild them) cannot pull them from under the link; a copy that fails means such a command ran
# in between, and the build is repeated.
TARGET=${TARGET:-tools:bench_step}
PARAMS=bazel-bin/${TARGET/://}-2.params
copied=0
for attempt in 1 2 3; do
  bazel build "//$TARGET" 2>&1 | tail -n 1
  [[ -f $PARAMS ]] || { echo "no $PARAMS: the link command line of //$TARGET" >&2; exit 2; }
  if grep -q 'cuda_factory_on\|kernels/cuda/' "$PARAMS"; then
    echo "$PARAMS is from a --config=cuda build; run 'bazel build //$TARGET' without it" >&2
    exit 2
  fi
  grep -q 'cuda_factory_off' "$PARAMS" || { echo "cuda_factory_off object not in $PARAMS" >&2; exit 2; }
  # Drop `-o <output>` and the no-CUDA stub; keep every other object and library, in order, with
  # the objects pointing at their copies.
  rm -rf "$WORK/bazel"
  awk -v nccl="${EMU_NCCL:-0}" 'skip { skip = 0; next } $0 == "-o" { skip = 1; next } /cuda_factory_off/ { next }
       nccl == "1" && /device_groups_nccl_off/ { next } { print }' \
    "$PARAMS" > "$WORK/link.params.bazel"
  ok=1
  : > "$WORK/link.params"
  while IFS= read -r line; do
    if [[ $line == *.o ]]; then
      mkdir -p "$WORK/bazel/$(dirname "$line")"
      cp "$line" "$WORK/bazel/$line" 2>/dev/null || { ok=0; break; }
      line=$WORK/bazel/$line
    fi
    printf '%s\n' "$line" >> "$WORK/link.params"
  done < "$WORK/link.params.bazel"
  if [[ $ok -eq 1 ]]; then copied=1; break; fi
  echo "an object vanished while copying (another Bazel command in this tree?); building again"
done
[[ $copied -eq 1 ]] || { echo "could not copy Bazel's objects" >&2; exit 2; }

# ---- 2. The CUDA side against the shim. ----
source "$EMU/emu_common.sh"
translate_kernels "$WORK/src"
objs=()
pids=()
compile() {  # source object [extra flags]
  $EMU_CXX "${@:3}" -c "$1" -o "$2" &
  pids+=($!)
  objs+=("$2")
}
for k in $KERNELS; do compile "$WORK/src/$k.cc" "$WORK/obj/$k.o"; done
compile "$ROOT/kernels/cuda/cuda_backend.cc" "$WORK/obj/cuda_backend.o"
compile "$ROOT/kernels/cuda/cuda_gemm.cc" "$WORK/obj/cuda_gemm.o"
compile "$ROOT/kernels/cuda/cuda_attention.cc" "$WORK/obj/cuda_attention.o"
compile "$EMU/cudnn_attention_unavailable.cc" "$WORK/obj/cudnn_attention_unavailable.o"  # no cuDNN here
compile "$ROOT/kernels/cuda/unified_memory.cc" "$WORK/obj/unified_memory.o"
compile "$ROOT/kernels/cuda_factory_on.cc" "$WORK/obj/cuda_factory_on.o"
compile "$EMU/model_emu_init.cc" "$WORK/obj/model_emu_init.o"
if [[ ${EMU_NCCL:-0} == 1 ]]; then
  grep -q 'device_groups_nccl_off' "$PARAMS" || { echo "device_groups_nccl_off object not in $PARAMS" >&2; exit 2; }
  MPI_INCLUDE="-DOMPI_SKIP_MPICXX=1 -I/usr/lib/x86_64-linux-gnu/openmpi/include -I$ROOT/bazel-bin"
  compile "$ROOT/parallel/communicator_nccl.cc" "$WORK/obj/communicator_nccl.o" $MPI_INCLUDE
  compile "$ROOT/parallel/device_groups_nccl_on.cc" "$WORK/obj/device_groups_nccl_on.o" $MPI_INCLUDE
fi
for p in "${pids[@]}"; do wait "$p"; done
# link_emu OUT MAIN_OBJECT [objects...]: OUT from the given objects, Bazel's objects less MAIN_OBJECT (the
# target's own main; "" keeps them all) and the shim's. --wrap: model_emu_init.cc poisons what the
# unified-memory space hands out (EMU_POISON). The libraries' objects are pulled in only where referenced.
link_emu() {
  local out=$1 main=$2
  shift 2
  if [[ -n $main ]]; then
    grep -v "/$main\.pic\.o\$" "$WORK/link.params" > "$out.params"
  else
    cp "$WORK/link.params" "$out.params"
  fi
  g++ -pthread -rdynamic -Wl,--wrap=_ZN3moe7kernels22CudaUnifiedMemorySpaceEv -o "$out" "$@" @"$out.params" \
    "${objs[@]}"
  echo "== $out"
}
BIN=$WORK/${TARGET##*:}_emu
link_emu "$BIN" ""
if [[ ${EMU_NCCL:-0} == 1 ]]; then  # tests/gpu/nccl_check on the same objects, the trainer's main left out
  $EMU_CXX $MPI_INCLUDE -c "$ROOT/tests/gpu/nccl_check.cc" -o "$WORK/obj/nccl_check.o"
  link_emu "$WORK/nccl_check_emu" train_main "$WORK/obj/nccl_check.o"
fi
[[ $TARGET == tools:bench_step ]] || exit 0

# ---- 3. tests/gpu/kernel_check on the same objects (bench_step's main left out): the CUDA backend's ops
# against the CPU backend through the device check's own code, strict modes. It runs the groups that need
# neither cuDNN nor gigabytes (data_movement's 2^25-element copies take minutes here).
KC_OBJS=()
kc_pids=()
for f in kernel_check kernel_check_elementwise kernel_check_gemm_attention kernel_check_perf \
         kernel_check_router_loss kernel_check_rows_norm; do
  $EMU_CXX -c "$ROOT/tests/gpu/$f.cc" -o "$WORK/obj/kc_$f.o" &
  kc_pids+=($!)
  KC_OBJS+=("$WORK/obj/kc_$f.o")
done
for p in "${kc_pids[@]}"; do wait "$p"; done
link_emu "$WORK/kernel_check_emu" bench_step "${KC_OBJS[@]}"
KERNEL_CHECK_GROUPS=${KERNEL_CHECK_GROUPS:-elementwise,rows,rmsnorm,rope,cross_entropy,router,gemm,grouped_gemm}
status=0
failed=()
if [[ -n $KERNEL_CHECK_GROUPS ]]; then
  echo "== kernel_check --only=$KERNEL_CHECK_GROUPS (EMU_ASYNC=1 EMU_CUBLASLT=ref EMU_REVERSE=1)"
  log=$WORK/kernel_check.log
  rc=0
  EMU_ASYNC=1 EMU_CUBLASLT=ref EMU_REVERSE=1 "$WORK/kernel_check_emu" --only="$KERNEL_CHECK_GROUPS" --no_perf \
    --seed="${SEED:-1}" > "$log" 2>&1 || rc=$?
  grep -E '^(FAIL|INFO)|checks, .* failed|^EMU (cuBLASLt|warning|error)' "$log" || true
  # A refused cuBLAS grouped call falls back without failing a check, but it means the call is wrong.
  if [[ $rc -ne 0 ]] || grep -q '^EMU \(cuBLASLt:\|warning\|error\)\|REFUSED' "$log"; then
    status=1
    failed+=("kernel_check")
    tail -n 20 "$log"
  fi
fi

# ---- 4. The model runs. ----
PRECISIONS=${PRECISIONS:-"FP32 BF16"}
MODES=${MODES:-"-;EMU_ASYNC=1 EMU_CUBLASLT=ref EMU_REVERSE=1 --set=activation_recompute=true;EMU_ASYNC=1 EMU_CUBLASLT=ref --set=cuda.grouped_gemm=CUBLAS_GROUPED;EMU_ASYNC=1 EMU_CUBLASLT=ref EMU_REVERSE=1 --set=cuda.grouped_gemm=CUBLASLT_PADDED"}
SEQ=${SEQ:-80}
SETS=${SETS:-"optimizer.grad_clip=0.25"}
FP32_TOL=${FP32_TOL:-1e-5}
set_flags=(--set "batch.seq_len=$SEQ")  # the one timed step after the check: the same size
for s in $SETS; do set_flags+=("--set" "$s"); done
IFS=';' read -r -a mode_list <<< "$MODES"
for mode in "${mode_list[@]}"; do
  env_list=()
  mode_flags=()
  words=()
  [[ $mode != "-" ]] && read -r -a words <<< "$mode"
  for w in "${words[@]}"; do
    if [[ $w == --* ]]; then mode_flags+=("$w"); else env_list+=("$w"); fi
  done
  for prec in $PRECISIONS; do
    log=$WORK/run_${prec}_$(echo "${mode// /_}" | tr -c 'A-Za-z0-9_=\n' '_' | cut -c1-80).log
    echo "== $prec, ${mode/#-/default modes}"
    start=$(date +%s)
    rc=0
    env "${env_list[@]}" "$BIN" --config=configs/tiny.textproto --device=CUDA --check_against_cpu \
      --check_seq="$SEQ" --steps=1 --warmup=0 --micro_batches=1 --set precision="$prec" \
      "${set_flags[@]}" "${mode_flags[@]}" > "$log" 2>&1 || rc=$?
    grep -E '^(PASS|FAIL|INFO|== one)|^EMU|^step ' "$log" || true
    fallbacks=$(grep -c 'no cuBLASLt algorithm' "$log" || true)
    echo "   (rc $rc, $(( $(date +%s) - start )) s, $fallbacks GEMM signatures on the built-in fallback; log $log)"
    passes=$(grep -c '^PASS' "$log" || true)
    loose=""
    if [[ $prec == FP32 ]]; then
      loose=$(awk -v tol="$FP32_TOL" '/^PASS  step_vs_cpu/ && !/rel L2/ {
          for (i = 1; i <= NF; ++i) if ($i == "rel") r = $(i + 1)
          if (!(r + 0 <= tol + 0)) printf " %s (rel %s)", $3, r
        }' "$log")
      [[ -n $loose ]] && echo "   FP32 agreement above FP32_TOL=$FP32_TOL:$loose"
    fi
    # Three scalars in both precisions; FP32 also judges every gradient and every updated weight.
    want_passes=3
    [[ $prec == FP32 ]] && want_passes=5
    # A CUBLAS_GROUPED mode must have run cuBLAS's grouped call, not fallen back to the per-expert path.
    grouped_missing=""
    if [[ $mode == *CUBLAS_GROUPED* ]] &&
        { grep -q 'refused the experts' "$log" || ! grep -q 'cuBLAS: [1-9][0-9]* grouped calls' "$log"; }; then
      grouped_missing=1
      echo "   the cuBLAS grouped call did not run (refused, or never called)"
    fi
    if [[ $mode == *CUBLASLT_PADDED* ]] && ! grep -q '([1-9][0-9]* strided batches)' "$log"; then
      grouped_missing=1
      echo "   no padded cuBLASLt batch ran"
    fi
    if [[ $rc -ne 0 || $passes -ne $want_passes || -n $loose || -n $grouped_missing ]] ||
        grep -q '^FAIL\|^EMU \(cuBLASLt:\|warning\|error\)' "$log"; then
      status=1
      failed+=("$prec, $mode")
      tail -n 20 "$log"
    fi
  done
done
if [[ $status -eq 0 ]]; then
  echo "== every run passed"
else
  printf '== FAILED: %s\n' "${failed[@]}"
fi
exit $status

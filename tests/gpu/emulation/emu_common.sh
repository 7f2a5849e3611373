# Sourced by run_emulation.sh and run_model_emulation.sh (needs ROOT and EMU set): the kernel sources
# and the one way they become C++ on the shim.
KERNELS="attention elementwise grouped_gemm loss norm rope router rows"
EMU_CXX="g++ -std=c++17 -O1 -ffp-contract=off -pthread -w -I$EMU/include -I$ROOT -include $EMU/include/emu.h"

# translate_kernels OUT_DIR: every kernels/cuda/<k>.cu as OUT_DIR/<k>.cc. Dynamic shared memory
# becomes the emulator's buffer and every `kernel<<<grid, block, smem, stream>>>(args)` becomes
# `EmuLaunch(kernel, grid, block, smem, stream, args)`.
translate_kernels() {
  local k
  for k in $KERNELS; do
    perl -0pe '
      s/extern __shared__ float smem\[\];/float* smem = reinterpret_cast<float*>(g_dyn_smem.data());/g;
      s/extern __shared__ unsigned char smem\[\];/unsigned char* smem = g_dyn_smem.data();/g;
      s/([A-Za-z_][A-Za-z0-9_]*(?:<[^<>]*>)?)<<<(.*?)>>>\(/EmuLaunch(\1, \2, /gs;
    ' "$ROOT/kernels/cuda/$k.cu" > "$1/$k.cc"
  done
}

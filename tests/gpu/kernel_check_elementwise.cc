// kernel_check groups "elementwise", "data_movement" and "unified_memory": RoundToBf16, Add, Scale,
// SumSquares, SwiGLU and AdamW; Copy2D, Fill, RowDot and ScaleRows (and the 2^31+1031-element Fill and
// Copy); buffers in CUDA unified memory shared by the GPU and the CPU backend. See kernel_check.h.

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/bf16.h"
#include "base/buffer.h"
#include "kernels/cuda/unified_memory.h"
#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

using kernels::UnifiedMemoryStats;

// ---------------------------------------------------------------- elementwise, reductions, AdamW
void Checks::Elementwise() {
  {  // RoundToBf16, including exact halfway cases (ties to even) and tiny/huge magnitudes.
    const int64_t n = (1 << 20) + 3;
    std::vector<float> x = rng_.Normal(n);
    for (int64_t i = 0; i < n; i += 7) {  // halfway between two BF16 values
      uint32_t u;
      std::memcpy(&u, &x[i], 4);
      u = (u & 0xffff0000u) | 0x8000u;
      std::memcpy(&x[i], &u, 4);
    }
    for (int64_t i = 3; i < n; i += 101) x[i] *= 1e30f;
    for (int64_t i = 5; i < n; i += 103) x[i] *= 1e-35f;
    std::vector<float> ref = x;
    cpu_.RoundToBf16(ref.data(), n);
    Dev<float> d(x);
    gpu_.RoundToBf16(d.get(), n);
    report_.Check("round_to_bf16", d.Download(), ref, 0.0, "(must be bit-exact)");
    // Round and pack in one pass: the same rounded values, and bits that unpack to them.
    Dev<float> fused(x);
    Dev<uint16_t> bits(std::vector<uint16_t>(n, 0));
    gpu_.RoundAndPackBf16(fused.get(), n, bits.get());
    report_.Check("round_and_pack_bf16 values", fused.Download(), ref, 0.0, "(must be bit-exact)");
    Dev<float> unpacked(std::vector<float>(n, 0.0f));
    gpu_.UnpackBf16(bits.get(), n, unpacked.get());
    report_.Check("round_and_pack_bf16 bits", unpacked.Download(), ref, 0.0, "(must be bit-exact)");
  }
  {
    const int64_t n = 1000003;
    std::vector<float> a = rng_.Normal(n), y = rng_.Normal(n);
    std::vector<float> ref = y;
    cpu_.Add(a.data(), ref.data(), n);
    Dev<float> da(a), dy(y);
    gpu_.Add(da.get(), dy.get(), n);
    report_.Check("add", dy.Download(), ref, 0.0, "(must be bit-exact)");
    std::vector<float> ref_rounded = ref;
    cpu_.AddAndRoundToBf16(a.data(), ref_rounded.data(), n);
    gpu_.AddAndRoundToBf16(da.get(), dy.get(), n);
    report_.Check("add_round_bf16", dy.Download(), ref_rounded, 0.0, "(must be bit-exact)");
    std::vector<float> s = a;
    cpu_.Scale(s.data(), n, -0.37f);
    gpu_.Scale(da.get(), n, -0.37f);
    report_.Check("scale", da.Download(), s, 0.0, "(must be bit-exact)");
  }
  {
    const int64_t n = 3000007;
    std::vector<float> x = rng_.Normal(n, 3.0f);
    const double ref = cpu_.SumSquares(x.data(), n);
    Dev<float> d(x);
    const double got = gpu_.SumSquares(d.get(), n);
    const double rel = std::fabs(got - ref) / ref;
    report_.Line(rel <= 1e-12, "sum_squares", Fmt("rel=%.2e (tol 1e-12) got=%.17g ref=%.17g",
                                                   rel, got, ref));
    const double zero = gpu_.SumSquares(d.get(), 0);
    report_.Line(zero == 0.0, "sum_squares_empty", Fmt("got=%g", zero));
    // SumSquaresEach: each piece exactly what SumSquares gives it (pieces of several partial
    // counts, an empty one, the last one the largest so the shared partials area is reused).
    const int64_t offsets[] = {0, 5, 5, 4096, 300007, 0};
    const int64_t sizes[] = {5, 0, 4091, 295911, 700000, n};
    std::vector<Backend::Piece> pieces;
    for (int i = 0; i < 6; ++i) pieces.push_back({d.get() + offsets[i], sizes[i]});
    std::vector<double> each(pieces.size(), -1.0);
    gpu_.SumSquaresEach(pieces, each.data());
    int64_t differ = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      differ += each[i] != gpu_.SumSquares(pieces[i].data, pieces[i].n);
    }
    report_.Line(differ == 0, "sum_squares_each",
                 Fmt("%lld of %zu pieces differ from SumSquares (must be bit-exact)",
                     static_cast<long long>(differ), pieces.size()));
  }
  {
    const int64_t n = 1000001;
    std::vector<float> a = rng_.Normal(n, 3.0f), c = rng_.Normal(n), dm = rng_.Normal(n);
    std::vector<float> m(n), da(n), dc(n);
    cpu_.SwigluForward(a.data(), c.data(), m.data(), n);
    cpu_.SwigluBackward(a.data(), c.data(), dm.data(), da.data(), dc.data(), n);
    Dev<float> ga(a), gc(c), gdm(dm), gm(n), gda(n), gdc(n);
    gm.Poison();
    gda.Poison();
    gdc.Poison();
    gpu_.SwigluForward(ga.get(), gc.get(), gm.get(), n);
    gpu_.SwigluBackward(ga.get(), gc.get(), gdm.get(), gda.get(), gdc.get(), n);
    report_.Check("swiglu_forward", gm.Download(), m, 1e-6);
    report_.Check("swiglu_backward_da", gda.Download(), da, 1e-6);
    report_.Check("swiglu_backward_dc", gdc.Download(), dc, 1e-6);
    {  // outputs written as BF16 bits: the kernel's own FP32 results rounded to nearest even
      std::vector<float> rm = gm.Download(), rda = gda.Download(), rdc = gdc.Download();
      RoundToBits(&rm);
      RoundToBits(&rda);
      RoundToBits(&rdc);
      Dev<uint16_t> m16(n), da16(n), dc16(n);
      gpu_.SwigluForward(ga.get(), gc.get(), kernels::ValuesOut::Bits(m16.get()), n);
      gpu_.SwigluBackward(ga.get(), gc.get(), gdm.get(), kernels::ValuesOut::Bits(da16.get()),
                          kernels::ValuesOut::Bits(dc16.get()), n);
      Dev<float> um(n), uda(n), udc(n);
      gpu_.UnpackBf16(m16.get(), n, um.get());
      gpu_.UnpackBf16(da16.get(), n, uda.get());
      gpu_.UnpackBf16(dc16.get(), n, udc.get());
      report_.Check("swiglu_forward_out_bits", um.Download(), rm, 0.0, "(must be bit-exact)");
      report_.Check("swiglu_backward_da_out_bits", uda.Download(), rda, 0.0, "(must be bit-exact)");
      report_.Check("swiglu_backward_dc_out_bits", udc.Download(), rdc, 0.0, "(must be bit-exact)");
    }
    // a and c kept as BF16 bits (saved activations), against the CPU on the same values.
    std::vector<float> ab = a, cb = c;
    Dev<uint16_t> ga16(RoundToBits(&ab)), gc16(RoundToBits(&cb));
    cpu_.SwigluBackward(ab.data(), cb.data(), dm.data(), da.data(), dc.data(), n);
    gda.Poison();
    gdc.Poison();
    gpu_.SwigluBackward(kernels::ValuesIn::Bits(ga16.get()), kernels::ValuesIn::Bits(gc16.get()), gdm.get(),
                        gda.get(), gdc.get(), n);
    report_.Check("swiglu_backward_da_bits", gda.Download(), da, 1e-6);
    report_.Check("swiglu_backward_dc_bits", gdc.Download(), dc, 1e-6);
  }
  {
    const int64_t n = 1000003;
    std::vector<float> p = rng_.Normal(n), g = rng_.Normal(n, 1e-2f), m = rng_.Normal(n, 1e-3f);
    std::vector<float> v = rng_.Uniform(n, 0.0f, 1e-4f);
    kernels::AdamWParams hp;
    hp.lr = 3e-4f;
    hp.beta1 = 0.9f;
    hp.beta2 = 0.95f;
    hp.eps = 1e-8f;
    hp.weight_decay = 0.1f;
    hp.step = 7;
    hp.grad_scale = 0.37f;  // clipping folded in
    const std::vector<float> p0 = p, m0 = m, v0 = v;  // the starting state, for the bits-only run
    Dev<float> gp(p), gg(g), gm(m), gv(v), gw(n);
    Dev<uint16_t> gbits(n);
    std::vector<float> w(n);
    std::vector<uint16_t> bits(n);
    // The working copy in the same pass, BF16-rounded with its bits (a one-rank BF16 optimizer step).
    kernels::AdamWWorking cw{w.data(), bits.data(), true}, dw{gw.get(), gbits.get(), true};
    cpu_.AdamW(hp, p.data(), g.data(), m.data(), v.data(), n, cw);
    gpu_.AdamW(hp, gp.get(), gg.get(), gm.get(), gv.get(), n, dw);
    report_.Check("adamw_param", gp.Download(), p, 1e-6);
    report_.Check("adamw_m", gm.Download(), m, 1e-6);
    report_.Check("adamw_v", gv.Download(), v, 1e-6);
    report_.Check("adamw_working_bf16", gw.Download(), w, 1e-5);
    std::vector<float> unpacked(n), gunpacked(n);
    const std::vector<uint16_t> gb = gbits.Download();
    for (int64_t i = 0; i < n; ++i) {
      unpacked[i] = moe::Bf16BitsToFloat(bits[i]);
      gunpacked[i] = moe::Bf16BitsToFloat(gb[i]);
    }
    report_.Check("adamw_working_bits", gunpacked, unpacked, 1e-5);
    {
      // AdamWEach: every piece in one launch, the same bits as AdamW per piece (each its own decay;
      // one piece bits only, one with no working output as the ZeRO optimizer's owned runs; empty
      // pieces first, in the middle and last).
      const int64_t offsets[] = {0, 0, 5, 5, 20000, 20001, n - 1};
      const int64_t sizes[] = {0, 5, 0, 19995, 1, n - 20002, 0};
      Dev<float> ep(p0), em(m0), ev(v0), ew(n), op(p0), om(m0), ov(v0), ow(n);
      Dev<uint16_t> ebits(n), obits(n);
      ew.Poison();
      ow.Poison();
      std::vector<Backend::AdamWPiece> pieces;
      for (int i = 0; i < 7; ++i) {
        const int64_t o = offsets[i];
        const float decay = i % 2 ? 0.1f : 0.0f;
        const bool words = i != 3, none = i == 5;
        auto working = [&](Dev<float>& w, Dev<uint16_t>& bits) {
          return none ? kernels::AdamWWorking{} : kernels::AdamWWorking{words ? w.get() + o : nullptr, bits.get() + o, true};
        };
        pieces.push_back({ep.get() + o, gg.get() + o, em.get() + o, ev.get() + o, sizes[i], decay, working(ew, ebits)});
        kernels::AdamWParams one = hp;
        one.weight_decay = decay;
        gpu_.AdamW(one, op.get() + o, gg.get() + o, om.get() + o, ov.get() + o, sizes[i], working(ow, obits));
      }
      gpu_.AdamWEach(hp, pieces);
      std::vector<float> each = ep.Download(), apart = op.Download();
      for (Dev<float>* d : {&em, &ev, &ew}) {
        const std::vector<float> x = d->Download();
        each.insert(each.end(), x.begin(), x.end());
      }
      for (Dev<float>* d : {&om, &ov, &ow}) {
        const std::vector<float> x = d->Download();
        apart.insert(apart.end(), x.begin(), x.end());
      }
      const bool bits_same = ebits.Download() == obits.Download();
      report_.CheckBits("adamw_each", each, apart);
      report_.Line(bits_same, "adamw_each_bits", bits_same ? "the same BF16 bits" : "BF16 bits differ");
    }
    // Bits only (BF16 mode's matrices keep no FP32 working words), from the same starting state.
    Dev<float> gp2(p0), gm2(m0), gv2(v0);
    Dev<uint16_t> gbits2(n);
    gpu_.AdamW(hp, gp2.get(), gg.get(), gm2.get(), gv2.get(), n, kernels::AdamWWorking{nullptr, gbits2.get(), true});
    const std::vector<uint16_t> gb2 = gbits2.Download();
    for (int64_t i = 0; i < n; ++i) gunpacked[i] = moe::Bf16BitsToFloat(gb2[i]);
    report_.Check("adamw_bits_only", gunpacked, unpacked, 1e-5);
    report_.Check("adamw_bits_only_param", gp2.Download(), p, 1e-6);
  }
}

// ---------------------------------------------------------------- Copy2D, Fill, RowDot, ScaleRows
void Checks::DataMovement() {
  struct CopyCase {
    const char* name;
    int64_t rows, cols, src_ld, dst_ld;
  };
  // Padded leading dims not a multiple of 4 (scalar path), a head slice with 16-byte accesses,
  // contiguous rows (one run), and one long row whose length is not a multiple of 4 (tail).
  const int64_t long_n = (int64_t{1} << 25) + 3;
  for (const CopyCase& c : {CopyCase{"padded", 1000, 300, 317, 301},
                            CopyCase{"head_slice_vec4", 4099, 32, 96, 64},
                            CopyCase{"contiguous_rows", 999, 1024, 1024, 1024},
                            CopyCase{"long_row", 1, long_n, long_n, long_n}}) {
    const int64_t src_ld = c.src_ld, dst_ld = c.dst_ld;
    const std::vector<float> src = rng_.Normal(c.rows * src_ld);
    Dev<float> gsrc(src);
    for (bool accumulate : {false, true}) {
      // Written: dst poisoned, padding must keep its poison. Accumulated: onto random values.
      std::vector<float> ref = accumulate ? rng_.Normal(c.rows * dst_ld)
                                          : Poisoned<float>(c.rows * dst_ld);
      Dev<float> gdst(ref);
      cpu_.Copy2D(src.data(), src_ld, ref.data(), dst_ld, c.rows, c.cols, accumulate);
      gpu_.Copy2D(gsrc.get(), src_ld, gdst.get(), dst_ld, c.rows, c.cols, accumulate);
      report_.CheckBits(Fmt("copy2d_%s%s", c.name, accumulate ? "_accumulate" : ""),
                        gdst.Download(), ref);
    }
  }
  {
    const int64_t n = 1000003;
    std::vector<float> ref = Poisoned<float>(n + 1);  // the element past the end keeps its poison
    cpu_.Fill(ref.data(), n, -2.5f);
    Dev<float> d(n + 1);
    d.Poison();
    gpu_.Fill(d.get(), n, -2.5f);
    report_.CheckBits("fill", d.Download(), ref);
  }
  struct RowCase {
    int64_t rows, dim;
  };
  // RowDot: a warp per row (dim <= 2048) in the first and last, a block per row in the middle.
  for (const RowCase& c : {RowCase{4096, 1024}, RowCase{3, 1000003}, RowCase{5000, 1}}) {
    const std::vector<float> a = rng_.Normal(c.rows * c.dim), b = rng_.Normal(c.rows * c.dim);
    std::vector<float> out(c.rows);
    cpu_.RowDot(a.data(), b.data(), c.rows, c.dim, out.data());
    Dev<float> ga(a), gb(b), gout(c.rows);
    gout.Poison();
    gpu_.RowDot(ga.get(), gb.get(), c.rows, c.dim, gout.get());
    report_.Check(Fmt("row_dot_%lldx%lld", static_cast<long long>(c.rows),
                      static_cast<long long>(c.dim)),
                  gout.Download(), out, 1e-7, "(FP64 sums: expect ~0 bits differ)");
    std::vector<float> bb = b;  // b kept as BF16 bits
    Dev<uint16_t> gb16(RoundToBits(&bb));
    cpu_.RowDot(a.data(), bb.data(), c.rows, c.dim, out.data());
    gout.Poison();
    gpu_.RowDot(ga.get(), kernels::ValuesIn::Bits(gb16.get()), c.rows, c.dim, gout.get());
    report_.Check(Fmt("row_dot_bits_%lldx%lld", static_cast<long long>(c.rows), static_cast<long long>(c.dim)),
                  gout.Download(), out, 1e-7, "(FP64 sums: expect ~0 bits differ)");

    std::vector<float> x = rng_.Normal(c.rows * c.dim);
    const std::vector<float> scale = rng_.Uniform(c.rows, -2.0f, 2.0f);
    Dev<float> gx(x), gs(scale);
    cpu_.ScaleRows(x.data(), scale.data(), c.rows, c.dim);
    gpu_.ScaleRows(gx.get(), gs.get(), c.rows, c.dim);
    report_.CheckBits(Fmt("scale_rows_%lldx%lld", static_cast<long long>(c.rows),
                          static_cast<long long>(c.dim)),
                      gx.Download(), x);
  }
  LongCopy();
}

// Fill and Copy over 2^31 + 1031 elements (16 GiB of device memory): indices past 2^31 must not
// wrap. Both arrays start poisoned; the source is filled, then given random windows across index
// 2^31 and at the end (apart: with 2^31 + 7 elements they overlapped, so the check failed), and
// copied one element off 16-byte alignment, so the scalar kernel runs with element indices past
// 2^31. Checked: the windows bit for bit, the FP64 sum of squares of the source against its value
// (Fill reached every element) and of the destination against the source's (an element left
// unwritten makes it NaN, one misplaced changes it).
void Checks::LongCopy() {
  const int64_t n = (int64_t{1} << 31) + 1031, window = 300;
  size_t free_bytes = 0, total_bytes = 0;
  MOE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < 2 * sizeof(float) * static_cast<size_t>(n) + (size_t{1} << 30)) {
    std::printf("SKIP  fill_copy_2g_elements              (needs 17 GiB free, %.1f GiB free)\n",
                static_cast<double>(free_bytes) / (1 << 30));
    return;
  }
  Dev<float> src(n), dst(n);
  src.Poison();
  dst.Poison();
  gpu_.Fill(src.get(), n, 0.75f);
  gpu_.Synchronize();
  const int64_t windows[] = {(int64_t{1} << 31) - window / 2, n - window};
  // The windows go in and come out through the backend's Copy from and to small buffers: on the
  // H200 machine (driver 580, CUDA 13) a host cudaMemcpy into this allocation 8 GiB past its start
  // failed with "invalid argument", which is not what this check is about.
  const std::vector<float> pattern = rng_.Normal(window);
  Dev<float> pattern_dev(pattern), window_dev(window);
  double expected = static_cast<double>(n - 2 * window) * 0.75 * 0.75;
  for (int64_t w : windows) {
    gpu_.Copy(pattern_dev.get(), src.get() + w, window);
    for (float v : pattern) expected += static_cast<double>(v) * v;
  }
  gpu_.Copy(src.get(), dst.get(), 1);
  gpu_.Copy(src.get() + 1, dst.get() + 1, n - 1);
  const double want = gpu_.SumSquares(src.get(), n), got = gpu_.SumSquares(dst.get(), n);
  bool windows_ok = true;
  for (int64_t w : windows) {
    gpu_.Copy(dst.get() + w, window_dev.get(), window);
    const std::vector<float> back = window_dev.Download();
    windows_ok &= std::memcmp(back.data(), pattern.data(), sizeof(float) * window) == 0;
  }
  const bool fill_ok = std::fabs(want - expected) <= 1e-9 * expected;
  report_.Line(windows_ok && fill_ok && got == want, "fill_copy_2g_elements",
               Fmt("sum_squares dst=%.17g src=%.17g expected=%.17g, windows %s", got, want,
                   expected, windows_ok ? "equal" : "DIFFER"));
}

// Buffers in CUDA unified memory (what the factory switches to): written on the host, changed by
// GPU ops, read back on the host after Synchronize, then used by the CPU backend in place; the
// cache hands a freed block out again.
void Checks::UnifiedMemory() {
  const int64_t rows = 777, dim = 1000, n = rows * dim;
  const UnifiedMemoryStats before = kernels::CudaUnifiedMemoryStats();
  moe::SetMemorySpace(kernels::CudaUnifiedMemorySpace());
  moe::Buffer<float> x(n), s(rows), out(rows);
  moe::SetMemorySpace(moe::HostMemorySpace());  // the other checks keep their cudaMalloc'd arrays
  std::vector<float> ref_x = rng_.Normal(n);
  const std::vector<float> scale = rng_.Uniform(rows, -2.0f, 2.0f);
  x.AssignFromHost(ref_x.data(), n);
  s.AssignFromHost(scale.data(), rows);
  std::memset(out.data(), 0xff, sizeof(float) * rows);
  std::vector<float> ref_out(rows);
  cpu_.ScaleRows(ref_x.data(), scale.data(), rows, dim);
  cpu_.RowDot(ref_x.data(), ref_x.data(), rows, dim, ref_out.data());
  gpu_.ScaleRows(x.data(), s.data(), rows, dim);
  gpu_.RowDot(x.data(), x.data(), rows, dim, out.data());
  gpu_.Synchronize();
  report_.CheckBits("unified_scale_rows", std::vector<float>(x.begin(), x.end()), ref_x);
  report_.Check("unified_row_dot", std::vector<float>(out.begin(), out.end()), ref_out, 1e-7);
  // The CPU backend on the same memory, after the GPU's writes.
  cpu_.Scale(x.data(), n, 0.5f);
  cpu_.Scale(ref_x.data(), n, 0.5f);
  report_.CheckBits("unified_cpu_after_gpu", std::vector<float>(x.begin(), x.end()), ref_x);

  float* block = x.data();
  x.reset();
  moe::SetMemorySpace(kernels::CudaUnifiedMemorySpace());
  moe::Buffer<float> again(n);
  moe::SetMemorySpace(moe::HostMemorySpace());
  const UnifiedMemoryStats st = kernels::CudaUnifiedMemoryStats();
  report_.Line(again.data() == block, "unified_cache_reuse",
               Fmt("freed block handed out again: %s; in use %.1f MiB, cached %.1f MiB, "
                   "reserved %.1f MiB, peak %.1f MiB, %lld CUDA allocations (%lld before)",
                   again.data() == block ? "yes" : "NO",
                   static_cast<double>(st.bytes_in_use) / (1 << 20),
                   static_cast<double>(st.bytes_cached) / (1 << 20),
                   static_cast<double>(st.bytes_reserved) / (1 << 20),
                   static_cast<double>(st.peak_bytes_in_use) / (1 << 20),
                   static_cast<long long>(st.cuda_allocations),
                   static_cast<long long>(before.cuda_allocations)));
}

}  // namespace moe::gpucheck

// emu_check's element-wise group (see emu_check.cc): the kernels of kernels/cuda/elementwise.cu under
// the emulation, against the CPU twin, most of them bit for bit.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/bf16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/kernels.h"
#include "tests/gpu/emulation/emu_check.h"

using namespace moe::kernels;
namespace kc = moe::kernels::cuda;

namespace emu_check {

void Elementwise(CpuBackend& cpu) {
  cudaStream_t st = nullptr;
  const int64_t n = 5003;
  auto a = Normal(n, 3), c = Normal(n), dm = Normal(n);
  std::vector<float> m(n), da(n), dc(n);
  cpu.SwigluForward(a.data(), c.data(), m.data(), n);
  cpu.SwigluBackward(a.data(), c.data(), dm.data(), da.data(), dc.data(), n);
  auto gm = Nan(n), gda = Nan(n), gdc = Nan(n);
  kc::LaunchSwigluForward(a.data(), c.data(), gm.data(), n, st);
  kc::LaunchSwigluBackward(a.data(), c.data(), dm.data(), gda.data(), gdc.data(), n, st);
  Check("swiglu_fwd", gm, m, 1e-6); Check("swiglu_da", gda, da, 1e-6); Check("swiglu_dc", gdc, dc, 1e-6);
  {  // a and c as BF16 bits (saved activations), against the CPU on the same values as FP32 words
    auto ab = a, cb = c;
    const std::vector<uint16_t> a16 = ToBits(&ab), c16 = ToBits(&cb);
    cpu.SwigluBackward(ab.data(), cb.data(), dm.data(), da.data(), dc.data(), n);
    auto gda_b = Nan(n), gdc_b = Nan(n);
    kc::LaunchSwigluBackward(moe::kernels::ValuesIn::Bits(a16.data()), moe::kernels::ValuesIn::Bits(c16.data()),
                             dm.data(), gda_b.data(), gdc_b.data(), n, st);
    Check("swiglu_da_bits", gda_b, da, 1e-6);
    Check("swiglu_dc_bits", gdc_b, dc, 1e-6);
  }
  {  // outputs written as BF16 bits: the kernel's own FP32 results rounded to nearest even, bit for bit
    std::vector<uint16_t> m16(n, 0xABCD), da16(n, 0xABCD), dc16(n, 0xABCD);
    kc::LaunchSwigluForward(a.data(), c.data(), moe::kernels::ValuesOut::Bits(m16.data()), n, st);
    kc::LaunchSwigluBackward(a.data(), c.data(), dm.data(), moe::kernels::ValuesOut::Bits(da16.data()),
                             moe::kernels::ValuesOut::Bits(dc16.data()), n, st);
    auto rm = gm, rda = gda, rdc = gdc;
    ToBits(&rm); ToBits(&rda); ToBits(&rdc);
    std::vector<float> um(n), uda(n), udc(n);
    cpu.UnpackBf16(m16.data(), n, um.data()); cpu.UnpackBf16(da16.data(), n, uda.data()); cpu.UnpackBf16(dc16.data(), n, udc.data());
    Check("swiglu_fwd_out_bits", um, rm, 0); Check("swiglu_da_out_bits", uda, rda, 0); Check("swiglu_dc_out_bits", udc, rdc, 0);
  }
  std::vector<double> part(kc::SumSquaresPartials(70000)); double out = 0;
  auto big = Normal(70000);
  kc::LaunchSumSquares(big.data(), 70000, part.data(), &out, st);
  const double ref = cpu.SumSquares(big.data(), 70000);
  std::printf("%s sumsq got=%.17g ref=%.17g\n", std::fabs(out - ref) <= 1e-12 * ref ? "PASS" : "FAIL", out, ref);
  {  // every piece in two launches: the same bits as one LaunchSumSquares per piece (empty pieces
     // first, in the middle and last; pieces of one and of several chunks)
    const int64_t offsets[] = {0, 0, 3, 3, 20000, 20000, 69999};
    const int64_t sizes[] = {0, 3, 0, 19997, 50000, 0, 1};
    std::vector<kc::SumSquaresPiece> table;
    int64_t total = 0;
    for (int i = 0; i < 7; ++i) {
      table.push_back({big.data() + offsets[i], sizes[i], total});
      total += kc::SumSquaresPartials(sizes[i]);
    }
    std::vector<double> parts(total), each(7, -1.0);
    kc::LaunchSumSquaresEach(table.data(), 7, total, parts.data(), each.data(), st);
    int differ = 0;
    for (int i = 0; i < 7; ++i) {
      double one = -1.0;
      std::vector<double> p1(std::max<int64_t>(kc::SumSquaresPartials(sizes[i]), 1));
      kc::LaunchSumSquares(big.data() + offsets[i], sizes[i], p1.data(), &one, st);
      differ += std::memcmp(&one, &each[i], sizeof(double)) != 0;
    }
    std::printf("%s sumsq_each %d of 7 pieces differ from one launch per piece (bit-exact)\n",
                differ == 0 ? "PASS" : "FAIL", differ);
    if (differ != 0) ++failures;
  }
  auto r = a, gr = a;
  cpu.RoundToBf16(r.data(), n); kc::LaunchRoundToBf16(gr.data(), n, st);
  Check("round", gr, r, 0);
  {  // residual add stored as BF16: y = round(y + a), bit for bit
    auto y = Normal(n), gy = y;
    cpu.AddAndRoundToBf16(a.data(), y.data(), n); kc::LaunchAddAndRoundToBf16(a.data(), gy.data(), n, st);
    Check("add_round_bf16", gy, y, 0);
  }
  {  // pack (nearest even, as RoundToBf16) and unpack, bit for bit, NaN and infinities included
    auto x = a;
    x[0] = std::numeric_limits<float>::quiet_NaN(); x[1] = -std::numeric_limits<float>::infinity();
    std::vector<uint16_t> bits(n), gbits(n, 0xABCD);
    cpu.PackBf16(x.data(), n, bits.data()); kc::LaunchPackBf16(x.data(), 1, n, n, gbits.data(), n, st);
    std::vector<float> back(n), gback(n);
    cpu.UnpackBf16(bits.data(), n, back.data()); kc::LaunchUnpackBf16(bits.data(), 1, n, n, gback.data(), n, st);
    bool same = std::memcmp(bits.data(), gbits.data(), n * sizeof(uint16_t)) == 0 &&
                std::memcmp(back.data(), gback.data(), n * sizeof(float)) == 0;
    std::printf("%s pack_bf16/unpack_bf16 bit for bit\n", same ? "PASS" : "FAIL");
    if (!same) ++failures;
    auto rx = x, grx = x;  // round and pack in one pass, bit for bit (values and bits)
    std::vector<uint16_t> rbits(n), grbits(n, 0xABCD);
    cpu.RoundAndPackBf16(rx.data(), n, rbits.data()); kc::LaunchRoundAndPackBf16(grx.data(), n, grbits.data(), st);
    same = std::memcmp(rbits.data(), grbits.data(), n * sizeof(uint16_t)) == 0 &&
           std::memcmp(rx.data(), grx.data(), n * sizeof(float)) == 0;
    std::printf("%s round_and_pack_bf16 bit for bit\n", same ? "PASS" : "FAIL");
    if (!same) ++failures;
  }
  AdamWParams hp; hp.lr = 1e-3f; hp.weight_decay = 0.1f; hp.step = 3; hp.grad_scale = 0.37f;
  auto p = Normal(n), g = Normal(n), mm = Normal(n, 0.1f), vv = Normal(n, 0.1f);
  for (auto& x : vv) x = std::fabs(x);
  auto gp = p, gmm = mm, gvv = vv;
  std::vector<float> w(n), gw(n);
  std::vector<uint16_t> wbits(n), gwbits(n);
  cpu.AdamW(hp, p.data(), g.data(), mm.data(), vv.data(), n, AdamWWorking{w.data(), wbits.data(), true});
  kc::AdamWArgs args{hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                     float(1.0 - std::pow(double(hp.beta1), 3.0)), float(1.0 - std::pow(double(hp.beta2), 3.0)),
                     hp.grad_scale};
  kc::LaunchAdamW(args, gp.data(), g.data(), gmm.data(), gvv.data(), n, AdamWWorking{gw.data(), gwbits.data(), true}, st);
  Check("adamw_p", gp, p, 1e-7); Check("adamw_m", gmm, mm, 1e-7); Check("adamw_v", gvv, vv, 1e-7);
  Check("adamw_working_bf16", gw, w, 1e-6);
  long bits_diff = 0;  // where the two masters agree bit for bit, so must the working bits
  for (int64_t i = 0; i < n; ++i) {
    bits_diff += std::memcmp(&gp[i], &p[i], sizeof(float)) == 0 && wbits[i] != gwbits[i];
  }
  const bool same_bits = bits_diff == 0;
  std::printf("%s adamw_working_bits (bit for bit where the masters are) diff=%ld\n", same_bits ? "PASS" : "FAIL",
              bits_diff);
  if (!same_bits) ++failures;
  {  // bits only (BF16 mode's matrices): the same master, moments and bits as with the FP32 words too
    auto gp2 = gp, gmm2 = gmm, gvv2 = gvv, gp3 = gp, gmm3 = gmm, gvv3 = gvv;
    std::vector<float> w3(n);
    std::vector<uint16_t> bits2(n, 0xABCD), bits3(n);
    kc::LaunchAdamW(args, gp2.data(), g.data(), gmm2.data(), gvv2.data(), n, AdamWWorking{nullptr, bits2.data(), true}, st);
    kc::LaunchAdamW(args, gp3.data(), g.data(), gmm3.data(), gvv3.data(), n, AdamWWorking{w3.data(), bits3.data(), true}, st);
    const bool same = std::memcmp(gp2.data(), gp3.data(), 4 * n) == 0 && std::memcmp(gmm2.data(), gmm3.data(), 4 * n) == 0 &&
                      std::memcmp(gvv2.data(), gvv3.data(), 4 * n) == 0 && bits2 == bits3;
    std::printf("%s adamw_bits_only (as with the FP32 words too, bit for bit)\n", same ? "PASS" : "FAIL");
    if (!same) ++failures;
  }
  {  // every piece in one launch: the same bits as LaunchAdamW per piece (its own decay and outputs;
     // empty pieces first, in the middle and last; pieces of one and of several chunks)
    const int64_t m = 20011;
    const int64_t offsets[] = {0, 0, 5, 5, 20000, 20001, m - 1};
    const int64_t sizes[] = {0, 5, 0, 19995, 1, m - 20002, 0};
    const auto g2 = Normal(m), p2 = Normal(m), m2 = Normal(m, 0.1f);
    auto v2 = Normal(m, 0.1f);
    for (auto& x : v2) x = std::fabs(x);
    auto ep = p2, emm = m2, evv = v2, op = p2, omm = m2, ovv = v2;
    std::vector<float> ew(m, -1.0f), ow(m, -1.0f);
    std::vector<uint16_t> ebits(m, 0xABCD), obits(m, 0xABCD);
    std::vector<kc::AdamWPieceArgs> table;
    int64_t chunks = 0;
    for (int i = 0; i < 7; ++i) {
      const int64_t o = offsets[i];
      const float decay = i % 2 ? 0.1f : 0.0f;
      const bool words = i != 3;  // piece 3: bits only, as a BF16 matrix
      table.push_back({ep.data() + o, g2.data() + o, emm.data() + o, evv.data() + o, words ? ew.data() + o : nullptr,
                       ebits.data() + o, sizes[i], decay, true, chunks});
      chunks += kc::AdamWChunks(sizes[i]);
      kc::AdamWArgs one = args;
      one.weight_decay = decay;
      kc::LaunchAdamW(one, op.data() + o, g2.data() + o, omm.data() + o, ovv.data() + o, sizes[i],
                      AdamWWorking{words ? ow.data() + o : nullptr, obits.data() + o, true}, st);
    }
    kc::LaunchAdamWEach(args, table.data(), 7, chunks, st);
    const bool same = std::memcmp(ep.data(), op.data(), 4 * m) == 0 && std::memcmp(emm.data(), omm.data(), 4 * m) == 0 &&
                      std::memcmp(evv.data(), ovv.data(), 4 * m) == 0 && std::memcmp(ew.data(), ow.data(), 4 * m) == 0 &&
                      ebits == obits;
    std::printf("%s adamw_each (one launch of %ld chunks, as LaunchAdamW per piece, bit for bit)\n",
                same ? "PASS" : "FAIL", static_cast<long>(chunks));
    if (!same) ++failures;
  }
  // ScaleMatrix and PackBf16
  auto cmat = Normal(7 * 10), cref = cmat;
  kc::LaunchScaleMatrix(cmat.data(), 7, 9, 10, 0.5f, st);
  for (int i = 0; i < 7; ++i) for (int j = 0; j < 9; ++j) cref[i * 10 + j] *= 0.5f;
  Check("scale_matrix", cmat, cref, 0);
}

}  // namespace emu_check

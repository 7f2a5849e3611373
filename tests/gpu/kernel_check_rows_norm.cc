// kernel_check groups "rows", "rmsnorm" and "rope": embedding forward/backward, GatherRows and
// ScatterAddRows; RMSNorm forward and backward; RoPE on the MLA q heads and the shared k_pe,
// forward and backward. See kernel_check.h.

#include <algorithm>
#include <cmath>
#include <string>

#include "base/bf16.h"
#include "tests/gpu/kernel_check.h"

namespace moe::gpucheck {

// ---------------------------------------------------------------- embedding, gather (by index and by runs), scatter
void Checks::Rows() {
  for (int64_t dim : {256, 100}) {  // 16-byte path and the scalar path
    const int64_t vocab = 1000, n = 5000;
    std::vector<float> table = rng_.Normal(vocab * dim);
    std::vector<int32_t> ids = rng_.Ints(n, 0, vocab - 1);
    for (int64_t i = 0; i < n; i += 5) ids[i] = 7;  // a frequent token: long scatter runs
    std::vector<float> out(n * dim);
    cpu_.EmbeddingForward(ids.data(), n, table.data(), nullptr, dim, out.data());
    Dev<float> gt(table), gout(n * dim);
    Dev<int32_t> gids(ids);
    gout.Poison();
    gpu_.EmbeddingForward(gids.get(), n, gt.get(), nullptr, dim, gout.get());
    report_.Check(Fmt("embedding_forward_d%lld", static_cast<long long>(dim)), gout.Download(),
                  out, 0.0, "(must be bit-exact)");
    // From a table of BF16 bits (BF16 mode's working copy).
    std::vector<uint16_t> bits(vocab * dim);
    for (int64_t i = 0; i < vocab * dim; ++i) bits[i] = moe::FloatToBf16Bits(table[i]);
    Dev<uint16_t> gbits(bits);
    cpu_.EmbeddingForward(ids.data(), n, nullptr, bits.data(), dim, out.data());
    gout.Poison();
    gpu_.EmbeddingForward(gids.get(), n, nullptr, gbits.get(), dim, gout.get());
    report_.Check(Fmt("embedding_forward_bf16_d%lld", static_cast<long long>(dim)), gout.Download(),
                  out, 0.0, "(must be bit-exact)");

    std::vector<float> d_out = rng_.Normal(n * dim), d_table = rng_.Normal(vocab * dim);
    Dev<float> gdo(d_out), gdt(d_table);
    cpu_.EmbeddingBackward(ids.data(), n, d_out.data(), dim, d_table.data());
    gpu_.EmbeddingBackward(gids.get(), n, gdo.get(), dim, gdt.get());
    report_.Check(Fmt("embedding_backward_d%lld", static_cast<long long>(dim)), gdt.Download(),
                  d_table, 1e-7, "(same order as the CPU: expect 0 bits differ)");
  }
  {
    const int64_t rows = 3000, dim = 192, n = 10000;
    std::vector<float> src = rng_.Normal(rows * dim);
    std::vector<int32_t> idx = rng_.Ints(n, 0, rows - 1);
    std::vector<float> dst(n * dim);
    cpu_.GatherRows(src.data(), idx.data(), n, dim, dst.data());
    Dev<float> gsrc(src), gdst(n * dim);
    Dev<int32_t> gidx(idx);
    gdst.Poison();
    gpu_.GatherRows(gsrc.get(), gidx.get(), n, dim, gdst.get());
    report_.Check("gather_rows", gdst.Download(), dst, 0.0, "(must be bit-exact)");

    // The EP regroup: runs of consecutive rows (out of order, empty ones, one long run), 16-byte and
    // scalar paths; one extra destination row must keep its poison.
    for (int64_t width : {dim, int64_t{37}}) {
      std::vector<Backend::RowBlock> blocks;
      for (int64_t start = 0, b = 0; start < rows; ++b) {
        const int64_t len = b % 7 == 3 ? 0 : (b % 11 == 5 ? 700 : 1 + b % 40);
        blocks.push_back({start, std::min(len, rows - start)});
        start += blocks.back().rows;
      }
      std::shuffle(blocks.begin(), blocks.end(), rng_.gen());
      int64_t total = 0;
      for (const auto& b : blocks) total += b.rows;
      std::vector<float> block_dst = Poisoned<float>((total + 1) * width);
      cpu_.GatherRowBlocks(src.data(), blocks, width, block_dst.data());
      Dev<float> gblock((total + 1) * width);
      gblock.Poison();
      gpu_.GatherRowBlocks(gsrc.get(), blocks, width, gblock.get());
      report_.CheckBits(Fmt("gather_row_blocks_d%lld_%zu_runs", static_cast<long long>(width), blocks.size()),
                        gblock.Download(), block_dst);
    }

    // Combine-style scatter: n rows into `rows` destinations, with and without weights.
    std::vector<float> rows_in = rng_.Normal(n * dim), scale = rng_.Uniform(n, 0.0f, 2.0f);
    for (bool with_scale : {true, false}) {
      std::vector<float> acc = rng_.Normal(rows * dim);
      Dev<float> gin(rows_in), gscale(scale), gacc(acc);
      cpu_.ScatterAddRows(rows_in.data(), idx.data(), with_scale ? scale.data() : nullptr, n,
                          dim, acc.data());
      gpu_.ScatterAddRows(gin.get(), gidx.get(), with_scale ? gscale.get() : nullptr, n, dim,
                          gacc.get());
      report_.Check(with_scale ? "scatter_add_rows_scaled" : "scatter_add_rows",
                    gacc.Download(), acc, 1e-7, "(same order as the CPU: expect 0 bits differ)");
    }
  }
}

// ---------------------------------------------------------------- RMSNorm
void Checks::RmsNorm() {
  const int64_t rows = 999, dim = 1024;
  const float eps = 1e-6f;
  std::vector<float> x = rng_.Normal(rows * dim, 2.0f), w = rng_.Uniform(dim, 0.5f, 1.5f);
  for (bool round : {false, true}) {
    std::vector<float> y(rows * dim), rstd(rows);
    cpu_.RmsNormForward(x.data(), w.data(), rows, dim, eps, round, y.data(), rstd.data());
    Dev<float> gx(x), gw(w), gy(rows * dim), gr(rows);
    gy.Poison();
    gr.Poison();
    gpu_.RmsNormForward(gx.get(), gw.get(), rows, dim, eps, round, gy.get(), gr.get());
    // With rounding, a last-bit difference in x*r can flip one BF16 rounding (2^-8 relative).
    report_.Check(round ? "rmsnorm_forward_bf16" : "rmsnorm_forward", gy.Download(), y,
                  round ? 1e-3 : 1e-6);
    report_.Check(round ? "rmsnorm_rstd_bf16" : "rmsnorm_rstd", gr.Download(), rstd, 1e-6);
  }
  std::vector<float> y(rows * dim), rstd(rows);
  cpu_.RmsNormForward(x.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
  std::vector<float> dy = rng_.Normal(rows * dim), dx(rows * dim), dw = rng_.Normal(dim);
  Dev<float> gx(x), gw(w), gr(rstd), gdy(dy), gdx(rows * dim), gdw(dw);
  gdx.Poison();
  cpu_.RmsNormBackward(x.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx.data(),
                       dw.data());
  gpu_.RmsNormBackward(gx.get(), gw.get(), gr.get(), gdy.get(), rows, dim, gdx.get(), gdw.get());
  report_.Check("rmsnorm_backward_dx", gdx.Download(), dx, 1e-5);
  report_.Check("rmsnorm_backward_dw", gdw.Download(), dw, 1e-5);

  // x kept as BF16 bits (a saved activation in BF16 mode), against the CPU on the same values.
  std::vector<float> xb = x;
  Dev<uint16_t> gx16(RoundToBits(&xb));
  cpu_.RmsNormForward(xb.data(), w.data(), rows, dim, eps, false, y.data(), rstd.data());
  Dev<float> gr_b(rstd), gdx_b(rows * dim), gdw_b(dw);
  gdx_b.Poison();
  cpu_.RmsNormBackward(xb.data(), w.data(), rstd.data(), dy.data(), rows, dim, dx.data(), dw.data());
  gpu_.RmsNormBackward(kernels::ValuesIn::Bits(gx16.get()), gw.get(), gr_b.get(), gdy.get(), rows, dim, gdx_b.get(),
                       gdw_b.get());
  report_.Check("rmsnorm_backward_dx_bits", gdx_b.Download(), dx, 1e-5);
  report_.Check("rmsnorm_backward_dw_bits", gdw_b.Download(), dw, 1e-5);
}

// ---------------------------------------------------------------- RoPE
void Checks::Rope() {
  const int64_t max_pos = 4096, half = 16;
  std::vector<float> cs(max_pos * half), sn(max_pos * half);
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(10000.0, -2.0 * i / (2.0 * half));
      cs[p * half + i] = static_cast<float>(std::cos(p * inv_freq));
      sn[p * half + i] = static_cast<float>(std::sin(p * inv_freq));
    }
  }
  Dev<float> gcos(cs), gsin(sn);
  struct Case {
    const char* name;
    int64_t tokens, heads, token_stride, head_stride, offset;
  };
  // q: [T, 16 heads, 96] with the rope part at 64; k_pe: one head inside the kv_a output [T, 288].
  for (const Case& c : {Case{"rope_q_heads", 257, 16, 16 * 96, 96, 64},
                        Case{"rope_k_shared", 300, 1, 288, 0, 256}}) {
    std::vector<float> x = rng_.Normal(c.tokens * c.token_stride);
    std::vector<int32_t> pos = rng_.Ints(c.tokens, 0, max_pos - 1);
    Dev<float> gx(x);
    Dev<int32_t> gpos(pos);
    RopeView v{x.data(), c.tokens, c.heads, c.token_stride, c.head_stride, c.offset, half,
               pos.data(), cs.data(), sn.data()};
    RopeView gv{gx.get(), c.tokens, c.heads, c.token_stride, c.head_stride, c.offset, half,
                gpos.get(), gcos.get(), gsin.get()};
    cpu_.RopeForward(v);
    gpu_.RopeForward(gv);
    report_.Check(Fmt("%s_forward", c.name), gx.Download(), x, 1e-6);
    cpu_.RopeBackward(v);
    gpu_.RopeBackward(gv);
    report_.Check(Fmt("%s_backward", c.name), gx.Download(), x, 1e-6);
  }
}

}  // namespace moe::gpucheck

// bench_comm: how much the bounded, non-blocking MpiCommunicator costs against plain blocking MPI.
//
//   mpirun -np 4 bazel-bin/tools/bench_comm [--tokens=4096 --hidden=1024 --iters=10 --allreduce_mb=16]
//
// (a) MoE dispatch: each rank sends `tokens` x `topk` routed token copies of `hidden` floats to the
//     ranks owning the (randomly picked, unevenly popular) experts, with MpiCommunicator::AllToAllV
//     and with raw MPI_Alltoallv on the same buffers in the same run; results are compared bit for bit.
// (b) MpiCommunicator::AllReduceSum against raw MPI_Allreduce on `allreduce_mb` MiB of floats, and
//     ReduceScatterSum against MPI_Reduce_scatter_block on the same amount.
// (c) The ZeRO-1 weight all-gather of the same number of weights (allreduce_mb MiB of floats): as FP32
//     words (FP32 runs) and as BF16 bits (BF16 runs), both through MpiCommunicator::AllGather.
// Rounds alternate the two implementations; each figure is the best round, the time of a round being
// the slowest rank's. GB/s = bytes that cross between ranks per second (all ranks together) for the
// all-to-all; for the all-reduce, algbw = bytes / time and busbw = algbw * 2 (p - 1) / p (the
// nccl-tests convention; (p - 1) / p for the reduce-scatter).
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "kernels/cpu/cpu_backend.h"
#include "absl/flags/parse.h"
#include "parallel/communicator_mpi.h"
#include "parallel/mpi_world.h"
#include "parallel/token_dispatcher.h"

ABSL_FLAG(int64_t, tokens, 4096, "tokens each rank dispatches");
ABSL_FLAG(int64_t, hidden, 1024, "floats per token");
ABSL_FLAG(int64_t, topk, 2, "experts per token (each routed copy is sent)");
ABSL_FLAG(int64_t, experts, 64, "routed experts, spread evenly over the ranks");
ABSL_FLAG(int, iters, 10, "calls per timed round");
ABSL_FLAG(int, rounds, 3, "timed rounds per implementation (the best is reported)");
ABSL_FLAG(int64_t, allreduce_mb, 16, "all-reduce payload in MiB");
ABSL_FLAG(double, timeout_s, 120, "collective timeout of the MpiCommunicator");

namespace {

// Best-of-rounds seconds per call of `fn`, a round's time being the maximum over ranks.
template <typename Fn>
double TimePerCall(Fn&& fn, int iters) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = MPI_Wtime();
  for (int i = 0; i < iters; ++i) fn();
  double dt = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return dt / iters;
}

// Best-of-rounds seconds per call of two implementations, the rounds alternating between them.
template <typename A, typename B>
std::pair<double, double> BestOfAlternatingRounds(A&& a, B&& b, int rounds, int iters) {
  double best_a = 1e30, best_b = 1e30;
  for (int r = 0; r < rounds; ++r) {
    best_a = std::min(best_a, TimePerCall(a, iters));
    best_b = std::min(best_b, TimePerCall(b, iters));
  }
  return {best_a, best_b};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto world = moe::parallel::MpiWorld::Init(&argc, &argv);
  if (!world.ok()) {
    std::fprintf(stderr, "bench_comm: %s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  const int rank = world->rank(), size = world->size();
  const int64_t tokens = absl::GetFlag(FLAGS_tokens), hidden = absl::GetFlag(FLAGS_hidden);
  const int iters = absl::GetFlag(FLAGS_iters), rounds = absl::GetFlag(FLAGS_rounds);
  auto comm = moe::parallel::MpiCommunicator::World(absl::GetFlag(FLAGS_timeout_s));

  // MoE dispatch counts: each of the rank's tokens goes to `topk` experts drawn at random (with
  // uneven expert popularity), and the experts are spread evenly over the ranks in blocks.
  const int64_t topk = absl::GetFlag(FLAGS_topk), experts = absl::GetFlag(FLAGS_experts);
  std::mt19937_64 gen(1000 + rank);
  std::vector<double> popularity(experts);
  std::mt19937_64 shared_gen(7);  // the same popularity on every rank
  for (double& w : popularity) w = std::uniform_real_distribution<double>(0.25, 1.75)(shared_gen);
  std::discrete_distribution<int64_t> pick(popularity.begin(), popularity.end());
  std::vector<int64_t> send_tokens(size, 0), recv_tokens(size), rows_per_expert(experts, 0);
  for (int64_t t = 0; t < tokens * topk; ++t) ++rows_per_expert[pick(gen)];
  for (int64_t e = 0; e < experts; ++e) send_tokens[e * size / experts] += rows_per_expert[e];
  comm->AllToAll(send_tokens.data(), recv_tokens.data(), 1);

  std::vector<int64_t> send_counts(size), recv_counts(size);
  std::vector<int> send_i(size), recv_i(size), send_d(size), recv_d(size);
  int64_t send_total = 0, recv_total = 0;
  for (int r = 0; r < size; ++r) {
    send_counts[r] = send_tokens[r] * hidden;
    recv_counts[r] = recv_tokens[r] * hidden;
    send_i[r] = static_cast<int>(send_counts[r]);
    recv_i[r] = static_cast<int>(recv_counts[r]);
    send_d[r] = static_cast<int>(send_total);
    recv_d[r] = static_cast<int>(recv_total);
    send_total += send_counts[r];
    recv_total += recv_counts[r];
  }
  std::vector<float> send(send_total), recv_a(recv_total), recv_b(recv_total);
  for (int64_t i = 0; i < send_total; ++i) send[i] = static_cast<float>((i * 31 + rank * 7) % 1000);

  auto ours = [&] { comm->AllToAllV(send.data(), send_counts, recv_a.data(), recv_counts); };
  auto raw = [&] {
    MPI_Alltoallv(send.data(), send_i.data(), send_d.data(), MPI_FLOAT, recv_b.data(), recv_i.data(),
                  recv_d.data(), MPI_FLOAT, MPI_COMM_WORLD);
  };
  ours();
  raw();
  int same = std::memcmp(recv_a.data(), recv_b.data(), sizeof(float) * recv_total) == 0;
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);

  // Bytes crossing between ranks per call, over all ranks.
  int64_t cross = (send_total - send_counts[rank]) * static_cast<int64_t>(sizeof(float));
  MPI_Allreduce(MPI_IN_PLACE, &cross, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  const auto [best_ours, best_raw] = BestOfAlternatingRounds(ours, raw, rounds, iters);

  // The whole MoE exchange: TokenDispatcher Plan + Dispatch (+ regroup by local expert) + Combine,
  // against two raw MPI_Alltoallv calls moving the same bytes there and back.
  moe::parallel::TokenDispatcher dispatcher(comm.get(), experts);
  moe::kernels::CpuBackend ops(1);  // the regroup's row copies
  std::vector<float> grouped(recv_total), back(send_total), back_raw(send_total);
  auto dispatch_combine = [&] {
    const moe::parallel::DispatchHandle h = dispatcher.Plan(rows_per_expert);
    dispatcher.Dispatch(ops, h, send.data(), hidden, grouped.data());
    dispatcher.Combine(ops, h, grouped.data(), hidden, back.data());
  };
  auto raw_there_and_back = [&] {
    raw();
    MPI_Alltoallv(recv_b.data(), recv_i.data(), recv_d.data(), MPI_FLOAT, back_raw.data(), send_i.data(),
                  send_d.data(), MPI_FLOAT, MPI_COMM_WORLD);
  };
  dispatch_combine();
  int round_trip = std::memcmp(back.data(), send.data(), sizeof(float) * send_total) == 0;
  MPI_Allreduce(MPI_IN_PLACE, &round_trip, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  const auto [best_dc, best_dc_raw] = BestOfAlternatingRounds(dispatch_combine, raw_there_and_back, rounds, iters);

  // All-reduce.
  const int64_t n = absl::GetFlag(FLAGS_allreduce_mb) * (1 << 20) / static_cast<int64_t>(sizeof(float));
  std::vector<float> x(n, 1.0f);
  auto ar_ours = [&] { comm->AllReduceSum(x.data(), n); };
  auto ar_raw = [&] {
    MPI_Allreduce(MPI_IN_PLACE, x.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  };
  ar_ours();
  ar_raw();
  const auto [best_ar_ours, best_ar_raw] = BestOfAlternatingRounds(ar_ours, ar_raw, rounds, iters);

  // Reduce-scatter: each rank ends with its 1/size block of the sum (TP sequence parallelism).
  const int64_t block = n / size;
  std::vector<float> rs_in(block * size, 1.0f), rs_out(block);
  auto rs_ours = [&] { comm->ReduceScatterSum(rs_in.data(), rs_out.data(), block); };
  auto rs_raw = [&] {
    MPI_Reduce_scatter_block(rs_in.data(), rs_out.data(), static_cast<int>(block), MPI_FLOAT, MPI_SUM,
                             MPI_COMM_WORLD);
  };
  rs_ours();
  rs_raw();
  const auto [best_rs_ours, best_rs_raw] = BestOfAlternatingRounds(rs_ours, rs_raw, rounds, iters);

  // The weight all-gather: `block` weights per rank, as FP32 words and as BF16 bits.
  std::vector<float> ag_in(block, 1.0f), ag_out(block * size);
  std::vector<uint16_t> ag_in16(block, 0x3F80), ag_out16(block * size);
  auto ag_fp32 = [&] { comm->AllGather(ag_in.data(), ag_out.data(), block); };
  auto ag_bf16 = [&] { comm->AllGather(ag_in16.data(), ag_out16.data(), block); };
  ag_fp32();
  ag_bf16();
  const auto [best_ag_fp32, best_ag_bf16] = BestOfAlternatingRounds(ag_fp32, ag_bf16, rounds, iters);

  if (rank == 0) {
    const double gb = 1e9;
    std::printf("bench_comm: %d ranks on %s, %d calls x best of %d rounds\n", size,
                world->hostname().c_str(), iters, rounds);
    std::printf("alltoallv  %lld tokens x top-%lld x %lld floats per rank, %.1f MB crossing ranks per call, "
                "results identical: %s\n",
                static_cast<long long>(tokens), static_cast<long long>(topk), static_cast<long long>(hidden),
                cross / 1e6,
                same ? "yes" : "NO");
    std::printf("  MpiCommunicator::AllToAllV  %8.3f ms  %7.2f GB/s\n", best_ours * 1e3,
                cross / best_ours / gb);
    std::printf("  MPI_Alltoallv (blocking)    %8.3f ms  %7.2f GB/s\n", best_raw * 1e3, cross / best_raw / gb);
    std::printf("  ratio ours/raw (bandwidth)  %8.3f\n", best_raw / best_ours);
    std::printf("dispatch+combine (TokenDispatcher: count exchange, all-to-all, regroup by local expert, and "
                "back; round trip exact: %s)\n", round_trip ? "yes" : "NO");
    std::printf("  TokenDispatcher Plan+Dispatch+Combine %8.3f ms  %7.2f GB/s\n", best_dc * 1e3,
                2 * cross / best_dc / gb);
    std::printf("  2 x MPI_Alltoallv, same bytes         %8.3f ms  %7.2f GB/s\n", best_dc_raw * 1e3,
                2 * cross / best_dc_raw / gb);
    std::printf("  ratio ours/raw (bandwidth)            %8.3f\n", best_dc_raw / best_dc);
    const double bytes = static_cast<double>(n) * sizeof(float);
    const double bus = size > 1 ? 2.0 * (size - 1) / size : 0.0;
    std::printf("allreduce  %.1f MB of floats\n", bytes / 1e6);
    std::printf("  MpiCommunicator::AllReduceSum %8.3f ms  algbw %7.2f GB/s  busbw %7.2f GB/s\n",
                best_ar_ours * 1e3, bytes / best_ar_ours / gb, bus * bytes / best_ar_ours / gb);
    std::printf("  MPI_Allreduce (blocking)      %8.3f ms  algbw %7.2f GB/s  busbw %7.2f GB/s\n",
                best_ar_raw * 1e3, bytes / best_ar_raw / gb, bus * bytes / best_ar_raw / gb);
    std::printf("  ratio ours/raw (bandwidth)    %8.3f\n", best_ar_raw / best_ar_ours);
    const double rs_bytes = static_cast<double>(block) * size * sizeof(float);
    const double rs_bus = size > 1 ? (size - 1.0) / size : 0.0;
    std::printf("reducescatter  %.1f MB of floats in, 1/%d out\n", rs_bytes / 1e6, size);
    std::printf("  MpiCommunicator::ReduceScatterSum %8.3f ms  busbw %7.2f GB/s\n", best_rs_ours * 1e3,
                rs_bus * rs_bytes / best_rs_ours / gb);
    std::printf("  MPI_Reduce_scatter_block          %8.3f ms  busbw %7.2f GB/s\n", best_rs_raw * 1e3,
                rs_bus * rs_bytes / best_rs_raw / gb);
    std::printf("  ratio ours/raw (bandwidth)        %8.3f\n", best_rs_raw / best_rs_ours);
    std::printf("weight all-gather  %lld weights (1/%d per rank)\n", static_cast<long long>(block * size), size);
    std::printf("  as FP32 words (FP32 runs) %8.3f ms\n", best_ag_fp32 * 1e3);
    std::printf("  as BF16 bits (BF16 runs)  %8.3f ms\n", best_ag_bf16 * 1e3);
    std::printf("  ratio FP32/BF16 (time)    %8.3f\n", best_ag_fp32 / best_ag_bf16);
  }
  comm.reset();  // free the communicator before MPI_Finalize (in ~MpiWorld)
  return same && round_trip ? 0 : 1;
}

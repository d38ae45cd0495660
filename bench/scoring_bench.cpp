// Scoring kernels at d = 128 for 4K, 32K and 128K keys (issue 8), in GFLOP/s of their GEMM work:
// SnapKV's observation-window attention for one KV head and for a whole layer (8 KV heads in
// parallel, 1 and 2 threads: the scaling target is >= 1.8x), exact key leverage (l2norm's
// neighbours compactor and curdkv), and exact H2O's accumulated attention of one prefill chunk
// (issue 21 §4: the slowest rows of a 32K comparison). bench/torch_reference.py times the first three.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <numeric>
#include <random>

#include "bench/bench_shapes.h"
#include "policies/h2o_attention.h"
#include "policies/leverage.h"
#include "policies/window_attention.h"
#include "tests/test_support.h"

namespace kvsim::bench {
namespace {

// One KV head's keys and its group's window queries, as SnapKV sees them after prefill.
struct HeadInput {
  HeadMatrix keys;
  std::vector<HeadMatrix> queries;
  std::vector<const HeadMatrix*> heads;
  std::vector<std::int32_t> resident;
  std::vector<std::int64_t> rows;

  HeadInput(std::int64_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    keys = testing_support::random_matrix(rng, n, kHeadDim);
    for (int g = 0; g < kGroup; ++g) queries.push_back(testing_support::random_matrix(rng, kWindow, kHeadDim));
    for (const auto& m : queries) heads.push_back(&m);
    resident.resize(static_cast<std::size_t>(n));
    std::iota(resident.begin(), resident.end(), 0);
    rows.resize(kWindow);
    std::iota(rows.begin(), rows.end(), 0);
  }

  std::vector<float> score() const { return window_attention_scores(keys, resident, kWindow, {heads, rows}); }
};

void BM_WindowAttention(benchmark::State& state) {
  const HeadInput input(state.range(0), 2);
  for (auto _ : state) {
    auto scores = input.score();
    benchmark::DoNotOptimize(scores.data());
  }
  // The GEMM's FLOPs; gather, softmax and sums count as overhead against it.
  state.counters["GFLOP/s"] =
      benchmark::Counter(window_attention_flops(state.range(0)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_WindowAttention)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

// A whole layer, KV heads in parallel as the policies do; args: keys, threads.
void BM_WindowAttentionLayer(benchmark::State& state) {
  const auto keys = state.range(0);
  const auto threads = static_cast<std::size_t>(state.range(1));
  const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  std::vector<HeadInput> layer;
  for (int h = 0; h < kKvHeads; ++h) layer.emplace_back(keys, 10 + static_cast<std::uint64_t>(h));
  std::vector<std::vector<float>> scores(kKvHeads);
  for (auto _ : state) {
    tbb::parallel_for(0, kKvHeads,
                      [&](int h) { scores[static_cast<std::size_t>(h)] = layer[static_cast<std::size_t>(h)].score(); });
    benchmark::DoNotOptimize(scores.front().data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(kKvHeads * window_attention_flops(keys) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = static_cast<double>(threads);
}
BENCHMARK(BM_WindowAttentionLayer)
    ->ArgsProduct({{4096, 32768, 131072}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Exact centered leverage of one head's keys, in double as the policies compute it.
void BM_KeyLeverage(benchmark::State& state) {
  const auto keys = state.range(0);
  std::mt19937_64 rng(3);
  const Eigen::MatrixXd x = testing_support::random_matrix(rng, keys, kHeadDim).cast<double>();
  for (auto _ : state) {
    auto lev = centered_leverage(x);
    benchmark::DoNotOptimize(lev.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(leverage_flops(keys) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_KeyLeverage)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

// Exact H2O (policies/h2o.cpp): the last 2048-token prefill chunk of a prompt of `keys` tokens, its
// 4 x 2048 queries of one GQA group attending causally to the cached entries and the chunk; args:
// keys, threads (the kernel runs its query blocks in parallel). GFLOP/s counts the causal part of
// the logits GEMM, 2 G d sum_i (cached + i + 1): what a masked kernel must compute.
void BM_H2oPassAttention(benchmark::State& state) {
  const std::int64_t keys = state.range(0);
  const tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                                  static_cast<std::size_t>(state.range(1)));
  constexpr std::int64_t kChunk = 2048;
  const std::int64_t cached = keys - kChunk;
  std::mt19937_64 rng(4);
  const HeadMatrix key_matrix = testing_support::random_matrix(rng, keys, kHeadDim);
  std::vector<HeadMatrix> query_matrices;
  for (int g = 0; g < kGroup; ++g) query_matrices.push_back(testing_support::random_matrix(rng, kChunk, kHeadDim));
  std::vector<const HeadMatrix*> heads;
  for (const auto& m : query_matrices) heads.push_back(&m);
  std::vector<std::int32_t> visible(static_cast<std::size_t>(keys));
  std::iota(visible.begin(), visible.end(), 0);
  std::vector<std::int64_t> rows(kChunk), positions(kChunk);
  std::iota(rows.begin(), rows.end(), 0);
  std::iota(positions.begin(), positions.end(), cached);
  std::vector<double> score(static_cast<std::size_t>(keys));
  for (auto _ : state) {
    add_pass_attention(key_matrix, visible, cached, cached, {heads, rows, positions}, score);
    benchmark::DoNotOptimize(score.data());
  }
  const double causal_dots = static_cast<double>(kChunk) * static_cast<double>(cached) +
                             static_cast<double>(kChunk) * static_cast<double>(kChunk + 1) / 2.0;
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kGroup * kHeadDim * causal_dots * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = static_cast<double>(state.range(1));
}
BENCHMARK(BM_H2oPassAttention)
    ->ArgsProduct({{4096, 32768}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kvsim::bench

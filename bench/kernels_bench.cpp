// Scoring-kernel speed against this machine's dense SGEMM through Eigen (issue 8): GFLOP/s of
// SnapKV's observation-window attention and of a plain GEMM of the same shape, and the replay
// engine's passes per second. Run through tools/bench.sh, which writes bench/results.json.
#include <benchmark/benchmark.h>

#include <numeric>
#include <random>

#include "policies/registry.h"
#include "policies/window_attention.h"
#include "sim/layer_replay.h"
#include "tests/test_support.h"
#include "util/allocator.h"

namespace kvsim {
namespace {

constexpr int kHeadDim = 128;
constexpr int kGroup = 4;
constexpr int kWindow = 32;

// The GEMM inside window attention, alone: [group*window x d] x [d x keys].
void BM_EigenSgemm(benchmark::State& state) {
  const auto keys = state.range(0);
  std::mt19937_64 rng(1);
  const HeadMatrix q = testing_support::random_matrix(rng, kGroup * kWindow, kHeadDim);
  const HeadMatrix k = testing_support::random_matrix(rng, keys, kHeadDim);
  HeadMatrix out(kGroup * kWindow, keys);
  for (auto _ : state) {
    out.noalias() = q * k.transpose();
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * kGroup * kWindow * static_cast<double>(keys) * kHeadDim;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_EigenSgemm)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

// SnapKV's scoring of one KV head: gather, GEMM, causal softmax, window sum, group mean.
void BM_WindowAttention(benchmark::State& state) {
  const auto keys = state.range(0);
  std::mt19937_64 rng(2);
  const HeadMatrix k = testing_support::random_matrix(rng, keys, kHeadDim);
  std::vector<HeadMatrix> q;
  std::vector<const HeadMatrix*> heads;
  for (int g = 0; g < kGroup; ++g) q.push_back(testing_support::random_matrix(rng, kWindow, kHeadDim));
  for (const auto& m : q) heads.push_back(&m);
  std::vector<std::int32_t> resident(static_cast<std::size_t>(keys));
  std::iota(resident.begin(), resident.end(), 0);
  std::vector<std::int64_t> rows(kWindow);
  std::iota(rows.begin(), rows.end(), 0);
  for (auto _ : state) {
    auto scores = window_attention_scores(k, resident, kWindow, {heads, rows});
    benchmark::DoNotOptimize(scores.data());
  }
  // The GEMM's FLOPs; softmax and sums are counted as overhead against it.
  const double flops = 2.0 * kGroup * kWindow * static_cast<double>(keys) * kHeadDim;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_WindowAttention)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

// The ledger replay of one untraced layer (count-only), streaming with per-step eviction:
// passes (prefill chunks + decode steps) per second.
void BM_ReplayPasses(benchmark::State& state) {
  const ModelShape model{"bench", 1, 32, 8, 128};
  RequestInfo request;
  request.id = "0";
  request.prompt_tokens = 32768;
  request.generated_tokens = state.range(0);
  const PassPlan plan = make_pass_plan(request.prompt_tokens, request.generated_tokens, 2048);
  const auto policy = PolicyRegistry::builtin().create("streaming(sinks=4, window=1024)");
  for (auto _ : state) {
    const LayerReplay replay = replay_layer({model, request, plan, 0, nullptr, {}}, *policy);
    benchmark::DoNotOptimize(replay.footprint_entry_steps);
  }
  state.counters["passes/s"] =
      benchmark::Counter(static_cast<double>(plan.passes.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ReplayPasses)->Arg(1024)->Arg(16384)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvsim

int main(int argc, char** argv) {
  kvsim::tune_allocator();  // as kvsim itself runs
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

// The ledger replay of one untraced layer (count-only), streaming with per-step eviction:
// passes (prefill chunks + decode steps) per second.
#include <benchmark/benchmark.h>

#include "policies/registry.h"
#include "sim/replay/layer_replay.h"

namespace kvsim::bench {
namespace {

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
}  // namespace kvsim::bench

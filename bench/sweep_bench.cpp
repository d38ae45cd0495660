// Sweep expansion speed (issue 17 item 9: >= 10^6 scenarios per second). A sweep file shaped like
// the studies in configs/sweeps/: a preset model, four swept workload keys (one a range), two
// policy lines with brace alternatives, hardware; the [sweep] seed derives every scenario's seed.
// Expansion makes each scenario's INI text, its hash (the folder name) and the sweep's hash.
#include <benchmark/benchmark.h>

#include <string>

#include "sim/sweep/expand.h"

namespace {

using namespace kvsim;

std::string sweep_text(long scenarios) {
  // prompt_tokens x chunk_tokens x generated_tokens x 10 fidelity values = scenarios
  const long prompts = scenarios / (5 * 2 * 10);
  return "[model]\npreset = llama-3.1-8b\n"
         "[workload]\nprompt_tokens = 1000.." +
         std::to_string(1000 * prompts) +
         " +1000\n"
         "generated_tokens = 32, 64\nchunk_tokens = 128, 256, 512, 1024, 2048\ntrace = synthetic\n"
         "traced_layers = 0,8,16,24\nneedles = 2\n"
         "[policy]\nspec = snapkv(budget={0.1,0.2,0.5}, window=32, prefill={post_fill,chunk})\n"
         "spec = streaming(sinks=4, window=1024)\n"
         "[hardware]\npreset = h100-sxm\ntp = 1\n"
         "[sim]\nfidelity_queries = 8..17\n"
         "[sweep]\nseed = 7\n";
}

void BM_SweepExpansion(benchmark::State& state) {
  const std::string text = sweep_text(state.range(0));
  std::size_t scenarios = 0;
  for (auto _ : state) {
    const Sweep sweep = expand_sweep(text, "/bench/sweep.ini");
    scenarios += sweep.scenarios.size();
    benchmark::DoNotOptimize(sweep.hash);
  }
  state.counters["scenarios/s"] = benchmark::Counter(static_cast<double>(scenarios), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SweepExpansion)->Arg(10000)->Arg(1000000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

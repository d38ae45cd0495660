// The serving simulator on the memory hierarchy at the size a planner runs (issue 18: under 15 s
// on 2 cores): the Azure conversation hour (19,366 requests) with KV offloaded to host DRAM under
// four retention curves (the full cache and post-fill eviction to 50 %, 20 %, 10 % of the prompt),
// simulated in parallel as `kvsim run` does; and the Mooncake conversation trace with the tiered
// prefix cache (hbm+dram). Azure has no prefix hashes, so a tiered prefix cache cannot run on it
// (the scenario loader refuses it); Mooncake is the trace that exercises it.
#include <benchmark/benchmark.h>
#include <tbb/parallel_for.h>

#include <limits>
#include <vector>

#include "hw/cost_model.h"
#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "sim/placement.h"
#include "sim/serving/scheduler.h"
#include "traces/model_presets.h"
#include "traces/workload.h"

namespace {

using namespace kvsim;

constexpr std::int64_t kForever = std::numeric_limits<std::int64_t>::max() / 4;

// Keeps `fraction` of the prompt after prefill (one eviction at the prompt's end), every decoded
// token after it; 1: keeps everything.
RetentionCurve post_fill(std::int64_t prompt_tokens, double fraction) {
  if (fraction >= 1) return RetentionCurve(prompt_tokens, {}, kForever, 1.0);
  return RetentionCurve(prompt_tokens, {{prompt_tokens, fraction * static_cast<double>(prompt_tokens)}}, kForever, 1.0);
}

struct Setup {
  ModelShape model = load_model_preset("llama-3.1-8b");
  Hardware hardware = load_hardware("h100-sxm", {"host-ddr5"});
  CostModel cost{hardware, model, 1, "bench"};
  Hierarchy hierarchy{hardware};
  Workload workload;
  explicit Setup(const std::string& trace)
      : workload(load_workload(std::string(KVSIM_SOURCE_DIR) + "/configs/workloads/" + trace, "", 1, {}, "bench")) {}
};

void BM_AzureHourOffloadFourPolicies(benchmark::State& state) {
  const Setup s("azure_conv.csv");
  const ServingConfig config;
  const Placement placement = parse_placement("offload(tier=dram)", "bench");
  const std::vector<double> kept = {1.0, 0.5, 0.2, 0.1};
  std::int64_t events = 0;
  for (auto _ : state) {
    std::vector<ServingResult> results(kept.size());
    tbb::parallel_for(std::size_t{0}, kept.size(), [&](std::size_t p) {
      ServingInput in{config, s.workload, 0, s.cost, s.hierarchy, s.model, 1, placement, {}, false, {}};
      in.curve = [&](std::size_t i) { return post_fill(s.workload.requests[i].prompt_tokens, kept[p]); };
      results[p] = simulate_serving(in);
    });
    for (const ServingResult& r : results) events += r.events;
    benchmark::DoNotOptimize(results.data());
  }
  state.counters["requests"] = static_cast<double>(s.workload.requests.size());
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AzureHourOffloadFourPolicies)->Unit(benchmark::kSecond)->UseRealTime();

void BM_MooncakeTieredPrefixCache(benchmark::State& state) {
  const Setup s("mooncake_conversation.jsonl");
  ServingConfig config;
  config.prefix_cache_lower_tiers = {"dram"};
  Placement placement;
  std::int64_t events = 0;
  for (auto _ : state) {
    ServingInput in{config, s.workload, 0, s.cost, s.hierarchy, s.model, 1, placement, {}, true, {}};
    in.curve = [&](std::size_t i) { return post_fill(s.workload.requests[i].prompt_tokens, 1.0); };
    const ServingResult r = simulate_serving(in);
    events += r.events;
    benchmark::DoNotOptimize(r.makespan_s);
  }
  state.counters["requests"] = static_cast<double>(s.workload.requests.size());
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MooncakeTieredPrefixCache)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

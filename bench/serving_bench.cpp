// The serving simulator's event rate (issue 6: at least 1 million events per second): a synthetic
// Poisson workload at a load that keeps ~100 requests in the batch, full-cache retention (the
// scheduler, not the policy replay, is measured). Events = arrivals + request steps (a request's
// part in one iteration) + completions.
#include <benchmark/benchmark.h>

#include <limits>

#include "hw/cost_model.h"
#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "sim/serving/scheduler.h"
#include "traces/model_presets.h"
#include "traces/workload.h"

namespace {

using namespace kvsim;

void BM_ServingEvents(benchmark::State& state) {
  const ModelShape model = load_model_preset("llama-3.1-8b");
  const Hardware hardware = load_hardware("h100-sxm");
  const CostModel cost(hardware, model, 1, "bench");
  const Hierarchy hierarchy(hardware);
  const Workload workload = make_synthetic_workload(
      "poisson(rate=20, requests=" + std::to_string(state.range(0)) +
          ", prompt_mean=1100, prompt_cv=1, prompt_max=8192, output_mean=210, output_cv=1, output_max=2048)",
      1, "bench");
  ServingConfig config;
  ServingInput input{config, workload,    0,  cost,  hierarchy, model,
                     1,      Placement{}, {}, false, {}};  // hbm_only, 10 % reserve
  input.curve = [&](std::size_t i) {
    return RetentionCurve(workload.requests[i].prompt_tokens, {}, std::numeric_limits<std::int64_t>::max() / 4, 1.0);
  };
  std::int64_t events = 0;
  for (auto _ : state) {
    const ServingResult r = simulate_serving(input);
    events += r.events;
    benchmark::DoNotOptimize(r.makespan_s);
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ServingEvents)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

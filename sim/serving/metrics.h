#pragma once
// What a serving simulation means for a user (DESIGN.md §6-7): latency percentiles, throughput,
// goodput under the SLO, and the resource that limited it. Shared by the report and `kvsim plan`.
#include <cstdint>
#include <string>

#include "sim/replay/timing.h"
#include "sim/serving/scheduler.h"
#include "sim/serving_config.h"

namespace kvsim {

struct ServingMetrics {
  std::int64_t requests = 0;
  std::int64_t served = 0;
  Percentiles ttft_s, tpot_s, e2e_s, queue_s;  // over served requests (tpot: those with >= 2 outputs)
  bool has_tpot = false;
  double output_tokens_per_s = 0;  // over the makespan
  double tokens_per_s = 0;         // prompt + output
  double requests_per_s = 0;       // served
  double slo_attainment = 0;       // fraction of all requests meeting the per-request SLO
  double goodput_requests_per_s = 0;
  std::int64_t prefix_hit_tokens = 0;
  // Which resource limits this run: "hbm_capacity" when requests waited for KV blocks or were
  // preempted, otherwise the roofline term that took most iteration time ("compute",
  // "hbm_bandwidth"), or "link_bandwidth" when swaps did.
  std::string limiting_resource;
  // The same, for what decode steps waited on (iteration time weighted by the decodes in it).
  std::string tpot_limiting_resource;
};

ServingMetrics summarize_serving(const ServingResult& result, const Slo& slo);

}  // namespace kvsim

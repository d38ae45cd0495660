#pragma once
// What a serving simulation means for a user (DESIGN.md §6-7): latency percentiles, throughput,
// goodput under the SLO, and the resource that limited it. Shared by the report and `kvsim plan`.
#include <cstdint>
#include <map>
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
  // What broke the SLO, from the requests that broke it (issue 18 §3): per bound, how many
  // requests missed it for each cause (slo_breach_cause); a request late on both counts in both.
  std::map<std::string, std::int64_t> ttft_breach_causes, tpot_breach_causes;
};

// Why request `q` missed a latency bound. A late first token: the wait outside its prefill
// iterations if that was most of its TTFT ("queueing", or "hbm_capacity" when it was preempted or
// requests were refused KV blocks while it waited), else what bound its prefill iterations
// ("compute", "hbm_bandwidth", "link_bandwidth"). Slow decode: "hbm_capacity" if it spent most of
// its decode span preempted, else what bound its decode iterations.
std::string slo_breach_cause(const ServingRequestResult& q, bool first_token);

// Which of the SLO's bounds served request `q` missed (a bound of 0 is none; TPOT needs >= 2 outputs).
struct RequestBreaches {
  bool late_first_token = false;
  bool slow_decode = false;
};
RequestBreaches request_breaches(const ServingRequestResult& q, const Slo& slo);

// The cause of most breaches (ties: the first in name order); "none" for none.
std::string top_breach_cause(const std::map<std::string, std::int64_t>& causes);

ServingMetrics summarize_serving(const ServingResult& result, const Slo& slo);

}  // namespace kvsim

#pragma once
// Time, bandwidth and capacity of a replayed request on a device. Each pass's KV work from the
// ledger is split across tiers by the placement (sim/placement.h), priced by the roofline cost
// model (hw/cost_model.h) and, for what crosses links, by the hierarchy (hw/hierarchy.h).
#include <string>
#include <vector>

#include "hw/cost_model.h"
#include "hw/hierarchy.h"
#include "policies/pass_plan.h"
#include "sim/placement.h"
#include "sim/replay/engine.h"
#include "util/percentiles.h"

namespace kvsim {

struct TierTraffic {
  std::string tier;
  double bytes_read = 0;
  double bytes_written = 0;
  double byte_seconds = 0;           // integral of resident KV bytes over simulated time
  double peak_kv_bytes = 0;          // most KV bytes resident in this tier during a pass
  double mean_read_bytes_per_s = 0;  // over the whole request
  double peak_read_bytes_per_s = 0;  // over the busiest pass
};

// Per TP rank: each rank moves its share of the KV heads over its own copy of the hierarchy.
struct LinkTraffic {
  std::string link;
  double bytes = 0;  // both directions
  double mean_bytes_per_s = 0;
  double peak_bytes_per_s = 0;
};

// Per pass, all layers and KV heads, counted at the end of the pass (before the policy evicts).
struct PassLedger {
  double hbm_entries = 0;      // resident in the compute tier
  double lower_entries = 0;    // resident in the placement's lower tier
  double evicted_entries = 0;  // dropped so far
  double link_bytes = 0;       // crossed between the tiers during the pass, all TP ranks
  double transfer_s = 0;       // time the links were busy for this pass
};

struct PolicyTiming {
  std::vector<PassCost> passes;  // one per pass; time_s includes transfers
  std::vector<double> pass_start_s;
  std::vector<PassLedger> ledger;
  double prefill_s = 0;
  double decode_s = 0;
  Percentiles ttft_s;  // a single request: all three equal
  Percentiles tpot_s;  // over decode steps
  Percentiles e2e_s;
  std::vector<TierTraffic> tiers;  // compute tier first, then the lower tier if any
  std::vector<LinkTraffic> links;
  double weight_bytes = 0;
  double peak_hbm_bytes = 0;  // weights + peak KV in the compute tier, per TP rank
  bool fits_hbm = true;
  int compute_bound_passes = 0;
  double offloaded_entries = 0;  // at the end of the request, in the lower tier
  double evicted_entries = 0;    // at the end of the request, dropped
};

struct TimingInput {
  const CostModel& cost;
  const Hierarchy& hierarchy;
  const ModelShape& model;
  const PassPlan& plan;
  const Placement& placement;
  int tensor_parallel = 1;
};

// Throws InputError if the placement names a tier the hardware lacks.
PolicyTiming time_request(const TimingInput& input, const PolicyResult& result);

}  // namespace kvsim

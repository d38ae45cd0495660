#pragma once
// Time, bandwidth and capacity of a replayed request on a device: each pass's KV work from the
// ledger goes through the roofline cost model (hw/cost_model.h).
#include <string>
#include <vector>

#include "hw/cost_model.h"
#include "sim/engine.h"
#include "sim/pass_plan.h"

namespace kvsim {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
};

struct TierTraffic {
  std::string tier;
  double bytes_read = 0;
  double bytes_written = 0;
  double byte_seconds = 0;               // integral of resident KV bytes over simulated time
  double mean_read_bytes_per_s = 0;      // over the whole request
  double peak_read_bytes_per_s = 0;      // over the busiest pass
};

struct PolicyTiming {
  std::vector<PassCost> passes;  // one per pass
  std::vector<double> pass_start_s;
  double prefill_s = 0;
  double decode_s = 0;
  Percentiles ttft_s;   // a single request: all three equal
  Percentiles tpot_s;   // over decode steps
  Percentiles e2e_s;
  std::vector<TierTraffic> tiers;  // the compute tier (hbm_only placement)
  double weight_bytes = 0;
  double peak_hbm_bytes = 0;       // weights + peak KV, per TP rank
  bool fits_hbm = true;
  int compute_bound_passes = 0;
};

PolicyTiming time_request(const CostModel& cost, const Hardware& hardware, const ModelShape& model,
                          const PassPlan& plan, const PolicyResult& result, int tensor_parallel);

}  // namespace kvsim

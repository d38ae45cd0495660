#include "sim/timing.h"

#include <algorithm>

namespace kvsim {

namespace {

Percentiles percentiles_of(const std::vector<double>& values) {
  if (values.empty()) return {};
  return {percentile(values, 50), percentile(values, 90), percentile(values, 99)};
}

}  // namespace

PolicyTiming time_request(const CostModel& cost, const Hardware& hardware, const ModelShape& model,
                          const PassPlan& plan, const PolicyResult& result, int tensor_parallel) {
  PolicyTiming t;
  const double heads = static_cast<double>(model.num_layers) * model.num_kv_heads;
  const double entry_bytes = static_cast<double>(model.entry_bytes());
  TierTraffic hbm;
  hbm.tier = hardware.device.compute_tier;
  double now = 0.0;
  std::vector<double> decode_steps;
  for (std::size_t i = 0; i < plan.passes.size(); ++i) {
    const Pass& pass = plan.passes[i];
    PassWork work;
    work.tokens = static_cast<double>(pass.tokens());
    work.logits_tokens = (!pass.prefill || static_cast<int>(i) == plan.num_prefill - 1) ? 1.0 : 0.0;
    work.attention_entry_steps = static_cast<double>(result.pass_entry_steps[i]);
    work.kv_written_entries = work.tokens * heads;
    work.kv_read_entries = static_cast<double>(result.pass_entries[i]) - work.kv_written_entries;
    const PassCost c = cost.pass_cost(work);
    t.passes.push_back(c);
    t.pass_start_s.push_back(now);
    now += c.time_s;
    (pass.prefill ? t.prefill_s : t.decode_s) += c.time_s;
    if (!pass.prefill) decode_steps.push_back(c.time_s);
    if (c.bound == std::string("compute")) ++t.compute_bound_passes;
    hbm.bytes_read += c.hbm_read_bytes;
    hbm.bytes_written += c.hbm_write_bytes;
    hbm.byte_seconds += static_cast<double>(result.pass_entries[i]) * entry_bytes * c.time_s;
    hbm.peak_read_bytes_per_s = std::max(hbm.peak_read_bytes_per_s, c.hbm_read_bytes / c.time_s);
  }
  hbm.mean_read_bytes_per_s = now > 0 ? hbm.bytes_read / now : 0.0;
  t.tiers.push_back(hbm);
  t.ttft_s = {t.prefill_s, t.prefill_s, t.prefill_s};
  t.tpot_s = percentiles_of(decode_steps);
  t.e2e_s = {now, now, now};
  t.weight_bytes = cost.weight_bytes();
  t.peak_hbm_bytes = (t.weight_bytes + static_cast<double>(result.peak_bytes)) / tensor_parallel;
  t.fits_hbm = t.peak_hbm_bytes <= hardware.tier(hardware.device.compute_tier).capacity_bytes;
  return t;
}

}  // namespace kvsim

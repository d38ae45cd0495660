#include "sim/replay/timing.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "util/error.h"

namespace kvsim {

namespace {

void check_lower_tier(const Hardware& hw, const Placement& placement) {
  const std::string& top = hw.device.compute_tier;
  if (placement.kind != Placement::Kind::kHbmOnly && (!hw.has_tier(placement.tier) || placement.tier == top)) {
    throw InputError("placement " + placement.spec() + ": hardware " +
                     (hw.source.empty() ? hw.device.name : hw.source) + " has no lower tier '" + placement.tier +
                     "' (attach one, e.g. [hardware] attach = cxl-gen5)");
  }
}

// One pass's KV entries in the compute tier and the lower tier, and what crosses the links
// (entries; before = kept from earlier passes, during = with the pass's own).
struct PassResidency {
  double hot_before = 0, cold_before = 0, cold_during = 0, fetch = 0, spill = 0;
};

PassResidency place_pass(const Placement& placement, double before, double during, double produced_before,
                         double hbm_kv_capacity, double cold_prev) {
  PassResidency r;
  r.hot_before = before;
  if (placement.kind == Placement::Kind::kOffload) {
    r.hot_before = std::min(before, hbm_kv_capacity);
    r.cold_before = before - r.hot_before;
    r.cold_during = std::max(0.0, during - hbm_kv_capacity);
    r.fetch = r.cold_before;                  // attended to, so streamed back
    r.spill = r.cold_during - r.cold_before;  // newly spilled
  } else if (placement.kind == Placement::Kind::kScoreTiering) {
    r.cold_before = produced_before - before;  // everything the policy let go
    r.cold_during = r.cold_before;
    r.spill = std::max(0.0, r.cold_before - cold_prev);  // demoted since the last pass
  }
  return r;
}

// Moves a pass's fetches and spills (bytes, all TP ranks) between the compute tier and the lower
// one, counting them on both tiers and every link of the path; returns the transfer time.
double move_between_tiers(const TimingInput& in, double fetch_bytes, double spill_bytes, TierTraffic& upper,
                          TierTraffic& lower, std::map<std::string, LinkTraffic>& links) {
  std::vector<LinkLoad> loads;
  // Each TP rank moves its share of the KV heads over its own link.
  const double tp = in.tensor_parallel;
  const double transfer_s =
      in.hierarchy.tier_transfer_time_s(upper.tier, lower.tier, fetch_bytes / tp, spill_bytes / tp, &loads);
  lower.bytes_read += fetch_bytes;
  lower.bytes_written += spill_bytes;
  upper.bytes_read += spill_bytes;  // spilled entries leave the compute tier
  upper.bytes_written += fetch_bytes;
  for (const LinkLoad& load : loads) {
    LinkTraffic& link = links[load.link];
    link.bytes += load.bytes;
    link.peak_bytes_per_s = std::max(link.peak_bytes_per_s, load.bytes / std::max(transfer_s, 1e-30));
  }
  return transfer_s;
}

// After the last pass: the request's totals, means, latencies and peak per TP rank.
void finish_timing(const TimingInput& in, double now, const std::vector<double>& decode_steps, double hbm_peak_kv_bytes,
                   TierTraffic upper, std::optional<TierTraffic> lower, std::map<std::string, LinkTraffic>& links,
                   PolicyTiming& t) {
  const Hardware& hw = in.hierarchy.hardware();
  const double tp = in.tensor_parallel;
  upper.mean_read_bytes_per_s = now > 0 ? upper.bytes_read / now : 0.0;
  if (lower) lower->mean_read_bytes_per_s = now > 0 ? lower->bytes_read / now : 0.0;
  t.tiers.push_back(std::move(upper));
  if (lower) t.tiers.push_back(*lower);
  for (auto& [name, link] : links) {
    link.link = name;
    link.mean_bytes_per_s = now > 0 ? link.bytes / now : 0.0;
    t.links.push_back(link);
  }
  t.ttft_s = {t.prefill_s, t.prefill_s, t.prefill_s};
  t.tpot_s = percentiles_of(decode_steps);
  t.e2e_s = {now, now, now};
  t.weight_bytes = in.cost.weight_bytes();
  t.peak_hbm_bytes = (t.weight_bytes + hbm_peak_kv_bytes) / tp;
  t.fits_hbm = t.peak_hbm_bytes <= hw.tier(hw.device.compute_tier).capacity_bytes * (1.0 - in.placement.hbm_reserve);
  if (!t.ledger.empty()) {
    t.offloaded_entries = t.ledger.back().lower_entries;
    t.evicted_entries = t.ledger.back().evicted_entries;
  }
}

}  // namespace

PolicyTiming time_request(const TimingInput& in, const PolicyResult& result) {
  const Hardware& hw = in.hierarchy.hardware();
  const std::string& top = hw.device.compute_tier;
  const Placement& placement = in.placement;
  const bool tiered = placement.kind != Placement::Kind::kHbmOnly;
  check_lower_tier(hw, placement);
  const double tp = in.tensor_parallel;
  const double heads = static_cast<double>(in.model.num_layers) * in.model.num_kv_heads;
  const double entry_bytes = static_cast<double>(in.model.entry_bytes());
  // KV entries the compute tiers of all TP ranks can hold next to the weights.
  const double hbm_kv_capacity = std::max(
      0.0, (hw.tier(top).capacity_bytes * (1.0 - placement.hbm_reserve) * tp - in.cost.weight_bytes()) / entry_bytes);

  PolicyTiming t;
  TierTraffic upper{top};
  TierTraffic lower{placement.tier};
  std::map<std::string, LinkTraffic> links;
  double now = 0.0;
  double cold_prev = 0.0;  // lower-tier entries after the previous pass
  double hbm_peak_kv_bytes = 0.0;
  std::vector<double> decode_steps;
  for (std::size_t i = 0; i < in.plan.passes.size(); ++i) {
    const Pass& pass = in.plan.passes[i];
    const double produced_before = static_cast<double>(pass.begin) * heads;
    const double fresh = static_cast<double>(pass.tokens()) * heads;
    const double during = static_cast<double>(result.pass_entries[i]);
    const double before = during - fresh;
    // Bytes per kept entry relative to a full-precision one (Policy::stored): 1 unless the policy
    // compresses (or no pass_bytes given); the pass's own entries are always at full precision.
    const double kept_scale =
        before > 0 && i < result.pass_bytes.size() ? (result.pass_bytes[i] / entry_bytes - fresh) / before : 1.0;
    const PassResidency r = place_pass(placement, before, during, produced_before, hbm_kv_capacity, cold_prev);
    PassWork work;
    work.tokens = static_cast<double>(pass.tokens());
    work.logits_tokens = (!pass.prefill || static_cast<int>(i) == in.plan.num_prefill - 1) ? 1.0 : 0.0;
    work.attention_entry_steps = static_cast<double>(result.pass_entry_steps[i]);
    work.kv_written_entries = fresh;
    work.kv_read_entries = r.hot_before * kept_scale;
    PassCost c = in.cost.pass_cost(work);

    const double transfer_s = tiered && (r.fetch > 0 || r.spill > 0)
                                  ? move_between_tiers(in, r.fetch * kept_scale * entry_bytes,
                                                       r.spill * kept_scale * entry_bytes, upper, lower, links)
                                  : 0.0;
    // Fetches the pass needs are serialised with compute unless prefetched; demotions are write-backs.
    c.time_s =
        c.time_with_transfer_s(transfer_s, placement.prefetch || placement.kind == Placement::Kind::kScoreTiering);

    PassLedger entry;
    entry.hbm_entries = placement.kind == Placement::Kind::kOffload ? during - r.cold_during : during;
    entry.lower_entries = r.cold_during;
    entry.evicted_entries = produced_before + fresh - entry.hbm_entries - entry.lower_entries;
    entry.link_bytes = (r.fetch + r.spill) * kept_scale * entry_bytes;
    entry.transfer_s = transfer_s;
    t.ledger.push_back(entry);
    // The compute tier holds the pass's fresh entries (full precision) and kept ones (kept_scale).
    const double hbm_kv_bytes =
        (std::max(0.0, entry.hbm_entries - fresh) * kept_scale + std::min(entry.hbm_entries, fresh)) * entry_bytes;
    hbm_peak_kv_bytes = std::max(hbm_peak_kv_bytes, hbm_kv_bytes);

    t.passes.push_back(c);
    t.pass_start_s.push_back(now);
    now += c.time_s;
    (pass.prefill ? t.prefill_s : t.decode_s) += c.time_s;
    if (!pass.prefill) decode_steps.push_back(c.time_s);
    if (c.compute_s >= c.memory_s) ++t.compute_bound_passes;
    upper.bytes_read += c.hbm_read_bytes;
    upper.bytes_written += c.hbm_write_bytes;
    upper.byte_seconds += hbm_kv_bytes * c.time_s;
    upper.peak_kv_bytes = std::max(upper.peak_kv_bytes, hbm_kv_bytes);
    upper.peak_read_bytes_per_s = std::max(upper.peak_read_bytes_per_s, c.hbm_read_bytes / c.time_s);
    lower.byte_seconds += r.cold_during * kept_scale * entry_bytes * c.time_s;
    lower.peak_kv_bytes = std::max(lower.peak_kv_bytes, r.cold_during * kept_scale * entry_bytes);
    lower.peak_read_bytes_per_s = std::max(lower.peak_read_bytes_per_s, r.fetch * kept_scale * entry_bytes / c.time_s);
    cold_prev = r.cold_during;
  }
  finish_timing(in, now, decode_steps, hbm_peak_kv_bytes, std::move(upper),
                tiered ? std::optional<TierTraffic>(std::move(lower)) : std::nullopt, links, t);
  return t;
}

}  // namespace kvsim

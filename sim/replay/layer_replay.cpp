#include "sim/replay/layer_replay.h"

#include <algorithm>
#include <stdexcept>

namespace kvsim {

namespace {

std::vector<int> untraced_groups(const LayerReplayInput& input, const Policy& policy) {
  std::vector<int> groups = policy.untraced_head_groups(input.model, input.layer);
  int total = 0;
  for (int g : groups) {
    if (g < 0) throw std::logic_error(policy.spec() + ": untraced_head_groups returned a negative group");
    total += g;
  }
  if (groups.empty() || total != input.model.num_kv_heads) {
    throw std::logic_error(policy.spec() + ": untraced_head_groups does not sum to num_kv_heads");
  }
  return groups;
}

}  // namespace

LayerReplay replay_layer(const LayerReplayInput& input, const Policy& policy) {
  const PassPlan& plan = input.plan;
  // A traced layer has one vector per KV head. An untraced one has one per head group whose heads
  // keep equal counts (Policy::untraced_head_groups): count one vector per group, multiply.
  // A policy that keeps kv_copies() per KV head (gqa=expand) has that many vectors per traced KV head,
  // and an untraced group counts its copies too.
  const int copies = policy.kv_copies(input.model);
  if (copies < 1) throw std::logic_error(policy.spec() + ": kv_copies must be >= 1");
  std::vector<int> multiplicity;
  if (input.trace != nullptr) {
    multiplicity.assign(static_cast<std::size_t>(input.model.num_kv_heads) * static_cast<std::size_t>(copies), 1);
  } else {
    multiplicity = untraced_groups(input, policy);
    for (int& m : multiplicity) m *= copies;
  }
  const EvictionPoints points = policy.eviction_points();
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());

  LayerReplay out;
  out.pass_entries.resize(plan.passes.size());
  out.pass_entry_steps.resize(plan.passes.size());
  const bool compresses = policy.compresses();
  const auto full_entry_bytes = static_cast<double>(input.model.entry_bytes());
  if (compresses) out.pass_bytes.resize(plan.passes.size());
  LayerResidency residency(multiplicity.size());
  const std::unique_ptr<PolicyState> state = policy.make_state();
  bool evicted_since_snapshot = true;
  std::int64_t snapshot_begin = 0;
  auto next_eval = input.eval_positions.begin();

  for (std::size_t p = 0; p < plan.passes.size(); ++p) {
    const Pass& pass = plan.passes[p];
    const std::int64_t len = pass.tokens();
    std::int64_t during = 0;
    std::int64_t steps = 0;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      const auto before = static_cast<std::int64_t>(residency[h].size());
      // Query t = a + k sees the kept entries plus k + 1 entries of its own pass.
      steps += (before * len + len * (len + 1) / 2) * multiplicity[h];
      during += (before + len) * multiplicity[h];
      if (compresses) {
        // Policy::stored's rule: kept entries at their stored bytes, the pass's own at full precision.
        const double kept_bytes = policy.stored(input.model, input.request, prefill, before).bytes.total();
        const double fresh = static_cast<double>(len);
        out.pass_bytes[p] += (kept_bytes + fresh * full_entry_bytes) * multiplicity[h];
        out.footprint_byte_steps +=
            (fresh * kept_bytes + full_entry_bytes * fresh * (fresh + 1.0) / 2.0) * multiplicity[h];
      }
    }
    out.footprint_entry_steps += steps;
    out.pass_entry_steps[p] = steps;
    out.pass_entries[p] = during;

    if (input.trace != nullptr && next_eval != input.eval_positions.end() && *next_eval < pass.end) {
      if (evicted_since_snapshot) {
        out.snapshots.push_back(std::make_unique<LayerResidency>(residency));
        snapshot_begin = pass.begin;
        evicted_since_snapshot = false;
      }
      for (; next_eval != input.eval_positions.end() && *next_eval < pass.end; ++next_eval) {
        out.visible.push_back({out.snapshots.back().get(), snapshot_begin, *next_eval});
      }
    }

    for (auto& head : residency) {
      for (std::int64_t t = pass.begin; t < pass.end; ++t) head.push_back(static_cast<std::int32_t>(t));
    }
    const EvictionContext ctx{input.model, input.request,          input.layer, input.trace, pass, prefill,
                              state.get(), input.layer_statistics, input.shared};
    policy.observe(ctx, residency);
    if (points.after(pass, plan.num_prefill)) {
      policy.evict(ctx, residency);
      evicted_since_snapshot = true;
    }
  }
  out.final_residency = std::move(residency);
  return out;
}

}  // namespace kvsim

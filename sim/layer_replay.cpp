#include "sim/layer_replay.h"

#include <algorithm>

namespace kvsim {

LayerReplay replay_layer(const LayerReplayInput& input, const Policy& policy) {
  const PassPlan& plan = input.plan;
  const int heads = input.trace != nullptr ? input.model.num_kv_heads : 1;
  // An untraced layer's KV heads all keep the same number of entries: count one, multiply.
  const std::int64_t multiplicity = input.trace != nullptr ? 1 : input.model.num_kv_heads;
  const EvictionPoints points = policy.eviction_points();
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());

  LayerReplay out;
  out.pass_entries.resize(plan.passes.size());
  out.pass_entry_steps.resize(plan.passes.size());
  LayerResidency residency(static_cast<std::size_t>(heads));
  const std::unique_ptr<PolicyState> state = policy.make_state();
  bool evicted_since_snapshot = true;
  std::int64_t snapshot_begin = 0;
  auto next_eval = input.eval_positions.begin();

  for (std::size_t p = 0; p < plan.passes.size(); ++p) {
    const Pass& pass = plan.passes[p];
    const std::int64_t len = pass.tokens();
    std::int64_t during = 0;
    std::int64_t steps = 0;
    for (const auto& head : residency) {
      const auto before = static_cast<std::int64_t>(head.size());
      // Query t = a + k sees the kept entries plus k + 1 entries of its own pass.
      steps += (before * len + len * (len + 1) / 2) * multiplicity;
      during += (before + len) * multiplicity;
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
    const EvictionContext ctx{input.model, input.request, input.layer, input.trace, pass, prefill, state.get()};
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

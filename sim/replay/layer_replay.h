#pragma once
// Replays one layer of one request under one policy: the KV ledger of that layer, pass by pass.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "policies/pass_plan.h"
#include "policies/policy.h"

namespace kvsim {

// What an evaluation query at position t sees: the cache snapshot taken before the pass that
// produced it, plus positions [append_begin, t] appended since (the causal prefix of its pass and
// any pass since the snapshot that evicted nothing).
struct VisibleSet {
  const LayerResidency* snapshot = nullptr;
  std::int64_t append_begin = 0;
  std::int64_t position = 0;
};

struct LayerReplay {
  // Entries resident during each pass (kept before the pass + the pass's tokens), summed over the
  // layer's KV heads; index = pass.
  std::vector<std::int64_t> pass_entries;
  // Sum over the layer's KV heads of V(t) for the pass's queries (attention work); index = pass.
  std::vector<std::int64_t> pass_entry_steps;
  std::int64_t footprint_entry_steps = 0;  // sum over heads of F = sum_t V(t)
  // Only for a policy that compresses() (Policy::stored gives the bytes; empty / 0 otherwise):
  // resident bytes during each pass and the byte-weighted footprint sum_t bytes(V(t)).
  std::vector<double> pass_bytes;
  double footprint_byte_steps = 0.0;
  LayerResidency final_residency;  // at the end of the request
  std::vector<std::unique_ptr<LayerResidency>> snapshots;
  std::vector<VisibleSet> visible;  // one per evaluation position, in order
};

struct LayerReplayInput {
  const ModelShape& model;
  const RequestInfo& request;
  const PassPlan& plan;
  int layer = 0;
  const LayerTrace* trace = nullptr;                      // nullptr: untraced, one representative vector per head group
  std::span<const std::int64_t> eval_positions;           // sorted; only used with a trace
  std::span<const LayerStatistic> layer_statistics = {};  // EvictionContext::layer_statistics
  SharedResults* shared = nullptr;                        // EvictionContext::shared
};

LayerReplay replay_layer(const LayerReplayInput& input, const Policy& policy);

}  // namespace kvsim

#pragma once
// Fidelity proxies (DESIGN.md §2): how much of the full-cache attention the kept entries carry
// (attention recall) and how far the attention output moves when only they are attended
// (output error), for every evaluation query and query head.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "policies/policy.h"
#include "sim/replay/layer_replay.h"
#include "traces/trace.h"

namespace kvsim {

// How a traced layer's residency vectors serve the query heads of one KV head's group: one vector
// for the whole group, or one per query head for a policy with kv_copies() = G (gqa=expand), query
// head g then reading copy g (policies/policy.h: copy c of KV head h at index h x copies + c).
struct ResidencySets {
  int sets = 1;           // vectors per KV head
  int heads_per_set = 1;  // consecutive query heads of the group reading each

  ResidencySets(const Policy& policy, const ModelShape& model)
      : sets(policy.kv_copies(model) == 1 ? 1 : model.group_size()), heads_per_set(model.group_size() / sets) {}
  std::size_t index(int kv_head, int set) const {
    return static_cast<std::size_t>(kv_head) * static_cast<std::size_t>(sets) + static_cast<std::size_t>(set);
  }
};

struct FidelitySamples {
  std::vector<double> recall;        // sum of full-cache probabilities over visible entries
  std::vector<double> output_error;  // ||o' - o|| / ||o||, o' renormalised over visible entries
};

// For one KV head of one traced layer: computes the full-cache attention of the group's query
// heads at `eval_positions` once, then each policy's samples from its visible sets.
// `replays[p].visible` must hold one entry per evaluation position. Appends to out[p]. A policy
// that compresses() is measured on its stored K/V (sim/replay/fidelity_compressed.h).
void measure_head_fidelity(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                           const LayerTrace& trace, int kv_head, std::span<const std::int64_t> eval_positions,
                           std::span<const Policy* const> policies, std::span<const LayerReplay* const> replays,
                           std::vector<FidelitySamples>& out);

// Throws InputError("<trace.where()>: KV head <h>: <what> is not finite ..."): a trace whose
// magnitudes overflow float32 in the attention is refused, never reported as NaN.
[[noreturn]] void fail_non_finite(const LayerTrace& trace, int kv_head, const std::string& what);

}  // namespace kvsim

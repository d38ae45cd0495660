#pragma once
// Fidelity of a policy that compresses its stored entries (Policy::compresses): attention over the
// visible entries with each entry's K and V read back from the policy's storage (dequantized,
// pruned channels) where Policy::stored puts it in the compressed class, from the trace otherwise.
#include <cstdint>
#include <span>

#include "policies/policy.h"
#include "sim/replay/fidelity.h"

namespace kvsim {

// For one KV head: appends one (recall, output error) per row of `probs` (rows ordered (query head
// in group, evaluation query), as in measure_head_fidelity) to `out`. `probs` holds the full-cache
// probabilities and `full_out` the full-cache outputs of those rows. Evaluation queries are decode
// positions, so each one's own entry is the pass in flight (full precision) and every other visible
// entry is stored.
void measure_compressed_fidelity(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                                 const LayerTrace& trace, int kv_head, std::span<const std::int64_t> eval_positions,
                                 const Policy& policy, const LayerReplay& replay, const HeadMatrix& queries,
                                 const HeadMatrix& probs, const HeadMatrix& full_out, FidelitySamples& out);

}  // namespace kvsim

#pragma once
// A trace-derived stand-in for DuoAttention's trained gate values, for the head-mask policies when
// no mask file is given: how much attention a KV head would lose as a streaming head.
//
// For each observation query t (the last prompt positions) of each query head of the KV head's GQA
// group, the causal softmax attention of t over positions [0, t] is split into what a streaming
// head keeps (the first `sinks` positions and the `window` most recent, t - window < j <= t) and
// the rest; the score is the attention mass of the rest, averaged over the queries and the group:
// in [0, 1], high for retrieval heads, near 0 for sink/local heads. DuoAttention's gate is trained
// to the same end (keep the full cache where a streaming head changes the output most), so its
// ranking of heads is the target; the values are not comparable with trained ones.
#include <cstdint>
#include <span>
#include <vector>

#include "traces/trace.h"

namespace kvsim {

// One score per KV head. REQUIRES: the trace stores a query at every position of `observed`.
// Throws InputError naming the layer and position otherwise.
std::vector<double> streaming_loss_scores(const LayerTrace& trace, const ModelShape& model,
                                          std::span<const std::int64_t> observed, std::int64_t sinks,
                                          std::int64_t window);

}  // namespace kvsim

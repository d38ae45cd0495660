#pragma once
// Observation-window attention scores: how much attention the queries of a recent window pay to
// each cached entry. The scoring kernel of SnapKV (and of PyramidKV and other window-based methods).
#include <cstdint>
#include <span>
#include <vector>

#include "traces/trace.h"

namespace kvsim {

struct WindowQueries {
  std::span<const HeadMatrix* const> heads;  // the query heads of one GQA group
  std::span<const std::int64_t> rows;        // row in each head's matrix, one per window position
};

// The window queries of a GQA group stacked head-major ([group x window, d]) and scaled by
// 1/sqrt(d), ready for one GEMM against the keys.
HeadMatrix scaled_window_queries(const WindowQueries& queries, Eigen::Index head_dim);

// For one KV head: `resident` are the cached positions (sorted); the last `window` of them are the
// observation window, whose queries are `queries`. Each window query attends causally (softmax of
// q·k/sqrt(d) over the resident entries at positions <= its own). Returns, for each non-window
// entry j, the attention it receives summed over the window queries and averaged over the group's
// query heads (size resident.size() - window). Computed in float32 with one GEMM per group.
std::vector<float> window_attention_scores(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                           std::int64_t window, const WindowQueries& queries);

}  // namespace kvsim

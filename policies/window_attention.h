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

// For one KV head: `resident` are the cached positions (sorted); the last `window` of them are the
// observation window, whose queries are `queries`. Each window query attends causally (softmax of
// q·k/sqrt(d) over the resident entries at positions <= its own). Returns, for each non-window
// entry j, the attention it receives summed over the window queries and averaged over the group's
// query heads (size resident.size() - window). Computed in float32 with one GEMM per group.
std::vector<float> window_attention_scores(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                           std::int64_t window, const WindowQueries& queries);

// window_attention_scores plus, from the same softmax, for EVERY resident entry j (window
// included) the sum over the window queries and the group's query heads of attention(q, j)^2
// (size resident.size(), accumulated in double). KV-Compress ranks entries by these squares ("L2-sum")
// and DBudgetKV compares Frobenius norms of the window's attention restricted to kept columns,
// which are sums of them.
struct WindowAttention {
  std::vector<float> scores;
  std::vector<double> squares;
};
WindowAttention window_attention_with_squares(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                              std::int64_t window, const WindowQueries& queries);

}  // namespace kvsim

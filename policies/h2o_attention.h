#pragma once
// Attention received per cached entry from the queries of one forward pass: the scoring kernel of
// H2O (accumulated attention). Unlike window_attention.h, the queries may be any subset of the
// pass (H2O accumulates over all of them) and the sums are added into a caller-owned accumulator.
#include <cstdint>
#include <span>

#include "traces/trace.h"

namespace kvsim {

struct PassQueries {
  std::span<const HeadMatrix* const> heads;  // the query heads of one GQA group
  std::span<const std::int64_t> rows;        // row of each query in the heads' matrices
  std::span<const std::int64_t> positions;   // its token position: ascending, inside the pass
};

// For one KV head and one forward pass starting at `pass_begin`: `visible` lists the entries the
// pass attends to, the `cached` ones resident before it followed by the pass's own positions
// (pass_begin, pass_begin + 1, ...). The query at position t sees the cached entries and the pass
// positions <= t (causal softmax of q.k/sqrt(d)). Adds to score[j] the probability the queries give
// visible entry j, summed over the queries and averaged over the group's heads. Probabilities are
// float32 (one GEMM per block of queries); the sums are double so that long accumulations do not
// lose the small contributions.
void add_pass_attention(const HeadMatrix& keys, std::span<const std::int32_t> visible, std::int64_t cached,
                        std::int64_t pass_begin, const PassQueries& queries, std::span<double> score);

}  // namespace kvsim

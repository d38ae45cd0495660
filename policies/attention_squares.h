#pragma once
// Squared window attention per cached entry: the column sums of the squared attention matrix of an
// observation window. KV-Compress ranks entries by it ("L2-sum" of the attention they receive) and
// DBudgetKV's halting rule compares Frobenius norms of the window's attention matrix restricted to
// the kept columns, which are sums of these values.
#include <cstdint>
#include <span>
#include <vector>

#include "policies/policy.h"
#include "policies/window_attention.h"

namespace kvsim {

// For one KV head: `resident` are the cached positions (sorted), the last `window` of them the
// observation window whose queries are `queries` (causal, softmax over the resident entries as in
// window_attention_scores). Returns for EVERY resident entry j (window included) the sum over the
// window queries and the group's query heads of attention(q, j)^2 (size resident.size()).
std::vector<double> window_attention_squares(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                             std::int64_t window, const WindowQueries& queries);

// window_attention_squares for KV head `kv_head` of ctx's traced layer, the window being the last
// `window_count` resident entries. Throws InputError naming `policy`'s spec if the trace lacks one
// of the window's queries. REQUIRES ctx.trace.
std::vector<double> head_attention_squares(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                           std::span<const std::int32_t> resident, std::int64_t window_count);

}  // namespace kvsim

#pragma once
// The SnapKV machinery shared by snapkv and the policies built on its scores (pyramidkv, adakv,
// chunkkv): the observation window, the pooled window-attention scores, and SnapKV's per-head
// selection at a given capacity.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "policies/params.h"
#include "policies/policy.h"
#include "policies/schedule.h"
#include "policies/window_attention.h"

namespace kvsim {

struct SnapKvScoring {      // read() from the spec; each policy's defaults are in its parameter table
  std::int64_t window = 0;  // observation window: the most recent queries, always kept
  int kernel = 1;           // pooling kernel along positions (odd)
  bool max_pooling = true;  // max_pool, else avg_pool

  // Reads `window`, `kernel` (read_pool_kernel) and `pooling=max|avg` (defaults: the policy's
  // table); fails on a window < 1.
  static SnapKvScoring read(PolicyArgs& args);
  // Fails on a token budget that does not exceed the window (the window is part of it).
  void check_budget(const PolicyArgs& args, const Budget& budget) const;
  // `scores` pooled along positions with this kernel and pooling.
  std::vector<float> pool(std::span<const float> scores) const;
};

// Reads a pooling kernel along positions from `key`: fails unless it is an odd integer in
// [1, kMaxPoolKernel] (max_pool/avg_pool's contract; the bound keeps it an int). Default: the table's.
int read_pool_kernel(PolicyArgs& args, const std::string& key);

// First position of the observation window at this eviction point. After a chunk with
// prefill=chunk it is that chunk's last `window` tokens (a chunk never scores with queries of an
// earlier one); otherwise the last `window` of everything processed.
std::int64_t snapkv_window_begin(const EvictionContext& ctx, std::int64_t window, PrefillEviction mode);

// How many of the sorted `resident` positions lie in the window (>= window_begin).
std::int64_t snapkv_window_count(std::span<const std::int32_t> resident, std::int64_t window_begin);

// Scores of one KV head's resident entries before its observation window (resident.size() - window
// values, oldest first).
using WindowedHeadScorer =
    std::function<std::vector<float>(int kv_head, std::span<const std::int32_t> resident, std::int64_t window)>;

// Evicts every KV head of the layer to `capacity` entries, heads in parallel. An untraced layer keeps
// the newest entries (only the count matters); a traced one keeps the first `sinks` entries, the
// observation window (entries at positions >= window_begin) and the best-scored rest.
void evict_heads_keeping_window(const EvictionContext& ctx, LayerResidency& residency, std::int64_t capacity,
                                std::int64_t window_begin, std::int64_t sinks, const WindowedHeadScorer& score);

// The stored query rows of the observation window (the last `window_count` resident positions) of
// KV head `kv_head`'s layer, in the trace's query matrices. REQUIRES ctx.trace. Throws InputError
// naming `policy`'s spec if the trace lacks one of them.
std::vector<std::int64_t> window_query_rows(const EvictionContext& ctx, const Policy& policy,
                                            std::span<const std::int32_t> resident, std::int64_t window_count);

// The query heads of KV head `kv_head`'s GQA group. REQUIRES ctx.trace.
std::vector<const HeadMatrix*> group_query_heads(const EvictionContext& ctx, int kv_head);

// window_attention_with_squares for KV head `kv_head` of ctx's traced layer (scores not pooled),
// the window being the last `window_count` resident entries. REQUIRES ctx.trace. Throws
// InputError naming `policy`'s spec if the trace lacks one of the window's queries.
WindowAttention head_window_attention(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                      std::span<const std::int32_t> resident, std::int64_t window_count);

// Pooled window-attention scores of the first resident.size() - window_count entries of KV head
// `kv_head` (the window's queries vote; GQA: mean over the group). REQUIRES ctx.trace.
// Throws InputError naming `policy`'s spec if the trace lacks a window query.
std::vector<float> snapkv_head_scores(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                      std::span<const std::int32_t> resident, std::int64_t window_count,
                                      const SnapKvScoring& scoring);

// Base of the SnapKV-scored policies (snapkv, pyramidkv, adakv, chunkkv, lava): their canonical
// spec (PolicyArgs::canonical()), budget, scorer and eviction points, and the queries the scorer needs.
class SnapKvScoredPolicy : public Policy {
 public:
  SnapKvScoredPolicy(std::string spec, Budget budget, SnapKvScoring scoring, EvictionPoints points)
      : spec_(std::move(spec)), budget_(budget), scoring_(scoring), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override;

 protected:
  // The capacity of DESIGN.md §4 after ctx's pass, the window included.
  std::int64_t uniform_capacity(const EvictionContext& ctx) const;

  std::string spec_;
  Budget budget_;
  SnapKvScoring scoring_;
  EvictionPoints points_;
};

// SnapKV's eviction at `capacity` entries per head: every head over capacity keeps its window plus
// its top-scored other entries (an untraced layer keeps the most recent `capacity`: only the count
// matters there). Parallel over heads; the result does not depend on the thread count.
void snapkv_evict_to_capacity(const EvictionContext& ctx, const Policy& policy, LayerResidency& residency,
                              std::int64_t capacity, const SnapKvScoring& scoring, PrefillEviction mode);

// The query positions SnapKV-style scoring needs at `points` (Policy::add_required_queries).
void snapkv_required_queries(const RequestInfo& request, std::span<const Pass> prefill, std::int64_t window,
                             const EvictionPoints& points, std::vector<std::int64_t>* positions);

}  // namespace kvsim

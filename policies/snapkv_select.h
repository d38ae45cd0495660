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

// GQA (issue 19): how a policy that scores a KV head's entries with its group's query heads treats the
// group. mean / max: one cache per KV head, scored by the mean / maximum over the group's query heads.
// expand: each query head keeps its own selection from its own copy of the KV head (the authors'
// code repeats K/V per query head before the cache, e.g. transformers' repeat_kv), so the policy
// keeps Policy::kv_copies() = G copies and its footprint and bytes count the G-fold memory.
enum class GqaMode { kMean, kMax, kExpand };

struct SnapKvScoring {      // read() from the spec; each policy's defaults are in its parameter table
  std::int64_t window = 0;  // observation window: the most recent queries, always kept
  int kernel = 1;           // pooling kernel along positions (odd)
  bool max_pooling = true;  // max_pool, else avg_pool
  // How the GQA group scores (below). snapkv, pyramidkv and adakv read `gqa=` (read_gqa); the other
  // users of this scorer keep the group mean (docs/policy-sources.md "GQA" says why).
  GqaMode gqa = GqaMode::kMean;

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

// The window queries of query head `query_head` of ctx's traced layer at `rows` (window_query_rows),
// one matrix row each, times `scale`: what scorers that build their own attention per query head
// (obcache, rkv) multiply with the keys. REQUIRES ctx.trace.
HeadMatrix window_queries(const EvictionContext& ctx, int query_head, std::span<const std::int64_t> rows, float scale);

// Reads `gqa=` among `choices` (a policy offers only the modes some code uses; default: its table).
GqaMode read_gqa(PolicyArgs& args, const std::vector<std::string>& choices = {"mean", "max", "expand"});
// Policy::kv_copies under `mode`: the group size for expand, else 1.
int gqa_copies(GqaMode mode, const ModelShape& model);
// Residency vector `index` under `mode`: its KV head and the query heads whose scores it combines.
struct GqaScoredHeads {
  int kv_head = 0;
  int first_query_head = 0;
  int query_heads = 1;
};
GqaScoredHeads gqa_scored_heads(GqaMode mode, const ModelShape& model, int index);
// Folds one query head's `scores` into `total` (the first head: copies them), then, after the last
// (`last` true), divides by `count` for mean.
void gqa_combine(GqaMode mode, std::span<const double> scores, bool first, bool last, int count,
                 std::vector<double>& total);

// window_attention_with_squares for KV head `kv_head` of ctx's traced layer (scores not pooled),
// the window being the last `window_count` resident entries. REQUIRES ctx.trace. Throws
// InputError naming `policy`'s spec if the trace lacks one of the window's queries.
WindowAttention head_window_attention(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                      std::span<const std::int32_t> resident, std::int64_t window_count);

// Pooled window-attention scores of the first resident.size() - window_count entries of residency
// vector `index` (the window's queries vote; GQA by scoring.gqa, gqa_scored_heads: the group's mean or
// maximum of the window-summed attention, pooled after, or under expand the copy's own query head).
// REQUIRES ctx.trace. Throws InputError naming `policy`'s spec if the trace lacks a window query.
std::vector<float> snapkv_head_scores(const EvictionContext& ctx, const Policy& policy, int index,
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
  int kv_copies(const ModelShape& model) const override { return gqa_copies(scoring_.gqa, model); }
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

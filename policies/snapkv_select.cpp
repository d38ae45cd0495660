#include "policies/snapkv_select.h"

#include <tbb/parallel_for.h>
#include <algorithm>
#include <string>

#include "policies/leverage.h"
#include "policies/select.h"
#include "policies/window_attention.h"
#include "util/error.h"

namespace kvsim {

SnapKvScoring SnapKvScoring::read(PolicyArgs& args) {
  const std::int64_t window = args.get_int("window");
  const int kernel = read_pool_kernel(args, "kernel");
  const bool max_pooling = args.get_choice("pooling", {"max", "avg"}) == "max";
  if (window < 1) args.fail("window", "must be >= 1");
  return {window, kernel, max_pooling};
}

int read_pool_kernel(PolicyArgs& args, const std::string& key) {
  const std::int64_t kernel = args.get_int(key);
  if (kernel < 1 || kernel % 2 == 0 || kernel > kMaxPoolKernel) {
    args.fail(key, "must be an odd integer in [1, " + std::to_string(kMaxPoolKernel) + "]");
  }
  return static_cast<int>(kernel);
}

void SnapKvScoring::check_budget(const PolicyArgs& args, const Budget& budget) const {
  if (!budget.is_fraction && budget.tokens <= window) {
    args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
  }
}

std::vector<float> SnapKvScoring::pool(std::span<const float> scores) const {
  return max_pooling ? max_pool(scores, kernel) : avg_pool(scores, kernel);
}

void SnapKvScoredPolicy::add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                                              std::vector<std::int64_t>* positions) const {
  snapkv_required_queries(request, prefill, scoring_.window, points_, positions);
}

std::int64_t SnapKvScoredPolicy::uniform_capacity(const EvictionContext& ctx) const {
  return budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, scoring_.window);
}

std::int64_t snapkv_window_begin(const EvictionContext& ctx, std::int64_t window, PrefillEviction mode) {
  const bool chunk_window = ctx.pass.prefill && mode == PrefillEviction::kChunk;
  return ctx.pass.end - (chunk_window ? std::min(window, ctx.pass.tokens()) : window);
}

std::int64_t snapkv_window_count(std::span<const std::int32_t> resident, std::int64_t window_begin) {
  return static_cast<std::int64_t>(resident.end() - std::lower_bound(resident.begin(), resident.end(), window_begin));
}

std::vector<std::int64_t> window_query_rows(const EvictionContext& ctx, const Policy& policy,
                                            std::span<const std::int32_t> resident, std::int64_t window_count) {
  const LayerTrace& trace = *ctx.trace;
  std::vector<std::int64_t> rows;
  for (std::int64_t t : resident.last(static_cast<std::size_t>(window_count))) {
    const std::int64_t row = trace.query_row(t);
    if (row < 0)
      throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                       std::to_string(t) + ", which " + policy.spec() + " scores with");
    rows.push_back(row);
  }
  return rows;
}

std::vector<const HeadMatrix*> group_query_heads(const EvictionContext& ctx, int kv_head) {
  const int group = ctx.model.group_size();
  std::vector<const HeadMatrix*> heads;
  for (int g = kv_head * group; g < (kv_head + 1) * group; ++g) heads.push_back(&ctx.trace->queries[g]);
  return heads;
}

HeadMatrix window_queries(const EvictionContext& ctx, int query_head, std::span<const std::int64_t> rows, float scale) {
  const HeadMatrix& queries = ctx.trace->queries[static_cast<std::size_t>(query_head)];
  HeadMatrix q(static_cast<Eigen::Index>(rows.size()), queries.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) q.row(static_cast<Eigen::Index>(i)) = queries.row(rows[i]) * scale;
  return q;
}

GqaMode read_gqa(PolicyArgs& args, const std::vector<std::string>& choices) {
  const std::string mode = args.get_choice("gqa", choices);
  return mode == "mean" ? GqaMode::kMean : mode == "max" ? GqaMode::kMax : GqaMode::kExpand;
}

int gqa_copies(GqaMode mode, const ModelShape& model) { return mode == GqaMode::kExpand ? model.group_size() : 1; }

GqaScoredHeads gqa_scored_heads(GqaMode mode, const ModelShape& model, int index) {
  const int group = model.group_size();
  if (mode == GqaMode::kExpand) return {index / group, index, 1};
  return {index, index * group, group};
}

void gqa_combine(GqaMode mode, std::span<const double> scores, bool first, bool last, int count,
                 std::vector<double>& total) {
  if (first) {
    total.assign(scores.begin(), scores.end());
  } else {
    for (std::size_t i = 0; i < total.size(); ++i)
      total[i] = mode == GqaMode::kMax ? std::max(total[i], scores[i]) : total[i] + scores[i];
  }
  if (last && mode == GqaMode::kMean) {
    for (double& x : total) x /= static_cast<double>(count);
  }
}

std::vector<float> snapkv_head_scores(const EvictionContext& ctx, const Policy& policy, int index,
                                      std::span<const std::int32_t> resident, std::int64_t window_count,
                                      const SnapKvScoring& scoring) {
  const LayerTrace& trace = *ctx.trace;
  const GqaScoredHeads scored = gqa_scored_heads(scoring.gqa, ctx.model, index);
  const HeadMatrix& keys = trace.keys[static_cast<std::size_t>(scored.kv_head)];
  const std::vector<std::int64_t> rows = window_query_rows(ctx, policy, resident, window_count);
  if (scoring.gqa == GqaMode::kMean) {  // the group's mean in one GEMM (window_attention_scores averages)
    const std::vector<const HeadMatrix*> heads = group_query_heads(ctx, scored.kv_head);
    return scoring.pool(window_attention_scores(keys, resident, window_count, {heads, rows}));
  }
  // max over the group, or expand's one query head: each head's window-summed attention, combined, then
  // pooled (as KVCache-Factory's _grouped_window_attn_cache reduces the group before pooling).
  std::vector<double> total;
  for (int k = 0; k < scored.query_heads; ++k) {
    const HeadMatrix* head =
        &trace.queries[static_cast<std::size_t>(scored.first_query_head) + static_cast<std::size_t>(k)];
    const std::vector<float> s = window_attention_scores(keys, resident, window_count, {{&head, 1}, rows});
    gqa_combine(scoring.gqa, std::vector<double>(s.begin(), s.end()), k == 0, k + 1 == scored.query_heads,
                scored.query_heads, total);
  }
  return scoring.pool(std::vector<float>(total.begin(), total.end()));
}

WindowAttention head_window_attention(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                      std::span<const std::int32_t> resident, std::int64_t window_count) {
  const std::vector<const HeadMatrix*> heads = group_query_heads(ctx, kv_head);
  const std::vector<std::int64_t> rows = window_query_rows(ctx, policy, resident, window_count);
  return window_attention_with_squares(ctx.trace->keys[kv_head], resident, window_count, {heads, rows});
}

void snapkv_evict_to_capacity(const EvictionContext& ctx, const Policy& policy, LayerResidency& residency,
                              std::int64_t capacity, const SnapKvScoring& scoring, PrefillEviction mode) {
  if (ctx.trace == nullptr) {
    keep_newest(residency, capacity);  // untraced layer: only the count matters
    return;
  }
  const std::int64_t window_begin = snapkv_window_begin(ctx, scoring.window, mode);
  tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
    auto& resident = residency[h];
    const auto size = static_cast<std::int64_t>(resident.size());
    if (size <= capacity) return;
    const std::int64_t window = snapkv_window_count(resident, window_begin);
    const auto prefix = static_cast<std::size_t>(size - window);
    std::vector<std::int32_t> kept;
    kept.reserve(static_cast<std::size_t>(capacity));
    const std::vector<float> scores = snapkv_head_scores(ctx, policy, static_cast<int>(h), resident, window, scoring);
    for (std::int32_t index : top_k_indices(scores, capacity - window)) kept.push_back(resident[index]);
    kept.insert(kept.end(), resident.begin() + static_cast<std::ptrdiff_t>(prefix), resident.end());
    resident = std::move(kept);
  });
}

void snapkv_required_queries(const RequestInfo& request, std::span<const Pass> prefill, std::int64_t window,
                             const EvictionPoints& points, std::vector<std::int64_t>* positions) {
  auto add_window = [&](std::int64_t end, std::int64_t tokens) {
    for (std::int64_t t = end - std::min(window, tokens); t < end; ++t) positions->push_back(t);
  };
  if (points.prefill == PrefillEviction::kChunk) {
    for (const Pass& p : prefill) add_window(p.end, p.tokens());
  } else if (points.prefill == PrefillEviction::kPostFill) {
    add_window(request.prompt_tokens, request.prompt_tokens);
  }
  if (points.decode_every > 0) {
    for (std::int64_t t = request.prompt_tokens; t < request.total_tokens(); ++t) positions->push_back(t);
    add_window(request.prompt_tokens, request.prompt_tokens);
  }
}

void evict_heads_keeping_window(const EvictionContext& ctx, LayerResidency& residency, std::int64_t capacity,
                                std::int64_t window_begin, std::int64_t sinks, const WindowedHeadScorer& score) {
  if (ctx.trace == nullptr) {
    keep_newest(residency, capacity);
    return;
  }
  tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
    auto& resident = residency[h];
    const auto size = static_cast<std::int64_t>(resident.size());
    if (size <= capacity) return;
    const std::int64_t window = snapkv_window_count(resident, window_begin);
    const ProtectedEnds ends = ProtectedEnds{sinks, window}.clipped(size);
    if (ends.total() >= size) {  // every entry is protected: nothing to score (the scorers assume some)
      resident = keep_ends_and_top(resident, {}, ends, capacity);
      return;
    }
    const std::vector<float> scores = score(static_cast<int>(h), resident, window);
    resident = keep_ends_and_top(resident, std::span<const float>(scores).subspan(static_cast<std::size_t>(ends.sinks)),
                                 ends, capacity);
  });
}

}  // namespace kvsim

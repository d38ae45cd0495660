// kvzip: KVzip, query-agnostic eviction by context reconstruction (Kim et al. 2025, arXiv
// 2505.23416), as snu-mllab/KVzip @5d84729 does it (docs/policy-sources.md "kvzip" cites each step;
// NVIDIA/kvpress kvzip_press.py is a port). KV pair (h, j) scores the largest attention the
// reconstruction-pass queries of head h's GQA group pay to it (policies/kvzip_scores.h:
// scoring=chunk, the original, each pass scoring its own chunk; scoring=whole, kvsim's earlier
// whole-prompt softmax). The first `sinks` positions (KVzip's system prompt) and the last `window`
// prompt positions (the question after KVzip's context) always stay: the context is
// [sinks, n - window).
//
// level=token (KVzip's pair level):
//  - alloc=global (the original's default, level=pair; kvpress layerwise=False): one threshold over
//    every layer and head, kvcache.py KVScore._threshold: of the N context pairs, sorted
//    descending, thres = the (max(int(N x ratio) - 1, 0))-th, and a pair stays iff its score >
//    thres (strict; ties at thres go). ratio = budget, a fraction of the context. kvsim replays a
//    layer at a time, so every traced layer's context scores are computed at the end of the prompt
//    first (Policy::layer_statistic, as kvcompress rank=sequence) and each layer applies the
//    threshold of them all. The original evicts once the context is scored: alloc=global needs
//    prefill=post_fill; later decode evictions (decode=step|every:K, not in the original) pool the
//    layer at the count it kept. With only some layers traced the threshold spans the traced ones
//    (the original's rule on that sub-model) and an untraced layer keeps the mean share,
//    floor(ratio x context) pairs per head: its scores are unknown. A layer replayed alone (unit
//    tests) thresholds over itself.
//  - alloc=layer pools the layer's heads, H x capacity entries to the best scores of any head
//    (kvpress layerwise=True); alloc=head gives each head its own capacity (KVzip's
//    level=pair-uniform). Both take kvsim's budget (DESIGN.md §4: the capacity min(round(b x n) + w,
//    n) or a token count, window included), and are the defaults with prefill=chunk|none.
// level=head: one score per KV head, the max of its pair scores; floor(budget x L x H) heads keep
// everything, spread evenly over the layers and the top ones of each layer chosen (KVzip-head
// thresholds all layers at once); the rest keep only the sinks and the `window` most recent
// entries (KVzip-head keeps the system prompt and the query).
//
// Scores are computed once per layer from the whole prompt; with prefill=chunk the chunks are
// ranked by these full-context scores (KVzip cannot score before the context is complete, so this
// is an optimistic reading of chunked KVzip). Generated tokens are never scored: like KVzip's
// query and answer tokens they rank above every prompt entry. Softmax in float32 (the original's
// runs in the model dtype, bf16).
#include <algorithm>
#include <cmath>
#include <limits>

#include "policies/kvzip_scores.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"

namespace kvsim {

namespace {

constexpr float kProtected = std::numeric_limits<float>::infinity();

struct KvzipState final : PolicyState {
  std::shared_ptr<const KvzipScores> scores;
  std::vector<bool> full_heads;   // level=head
  std::int64_t layer_total = -1;  // alloc=global: entries the layer kept at the post-fill threshold
};

enum class Alloc { kGlobal, kLayer, kHead };

struct Candidate {
  float score;
  std::int32_t head;
  std::int32_t index;  // into the head's resident vector
};

class KvzipPolicy final : public Policy {
 public:
  KvzipPolicy(std::string spec, Budget budget, bool head_level, Alloc alloc, KvzipScoring scoring, std::int64_t sinks,
              std::int64_t window, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        head_level_(head_level),
        alloc_(alloc),
        scoring_(scoring),
        sinks_(sinks),
        window_(window),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  bool requires_recon_queries() const override { return true; }
  bool requires_recon_passes() const override { return scoring_ == KvzipScoring::kChunk; }

  bool uses_layer_statistics(bool /*every_layer_traced*/) const override { return global(); }

  // alloc=global: the layer's context scores, (head, position) order.
  LayerStatistic layer_statistic(const EvictionContext& ctx, const LayerResidency& /*prompt*/) const override {
    return context_scores(*kvzip_scores(*ctx.trace, ctx.model, ctx.request.prompt_tokens, scoring_, scoring_sinks()));
  }
  std::unique_ptr<PolicyState> make_state() const override { return std::make_unique<KvzipState>(); }

  std::vector<int> untraced_head_groups(const ModelShape& model, int layer) const override {
    if (!head_level_) return {model.num_kv_heads};
    const int full = full_head_count(model, layer);
    return {full, model.num_kv_heads - full};
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    if (head_level_) {
      evict_heads(ctx, residency);
    } else if (ctx.trace == nullptr) {
      // Untraced: only the count matters (pooling across heads keeps the same layer total).
      keep_newest(residency, global() ? global_untraced_count(ctx) : this->capacity(ctx));
    } else if (global() && ctx.pass.prefill) {
      evict_global(ctx, residency);
    } else {
      evict_tokens(ctx, residency);
    }
  }

 private:
  // KVzip-head keeps floor(budget x L x H) heads of the model; chosen a layer at a time, they are
  // spread evenly over the layers.
  int full_head_count(const ModelShape& model, int layer) const {
    const double heads = static_cast<double>(model.num_layers) * model.num_kv_heads;
    const auto total = static_cast<std::int64_t>(std::floor(budget_.fraction * heads));
    return static_cast<int>(even_share(total, model.num_layers, layer));
  }
  std::int64_t capacity(const EvictionContext& ctx) const {
    return budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_);
  }
  const KvzipScores& scores(const EvictionContext& ctx) const {
    auto& state = static_cast<KvzipState&>(*ctx.state);
    if (!state.scores)
      state.scores = kvzip_scores(*ctx.trace, ctx.model, ctx.request.prompt_tokens, scoring_, scoring_sinks());
    return *state.scores;
  }

  // Whole-prompt scores do not depend on the sinks: one memoised result for every sinks value.
  std::int64_t scoring_sinks() const { return scoring_ == KvzipScoring::kChunk ? sinks_ : 0; }
  bool global() const { return !head_level_ && alloc_ == Alloc::kGlobal; }
  // The context [sinks, n - window) of a prompt of n tokens.
  std::int64_t context_begin(std::int64_t n) const { return std::min(sinks_, n); }
  std::int64_t context_end(std::int64_t n) const { return std::max(context_begin(n), n - window_); }

  LayerStatistic context_scores(const KvzipScores& s) const {
    const std::int64_t begin = context_begin(s.prompt_tokens);
    const std::int64_t end = context_end(s.prompt_tokens);
    LayerStatistic out;
    out.reserve(s.pair.size() * static_cast<std::size_t>(end - begin));
    for (const auto& head : s.pair) out.insert(out.end(), head.begin() + begin, head.begin() + end);
    return out;
  }

  // KVScore._threshold over every traced layer's context scores (this layer's alone without
  // statistics): the (max(int(N x ratio) - 1, 0))-th largest; -inf keeps everything.
  double global_threshold(const EvictionContext& ctx, const KvzipScores& s) const {
    const double ratio = budget_.fraction;
    if (ratio >= 1.0) return -std::numeric_limits<double>::infinity();
    std::vector<double> all;
    if (!ctx.layer_statistics.empty() && !ctx.layer_statistics[static_cast<std::size_t>(ctx.layer)].empty()) {
      for (const LayerStatistic& layer : ctx.layer_statistics) all.insert(all.end(), layer.begin(), layer.end());
    } else {
      all = context_scores(s);
    }
    if (all.empty()) return -std::numeric_limits<double>::infinity();
    const auto n = std::max<std::int64_t>(static_cast<std::int64_t>(static_cast<double>(all.size()) * ratio) - 1, 0);
    std::nth_element(all.begin(), all.begin() + n, all.end(), std::greater<>());
    return all[static_cast<std::size_t>(n)];
  }

  // The post-fill eviction of alloc=global: a context pair stays iff its score > the threshold.
  void evict_global(const EvictionContext& ctx, LayerResidency& residency) const {
    const KvzipScores& s = scores(ctx);
    const double thres = global_threshold(ctx, s);
    const std::int64_t begin = context_begin(s.prompt_tokens);
    const std::int64_t end = context_end(s.prompt_tokens);
    std::int64_t total = 0;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      std::vector<std::int32_t> kept;
      for (const std::int32_t p : residency[h]) {
        if (p < begin || p >= end || static_cast<double>(s.pair[h][static_cast<std::size_t>(p)]) > thres)
          kept.push_back(p);
      }
      residency[h] = std::move(kept);
      total += static_cast<std::int64_t>(residency[h].size());
    }
    static_cast<KvzipState&>(*ctx.state).layer_total = total;
  }

  // An untraced layer under alloc=global: per head the sinks, the window and the mean share
  // floor(ratio x context) of the context (its scores, hence its share of the threshold, unknown).
  std::int64_t global_untraced_count(const EvictionContext& ctx) const {
    const std::int64_t n = ctx.request.prompt_tokens;
    const std::int64_t context = context_end(n) - context_begin(n);
    const auto share = static_cast<std::int64_t>(std::floor(budget_.fraction * static_cast<double>(context)));
    return n - context + std::min(share, context);
  }
  // Score of a resident position: sinks and generated tokens rank above every scored entry.
  static float score_of(const KvzipScores& s, std::size_t head, std::int32_t position, std::int64_t sinks) {
    if (position < sinks || position >= s.prompt_tokens) return kProtected;
    return s.pair[head][static_cast<std::size_t>(position)];
  }

  void evict_tokens(const EvictionContext& ctx, LayerResidency& residency) const {
    const std::int64_t capacity = this->capacity(ctx);
    const bool chunk_window = ctx.pass.prefill && points_.prefill == PrefillEviction::kChunk;
    const std::int64_t window_begin = ctx.pass.end - (chunk_window ? std::min(window_, ctx.pass.tokens()) : window_);
    const KvzipScores& s = scores(ctx);
    const std::size_t heads = residency.size();
    // Per head: the entries before the window, scored; the window always stays.
    std::vector<std::int64_t> windows(heads);
    std::vector<std::vector<float>> head_scores(heads);
    for (std::size_t h = 0; h < heads; ++h) {
      const auto& resident = residency[h];
      windows[h] = resident.end() - std::lower_bound(resident.begin(), resident.end(), window_begin);
      const auto scored = static_cast<std::size_t>(static_cast<std::int64_t>(resident.size()) - windows[h]);
      head_scores[h].resize(scored);
      for (std::size_t i = 0; i < scored; ++i) head_scores[h][i] = score_of(s, h, resident[i], sinks_);
    }
    std::vector<std::vector<std::int32_t>> keep(heads);  // indices of kept scored entries, ascending
    if (alloc_ != Alloc::kHead) {
      // alloc=global after its post-fill threshold (a decode eviction): the layer keeps its count.
      const std::int64_t layer_capacity = alloc_ == Alloc::kGlobal ? static_cast<KvzipState&>(*ctx.state).layer_total
                                                                   : static_cast<std::int64_t>(heads) * capacity;
      std::int64_t total = 0;
      for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
      if (layer_capacity < 0 || total <= layer_capacity) return;
      std::int64_t remaining = layer_capacity;
      std::vector<Candidate> pool;
      for (std::size_t h = 0; h < heads; ++h) {
        remaining -= windows[h];
        for (std::size_t i = 0; i < head_scores[h].size(); ++i) {
          pool.push_back({head_scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
        }
      }
      // Ties go to the lower head, then the lower position: the kept sets are a function of the scores.
      const auto before = [](const Candidate& a, const Candidate& b) {
        if (a.score != b.score) return a.score > b.score;
        return a.head != b.head ? a.head < b.head : a.index < b.index;
      };
      remaining = std::clamp<std::int64_t>(remaining, 0, static_cast<std::int64_t>(pool.size()));
      std::nth_element(pool.begin(), pool.begin() + remaining, pool.end(), before);
      pool.resize(static_cast<std::size_t>(remaining));
      for (const Candidate& c : pool) keep[static_cast<std::size_t>(c.head)].push_back(c.index);
      for (auto& k : keep) std::sort(k.begin(), k.end());
    } else {
      bool any = false;
      for (std::size_t h = 0; h < heads; ++h) {
        if (static_cast<std::int64_t>(residency[h].size()) <= capacity) {
          keep[h].resize(head_scores[h].size());
          for (std::size_t i = 0; i < keep[h].size(); ++i) keep[h][i] = static_cast<std::int32_t>(i);
          continue;
        }
        any = true;
        keep[h] = top_k_indices(head_scores[h], std::max<std::int64_t>(0, capacity - windows[h]));
      }
      if (!any) return;
    }
    for (std::size_t h = 0; h < heads; ++h) {
      std::vector<std::int32_t> kept;
      kept.reserve(keep[h].size() + static_cast<std::size_t>(windows[h]));
      for (const std::int32_t i : keep[h]) kept.push_back(residency[h][static_cast<std::size_t>(i)]);
      kept.insert(kept.end(), residency[h].end() - windows[h], residency[h].end());
      residency[h] = std::move(kept);
    }
  }

  // Streaming heads keep the sinks and the `window` most recent entries; full heads everything.
  void evict_heads(const EvictionContext& ctx, LayerResidency& residency) const {
    std::vector<bool> full;
    if (ctx.trace == nullptr) {
      full = {true, false};  // untraced_head_groups: {full heads, streaming heads}
    } else {
      auto& state = static_cast<KvzipState&>(*ctx.state);
      if (state.full_heads.empty()) state.full_heads = choose_full_heads(ctx);
      full = state.full_heads;
    }
    for (std::size_t h = 0; h < residency.size(); ++h) {
      if (full[h]) continue;
      keep_sinks_and_window(residency[h], sinks_, window_);
    }
  }

  // KVzip-head: a head's score is the max of its pair scores over the context (the prompt without
  // the sinks and the window, which stand for KVzip's system prompt and query); the layer's share
  // of full heads goes to its top heads (ties: lower head).
  std::vector<bool> choose_full_heads(const EvictionContext& ctx) const {
    const KvzipScores& s = scores(ctx);
    const std::int64_t begin = std::min(sinks_, s.prompt_tokens);
    const std::int64_t end = std::max(begin, s.prompt_tokens - window_);
    std::vector<float> head_score(s.pair.size(), 0.0f);
    for (std::size_t h = 0; h < s.pair.size(); ++h) {
      for (std::int64_t j = begin; j < end; ++j)
        head_score[h] = std::max(head_score[h], s.pair[h][static_cast<std::size_t>(j)]);
    }
    std::vector<bool> full(s.pair.size(), false);
    for (const std::int32_t h : top_k_indices(head_score, full_head_count(ctx.model, ctx.layer))) {
      full[static_cast<std::size_t>(h)] = true;
    }
    return full;
  }

  std::string spec_;
  Budget budget_;
  bool head_level_;
  Alloc alloc_;
  KvzipScoring scoring_;
  std::int64_t sinks_;
  std::int64_t window_;
  EvictionPoints points_;
};

}  // namespace

void register_kvzip(PolicyRegistry& registry) {
  registry.add(
      {"kvzip",
       "KVzip: query-agnostic; an entry scores the max attention it gets from a context-reconstruction pass "
       "(trace recon_queries; scoring=chunk also recon_passes/recon_keys, format 1.1); keep the pairs above one "
       "threshold over all layers and heads (alloc=global, the authors' default), the top entries per layer or head, "
       "or whole top heads (level=head). Departures kept as options: scoring=whole, alloc=layer|head (the defaults "
       "with prefill=chunk|none: the original evicts once, after scoring the whole context)",
       "Kim et al. 2025, KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction "
       "(arXiv 2505.23416); snu-mllab/KVzip @5d84729 attention/score.py, attention/kvcache.py, model/wrapper.py; "
       "NVIDIA/kvpress kvzip_press.py",
       {{"budget",
         "0.3",
         "level=token: alloc=global: the original's ratio, the fraction (<1) of the context [sinks, n-window) kept; "
         "alloc=layer|head: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the "
         "window; level=head: fraction of the KV heads kept whole (floor(budget x layers x heads), spread evenly)",
         {{"level", "head", "0.6"}}},
        {"level", "token", "token (every KV entry competes; KVzip's pair level) | head (one score per KV head)"},
        {"alloc",
         "global",
         "level=token: global (one threshold over all traced layers and heads: KVzip level=pair, kvpress "
         "layerwise=False; needs prefill=post_fill) | layer (the layer's heads share heads x capacity entries; kvpress "
         "layerwise=True) | head (same capacity per head, as KVzip level=pair-uniform but with kvsim's capacity)",
         {{"prefill", "chunk", "layer"}, {"prefill", "none", "layer"}}},
        {"scoring", "chunk",
         "chunk (the original: each reconstruction pass scores its own context chunk, softmax over [sinks | chunk | "
         "the pass's own keys, causal]; needs the trace's recon_passes) | whole (softmax over the whole prompt, every "
         "reconstruction query scores every position; kvsim's earlier reading)"},
        {"sinks", "4", "first positions always kept and in every softmax (KVzip's system prompt; kvpress n_sink)"},
        {"window", "32", "most recent entries always kept (stands for the query after KVzip's context)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const bool head_level = args.get_choice("level", {"token", "head"}) == "head";
         const Budget budget = Budget::read(args, "budget");
         const auto points = read_eviction_points(args);
         const std::string alloc_text = args.get_choice("alloc", {"global", "layer", "head"});
         const Alloc alloc = alloc_text == "global"  ? Alloc::kGlobal
                             : alloc_text == "layer" ? Alloc::kLayer
                                                     : Alloc::kHead;
         const KvzipScoring scoring =
             args.get_choice("scoring", {"chunk", "whole"}) == "chunk" ? KvzipScoring::kChunk : KvzipScoring::kWhole;
         const std::int64_t sinks = args.get_int("sinks");
         const std::int64_t window = args.get_int("window");
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (window < 0) args.fail("window", "must be >= 0");
         if (head_level && !budget.is_fraction) {
           args.fail("budget", "level=head takes a fraction of the KV heads (< 1), not a token count");
         }
         if (head_level && args.has("alloc")) args.fail("alloc", "applies to level=token only");
         if (head_level) args.set_canonical("alloc", "");  // level=head has no allocation
         if (!head_level && alloc == Alloc::kGlobal) {
           if (points.prefill != PrefillEviction::kPostFill) {
             args.fail("alloc",
                       "global thresholds once after the prompt (the original); it needs prefill=post_fill "
                       "(use alloc=layer or alloc=head with prefill=chunk|none)");
           }
           if (!budget.is_fraction) {
             args.fail("budget",
                       "alloc=global takes the original's ratio, a fraction (< 1) of the context; use "
                       "alloc=layer or alloc=head for a token count");
           }
         }
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<KvzipPolicy>(args.canonical(), budget, head_level, alloc, scoring, sinks, window,
                                              points);
       }});
}

}  // namespace kvsim

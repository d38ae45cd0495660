// kvzip: KVzip, query-agnostic eviction by context reconstruction (Kim et al. 2025, arXiv
// 2505.23416; snu-mllab/KVzip attention/score.py, attention/kvcache.py; NVIDIA/kvpress
// kvzip_press.py). KV pair (h, j) scores the largest attention the reconstruction-pass queries of
// head h's GQA group pay to it (policies/kvzip_scores.h); the first `sinks` positions always stay.
//
// level=token (KVzip's pair level): every KV entry competes. KVzip thresholds all layers and heads
// at once; kvsim replays a layer at a time (its scores are known only once its trace is read), so
// alloc=layer pools the layer's heads, H x capacity entries to the best scores of any head
// (kvpress's layerwise=True), and alloc=head gives each head its own capacity (KVzip's
// level=pair-uniform). level=head: one score per KV head, the max of its pair scores;
// floor(budget x L x H) heads keep everything, spread evenly over the layers and the top ones of
// each layer chosen (KVzip-head thresholds all layers at once); the rest keep only the sinks and
// the `window` most recent entries (KVzip-head keeps the system prompt and the query).
//
// Budget: KVzip's ratio is the retained fraction (default 0.3 for pairs, 0.6 for heads); kvsim's
// budget is the same fraction plus a protected window (DESIGN.md §4). The window stands for the
// question that follows KVzip's context and is never evicted there. KVzip keeps int(N·ratio) - 1
// pairs (strict threshold); kvsim keeps the capacity exactly.
//
// Scores are computed once per layer from the whole prompt; with prefill=chunk the chunks are
// ranked by these full-context scores (KVzip cannot score before the context is complete, so this
// is an optimistic reading of chunked KVzip). Generated tokens are never scored: like KVzip's
// query and answer tokens they rank above every prompt entry.
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
  std::vector<bool> full_heads;  // level=head
};

struct Candidate {
  float score;
  std::int32_t head;
  std::int32_t index;  // into the head's resident vector
};

class KvzipPolicy final : public Policy {
 public:
  KvzipPolicy(std::string spec, Budget budget, bool head_level, bool pool_layer, std::int64_t sinks,
              std::int64_t window, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        head_level_(head_level),
        pool_layer_(pool_layer),
        sinks_(sinks),
        window_(window),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  bool requires_recon_queries() const override { return true; }
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
      keep_newest(residency, this->capacity(ctx));
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
    if (!state.scores) state.scores = kvzip_scores(*ctx.trace, ctx.model, ctx.request.prompt_tokens);
    return *state.scores;
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
    if (pool_layer_) {
      std::int64_t total = 0;
      for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
      if (total <= static_cast<std::int64_t>(heads) * capacity) return;
      std::int64_t remaining = static_cast<std::int64_t>(heads) * capacity;
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
  bool pool_layer_;
  std::int64_t sinks_;
  std::int64_t window_;
  EvictionPoints points_;
};

}  // namespace

void register_kvzip(PolicyRegistry& registry) {
  registry.add(
      {"kvzip",
       "KVzip: query-agnostic; an entry scores the max attention it gets from a context-reconstruction pass "
       "(trace recon_queries); keep the top entries (level=token) or whole top heads (level=head)",
       "Kim et al. 2025, KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction "
       "(arXiv 2505.23416); snu-mllab/KVzip, NVIDIA/kvpress kvzip_press.py",
       {{"budget",
         "0.3",
         "level=token: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window; "
         "level=head: fraction of the KV heads kept whole (floor(budget x layers x heads), spread evenly over layers)",
         {{"level", "head", "0.6"}}},
        {"level", "token", "token (every KV entry competes; KVzip's pair level) | head (one score per KV head)"},
        {"alloc", "layer",
         "level=token: layer (the layer's heads share heads x capacity entries) | head (same capacity per head)"},
        {"sinks", "4", "first positions always kept (kvpress n_sink)"},
        {"window", "32", "most recent entries always kept (stands for the query after KVzip's context)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const bool head_level = args.get_choice("level", {"token", "head"}) == "head";
         const Budget budget = Budget::read(args, "budget");
         const bool pool_layer = args.get_choice("alloc", {"layer", "head"}) == "layer";
         const std::int64_t sinks = args.get_int("sinks");
         const std::int64_t window = args.get_int("window");
         const auto points = read_eviction_points(args);
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (window < 0) args.fail("window", "must be >= 0");
         if (head_level && !budget.is_fraction) {
           args.fail("budget", "level=head takes a fraction of the KV heads (< 1), not a token count");
         }
         if (head_level && args.has("alloc")) args.fail("alloc", "applies to level=token only");
         if (head_level) args.set_canonical("alloc", "");  // level=head has no allocation
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<KvzipPolicy>(args.canonical(), budget, head_level, pool_layer, sinks, window, points);
       }});
}

}  // namespace kvsim

// lava: LAVa (Shen et al. 2025, "LAVa: Layer-wise KV Cache Eviction with Dynamic Budget
// Allocation", EMNLP 2025; MGDDestiny/Lava adaptive_snapkv/monkeypatch/snapkv_utils.py
// LavaKVCluster and adaptive_mistral_hijack_lava.py, the --gqa_support mode its scripts run).
//
// Score of a KV head's entry j (reference calcul_attn_score): for each query head g of the group,
// the mean over the observation window of its attention to j, pooled along positions; times the
// head's value scale max_j' ||V_j'||_1 over the non-window entries; the maximum over the group's
// query heads. The value scale is one number per head: it only matters across heads.
//
// Head budget (reference update_kv_gqa, normalize off, its default): the layer's scored budget S =
// H x capacity - windows goes to the S highest scores across the layer's heads (count_h per head),
// then head h keeps its own top (1 - floor_alpha) count_h + floor_alpha S/H entries plus its window.
// alloc=original (the default) integerizes as the reference: head h keeps
// round((1 - floor_alpha) count_h + int(floor_alpha x C)) of its own best, C the configured per-head
// budget window included (through a misspelt attribute, `floor_capactiy`, its floor stays the one set
// at init in every layer), so a layer holds a few entries per head more or less than H x capacity.
// alloc=exact (kvsim's variant, DESIGN.md §4's exact budgets): each head gets floor() of
// (1 - floor_alpha) count_h + floor_alpha S/H (at most its entries) and the remainder goes to the best
// remaining scores across heads, so the layer keeps exactly H x capacity. With floor_alpha = 0 both
// are the plain global top-S.
//
// Layer budget (layer_budget=entropy, the default; reference adaptive_mistral_hijack_lava.py): layer
// l's mean per-head scored capacity is the share s_l / sum_l' s_l' of L x (C - w), with s_l the
// normalized entropy -sum p log p / log N of layer l's flattened score map (every KV head's pooled,
// value-scaled, group-maximum scores of the non-window prompt entries, p = score / sum; eps 1e-16 as
// the reference). The reference computes it layer after layer during the prefill forward and
// re-trims earlier layers as later ones arrive; its shares only shrink, so its end state is this
// split, which kvsim computes in one go: the engine hands every traced layer's s_l to evict()
// (Policy::layer_statistic). Hence post_fill only, as the paper (it compresses once after prefill).
// alloc=original floors each layer's share as the reference (int(density)), so the model keeps up to
// L tokens per head less; alloc=exact splits by largest remainder. Only
// traced layers have scores: the traced layers share their own uniform total |T| x (C - w) by s_l
// and untraced layers keep the uniform C, i.e. an untraced layer counts as having the traced layers'
// mean entropy (exact LAVa when every layer is traced). A layer whose share reaches its prompt
// keeps everything; the surplus is not passed on (as in the reference).
#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>
#include <string>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"
#include "policies/window_attention.h"
#include "util/error.h"

namespace kvsim {

namespace {

// LAVa's score of the first resident.size() - window_count entries of KV head `kv_head`.
std::vector<float> lava_head_scores(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                    std::span<const std::int32_t> resident, std::int64_t window_count,
                                    const SnapKvScoring& scoring) {
  const LayerTrace& trace = *ctx.trace;
  const auto prefix = static_cast<std::int64_t>(resident.size()) - window_count;
  if (prefix <= 0 || window_count <= 0)
    return std::vector<float>(static_cast<std::size_t>(std::max<std::int64_t>(prefix, 0)), 0.0f);
  const std::vector<std::int64_t> rows = window_query_rows(ctx, policy, resident, window_count);
  const HeadMatrix& values = trace.values[static_cast<std::size_t>(kv_head)];
  float value_scale = 0.0f;
  for (std::int64_t i = 0; i < prefix; ++i) {
    value_scale = std::max(value_scale, values.row(resident[static_cast<std::size_t>(i)]).lpNorm<1>());
  }
  // The reference pools each query head before the group maximum, so each head is scored alone.
  std::vector<float> best(static_cast<std::size_t>(prefix), -1.0f);
  for (const HeadMatrix* head : group_query_heads(ctx, kv_head)) {
    std::vector<float> mean = window_attention_scores(trace.keys[static_cast<std::size_t>(kv_head)], resident,
                                                      window_count, {std::span(&head, 1), rows});
    // window_attention_scores sums over the window queries; the reference averages them.
    for (float& x : mean) x /= static_cast<float>(window_count);
    const std::vector<float> pooled = scoring.pool(mean);
    for (std::size_t i = 0; i < pooled.size(); ++i) best[i] = std::max(best[i], pooled[i] * value_scale);
  }
  return best;
}

// Each head's LAVa scores (non-window entries) and window entry count at ctx's eviction point.
struct LayerScores {
  std::vector<std::vector<float>> scores;
  std::vector<std::int64_t> windows;
};

LayerScores lava_layer_scores(const EvictionContext& ctx, const Policy& policy, const LayerResidency& residency,
                              const SnapKvScoring& scoring, PrefillEviction mode) {
  const std::int64_t window_begin = snapkv_window_begin(ctx, scoring.window, mode);
  LayerScores out{std::vector<std::vector<float>>(residency.size()), std::vector<std::int64_t>(residency.size())};
  tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
    out.windows[h] = snapkv_window_count(residency[h], window_begin);
    out.scores[h] = lava_head_scores(ctx, policy, static_cast<int>(h), residency[h], out.windows[h], scoring);
  });
  return out;
}

// The reference's layer "sparsity": normalized entropy of the flattened score map, in [0, 1].
double normalized_entropy(const std::vector<std::vector<float>>& scores) {
  double sum = 0.0;
  std::size_t count = 0;
  for (const auto& head : scores) {
    for (float x : head) sum += x;
    count += head.size();
  }
  if (count < 2) return 1.0;  // log N = 0: a single entry is as spread as it can be
  double entropy = 0.0;
  for (const auto& head : scores) {
    for (float x : head) {
      const double p = x / (sum + 1e-16);
      entropy -= p * std::log(p + 1e-16);
    }
  }
  return entropy / std::log(static_cast<double>(count));
}

// Largest-remainder split of `pool` in proportion to the finite weights (NaN: not a party; ties
// in the remainder go to the lower index); all-zero weights split evenly. Without remainders each
// party gets only the floor of its share (the reference's int(density)).
std::vector<std::int64_t> apportion(std::span<const double> weights, std::int64_t pool, bool give_remainders) {
  std::vector<std::size_t> parties;
  double total = 0.0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (std::isnan(weights[i])) continue;
    parties.push_back(i);
    total += weights[i];
  }
  std::vector<std::int64_t> shares(weights.size(), 0);
  if (parties.empty()) return shares;
  std::vector<std::pair<double, std::size_t>> remainders;
  std::int64_t given = 0;
  for (std::size_t i : parties) {
    const double exact = total > 0.0 ? static_cast<double>(pool) * weights[i] / total
                                     : static_cast<double>(pool) / static_cast<double>(parties.size());
    shares[i] = static_cast<std::int64_t>(std::floor(exact));
    given += shares[i];
    remainders.emplace_back(exact - std::floor(exact), i);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  if (!give_remainders) return shares;
  for (std::size_t k = 0; k < remainders.size() && given < pool; ++k, ++given) ++shares[remainders[k].second];
  return shares;
}

class LavaPolicy final : public SnapKvScoredPolicy {
 public:
  LavaPolicy(std::string spec, Budget budget, SnapKvScoring scoring, double floor_alpha, bool entropy_layers,
             bool original_alloc, EvictionPoints points)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, points),
        floor_alpha_(floor_alpha),
        entropy_layers_(entropy_layers),
        original_alloc_(original_alloc) {}

  bool uses_layer_statistics(bool /*every_layer_traced*/) const override { return entropy_layers_; }

  LayerStatistic layer_statistic(const EvictionContext& ctx, const LayerResidency& prompt) const override {
    return {normalized_entropy(lava_layer_scores(ctx, *this, prompt, scoring_, points_.prefill).scores)};
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = layer_capacity(ctx);
    if (ctx.trace == nullptr) {
      // One representative head stands for all: the uniform count gives the layer total H x capacity.
      snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
      return;
    }
    const std::size_t heads = residency.size();
    std::int64_t total = 0;
    for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
    const std::int64_t layer_budget = static_cast<std::int64_t>(heads) * capacity;
    if (total <= layer_budget) return;

    auto [scores, windows] = lava_layer_scores(ctx, *this, residency, scoring_, points_.prefill);
    std::int64_t scored_budget = layer_budget;
    for (std::int64_t w : windows) scored_budget -= w;
    scored_budget = std::max<std::int64_t>(0, scored_budget);

    const std::vector<std::int64_t> shares = head_shares(scores, scored_budget, uniform_capacity(ctx));
    std::vector<std::vector<bool>> keep(heads);
    std::vector<HeadCandidate> rest;
    std::int64_t remaining = scored_budget;
    for (std::size_t h = 0; h < heads; ++h) {
      keep[h].assign(residency[h].size(), false);
      std::fill(keep[h].end() - windows[h], keep[h].end(), true);
      for (std::int32_t i : top_k_indices(scores[h], shares[h])) keep[h][static_cast<std::size_t>(i)] = true;
      remaining -= shares[h];
      for (std::size_t i = 0; i < scores[h].size(); ++i) {
        if (!keep[h][i]) rest.push_back({scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
      }
    }
    if (original_alloc_) remaining = 0;  // the reference's rounded head caps are final
    // Integer remainders (and what a head could not take) go to the best remaining scores.
    remaining = std::clamp<std::int64_t>(remaining, 0, static_cast<std::int64_t>(rest.size()));
    std::nth_element(rest.begin(), rest.begin() + remaining, rest.end(), ranks_before);
    for (std::int64_t i = 0; i < remaining; ++i) {
      const HeadCandidate& c = rest[static_cast<std::size_t>(i)];
      keep[static_cast<std::size_t>(c.head)][static_cast<std::size_t>(c.index)] = true;
    }
    for (std::size_t h = 0; h < heads; ++h) {
      std::vector<std::int32_t> kept;
      for (std::size_t i = 0; i < residency[h].size(); ++i) {
        if (keep[h][i]) kept.push_back(residency[h][i]);
      }
      residency[h] = std::move(kept);
    }
  }

 private:
  // Entries per KV head (window included) layer ctx.layer keeps on average: the uniform capacity,
  // or with entropy layers its share of the traced layers' scored total (file header).
  std::int64_t layer_capacity(const EvictionContext& ctx) const {
    const std::int64_t capacity = uniform_capacity(ctx);
    if (!entropy_layers_ || ctx.trace == nullptr || ctx.layer_statistics.empty() ||
        ctx.layer_statistics[static_cast<std::size_t>(ctx.layer)].empty()) {
      return capacity;
    }
    const std::int64_t window = std::min<std::int64_t>(scoring_.window, ctx.request.prompt_tokens);
    const std::int64_t scored = std::max<std::int64_t>(0, capacity - window);
    std::vector<double> entropies;  // NaN: an untraced layer, no party to the split
    std::int64_t traced = 0;
    for (const LayerStatistic& s : ctx.layer_statistics) {
      entropies.push_back(s.empty() ? std::nan("") : s.front());
      traced += s.empty() ? 0 : 1;
    }
    return window + apportion(entropies, traced * scored, !original_alloc_)[static_cast<std::size_t>(ctx.layer)];
  }

  // Entries each head keeps besides its window before the remainder: count_h = its entries among
  // the layer's `scored_budget` best; alloc=exact: share = min(entries, floor((1-a) count_h + a S/H));
  // alloc=original (update_kv_gqa): min(entries, round((1-a) count_h + int(a x configured)), with
  // `configured` the uniform per-head capacity, window included (its floor_capacity, fixed at init).
  std::vector<std::int64_t> head_shares(const std::vector<std::vector<float>>& scores, std::int64_t scored_budget,
                                        std::int64_t configured_capacity) const {
    std::vector<HeadCandidate> pool;
    for (std::size_t h = 0; h < scores.size(); ++h) {
      for (std::size_t i = 0; i < scores[h].size(); ++i) {
        pool.push_back({scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
      }
    }
    const std::int64_t picks = std::min<std::int64_t>(scored_budget, static_cast<std::int64_t>(pool.size()));
    std::nth_element(pool.begin(), pool.begin() + picks, pool.end(), ranks_before);
    std::vector<std::int64_t> count(scores.size(), 0);
    for (std::int64_t i = 0; i < picks; ++i) ++count[static_cast<std::size_t>(pool[static_cast<std::size_t>(i)].head)];
    const double mean = static_cast<double>(scored_budget) / static_cast<double>(scores.size());
    // 1e-9 keeps a product that is an integer in exact arithmetic from flooring one below it.
    const auto floor_capacity =
        static_cast<double>(std::floor(floor_alpha_ * static_cast<double>(configured_capacity) + 1e-9));
    std::vector<std::int64_t> shares(scores.size());
    for (std::size_t h = 0; h < scores.size(); ++h) {
      const double adaptive = (1.0 - floor_alpha_) * static_cast<double>(count[h]);
      const std::int64_t share = original_alloc_ ? round_half_even(adaptive + floor_capacity)
                                                 : static_cast<std::int64_t>(std::floor(adaptive + floor_alpha_ * mean + 1e-9));
      shares[h] = std::min(static_cast<std::int64_t>(scores[h].size()), share);
    }
    return shares;
  }

  double floor_alpha_;
  bool entropy_layers_;
  bool original_alloc_;
};

}  // namespace

void register_lava(PolicyRegistry& registry) {
  registry.add(
      {"lava",
       "LAVa: window attention x head value scale; layers share the budget by the entropy of their score maps, "
       "heads share a layer's budget by their best scores (floor_alpha floor)",
       "Shen et al. 2025, LAVa: Layer-wise KV Cache Eviction with Dynamic Budget Allocation (EMNLP 2025); "
       "MGDDestiny/Lava adaptive_snapkv/monkeypatch/snapkv_utils.py LavaKVCluster, adaptive_mistral_hijack_lava.py. "
       "Differs: on a partial trace only the traced layers share their total by entropy, untraced layers keep the "
       "uniform capacity; alloc=exact (not the authors') integerizes the shares to sum exactly to the budget",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window: the most recent queries, kept in every head"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"floor_alpha", "0.2",
         "head h keeps (1 - floor_alpha) x its entries among the layer's best + floor_alpha x the mean; in [0, 1]"},
        {"layer_budget", "entropy",
         "entropy (layers share L x the scored budget by their score maps' normalized entropy; needs "
         "prefill=post_fill) | uniform (every layer the same)"},
        {"alloc", "original",
         "original (MGDDestiny/Lava: each layer floor of its entropy share, each head round((1 - floor_alpha) x "
         "count + int(floor_alpha x budget)), so layers hold a few entries more or less than the budget) | exact "
         "(kvsim: shares integerized by largest remainder, every layer holds exactly its budget)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const SnapKvScoring scoring = SnapKvScoring::read(args);
         const double alpha = args.get_double("floor_alpha");
         args.set_canonical("floor_alpha", format_printf_g(alpha));  // as its spec has always printed it
         const bool entropy = args.get_choice("layer_budget", {"entropy", "uniform"}) == "entropy";
         const bool original = args.get_choice("alloc", {"original", "exact"}) == "original";
         const auto points = read_eviction_points(args);
         if (!(alpha >= 0.0 && alpha <= 1.0)) args.fail("floor_alpha", "must be in [0, 1]");
         if (entropy && points.prefill != PrefillEviction::kPostFill) {
           args.fail("layer_budget",
                     "entropy splits the budget once, after the whole prompt (as LAVa does): use "
                     "prefill=post_fill, or layer_budget=uniform");
         }
         scoring.check_budget(args, budget);
         return std::make_unique<LavaPolicy>(args.canonical(), budget, scoring, alpha, entropy, original, points);
       }});
}

}  // namespace kvsim

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
// kvsim integerizes so that the layer keeps exactly H x capacity (DESIGN.md §4; issue 4): each head
// gets floor() of that share (at most its entries), the remainder goes to the best remaining scores
// across heads. The reference rounds each head (round(share)) and, through a misspelt attribute
// (`floor_capactiy`), keeps its floor at int(floor_alpha x configured budget, window included) in
// every layer, so its layer total may differ from H x capacity by a few entries per head; with
// floor_alpha = 0 both are the plain global top-S.
//
// Layer budget: NOT the reference's. LAVa gives layer l the share s_l / sum_l' s_l' of the model's
// budget (L x (capacity - window)), with s_l the normalized entropy of layer l's flattened score
// map; the sum runs over ALL layers, which the reference computes one after another during the
// prefill forward and re-trims earlier layers as later ones arrive. kvsim replays layers
// independently and concurrently (policy.h), and untraced layers have no scores at all, so here
// every layer keeps the uniform capacity of DESIGN.md §4. Exact LAVa would need a two-phase evict
// (score every layer of the request, all layers traced, then allocate and select).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <tbb/parallel_for.h>

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
  if (prefix <= 0 || window_count <= 0) return std::vector<float>(static_cast<std::size_t>(std::max<std::int64_t>(prefix, 0)), 0.0f);
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

class LavaPolicy final : public SnapKvScoredPolicy {
 public:
  LavaPolicy(Budget budget, SnapKvScoring scoring, double floor_alpha, EvictionPoints points)
      : SnapKvScoredPolicy(budget, scoring, points), floor_alpha_(floor_alpha) {}

  std::string spec() const override {
    char alpha[32];
    std::snprintf(alpha, sizeof alpha, "%g", floor_alpha_);
    return format_spec("lava", std::string("floor_alpha=") + alpha);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = uniform_capacity(ctx);
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

    const std::int64_t window_begin = snapkv_window_begin(ctx, scoring_.window, points_.prefill);
    std::vector<std::vector<float>> scores(heads);
    std::vector<std::int64_t> windows(heads);
    tbb::parallel_for(std::size_t{0}, heads, [&](std::size_t h) {
      windows[h] = snapkv_window_count(residency[h], window_begin);
      scores[h] = lava_head_scores(ctx, *this, static_cast<int>(h), residency[h], windows[h], scoring_);
    });
    std::int64_t scored_budget = layer_budget;
    for (std::int64_t w : windows) scored_budget -= w;
    scored_budget = std::max<std::int64_t>(0, scored_budget);

    const std::vector<std::int64_t> shares = head_shares(scores, scored_budget);
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
  // Entries each head keeps besides its window before the remainder: count_h = its entries among
  // the layer's `scored_budget` best, share = min(entries, floor((1-a) count_h + a S/H)).
  std::vector<std::int64_t> head_shares(const std::vector<std::vector<float>>& scores, std::int64_t scored_budget) const {
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
    std::vector<std::int64_t> shares(scores.size());
    for (std::size_t h = 0; h < scores.size(); ++h) {
      // 1e-9 keeps a share that is an integer in exact arithmetic from flooring one below it.
      const double share = (1.0 - floor_alpha_) * static_cast<double>(count[h]) + floor_alpha_ * mean;
      shares[h] = std::min(static_cast<std::int64_t>(scores[h].size()), static_cast<std::int64_t>(std::floor(share + 1e-9)));
    }
    return shares;
  }

  double floor_alpha_;
};

}  // namespace

void register_lava(PolicyRegistry& registry) {
  registry.add(
      {"lava",
       "LAVa: window attention x head value scale, the layer's budget to its best scores across heads (floor_alpha "
       "floor); layer budget uniform (the reference's entropy-based layer split needs all layers at once)",
       "Shen et al. 2025, LAVa: Layer-wise KV Cache Eviction with Dynamic Budget Allocation (EMNLP 2025); "
       "MGDDestiny/Lava adaptive_snapkv/monkeypatch/snapkv_utils.py LavaKVCluster. Differs: uniform layer budget "
       "(exact LAVa needs a two-phase evict over all layers), head shares integerized to sum to the layer budget",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window: the most recent queries, kept in every head"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"floor_alpha", "0.2",
         "head h keeps (1 - floor_alpha) x its entries among the layer's best + floor_alpha x the mean; in [0, 1]"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](SpecArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget", 0.2);
         const SnapKvScoring scoring = SnapKvScoring::read(args, {32, 7, true});
         const double alpha = args.get_double("floor_alpha", 0.2);
         const auto points = read_eviction_points(args, {PrefillEviction::kPostFill, 0});
         if (!(alpha >= 0.0 && alpha <= 1.0)) args.fail("floor_alpha", "must be in [0, 1]");
         scoring.check_budget(args, budget);
         return std::make_unique<LavaPolicy>(budget, scoring, alpha, points);
       }});
}

}  // namespace kvsim

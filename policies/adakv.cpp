// adakv: AdaKV head-adaptive budget allocation (Feng et al. 2024, arXiv 2407.11550). Within a layer
// the KV heads share one budget, allocated from SnapKV scores by one of two rules:
//  - alloc=original (default): the authors' FFY0/AdaKV @efe4e2e
//    adaptive_snapkv/monkeypatch/snapkv_utils.py AdaptiveSnapKVCluster.update_kv_gqa (see
//    policies/adakv_alloc.h): each head keeps its window plus its top
//    round((1 - floor_alpha) count_h + int(floor_alpha B)) scored entries, B = budget - window,
//    count_h = its share of the layer's top H x B scores. Defaults from its experiments/LongBench/pred.py.
//  - alloc=kvpress: NVIDIA/kvpress kvpress/presses/adakv_press.py: each head keeps its window and its
//    top int(floor_alpha x budget) - window scored entries, then the layer's best remaining scores
//    fill exactly H x budget.
// GQA (gqa=, as snapkv): the original's gqa_support=True path reduces the group by gqa_func, mean
// (the default here, its GQA script's) or max; gqa_support=False, pred.py's default, repeats K/V per
// query head first and allocates over the query heads: gqa=expand, H = query heads, G copies of the
// cache (Policy::kv_copies).
#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>

#include "policies/adakv_alloc.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

std::int64_t adakv_floor_capacity(std::int64_t scored_budget, double floor_alpha) {
  return static_cast<std::int64_t>(static_cast<double>(scored_budget) * floor_alpha);
}

std::int64_t adakv_head_cap(std::int64_t count, std::int64_t scored_budget, double floor_alpha) {
  const auto count_f32 = static_cast<float>(count);
  const auto keep_f32 = static_cast<float>(1.0 - floor_alpha);
  const auto floor_f32 = static_cast<float>(adakv_floor_capacity(scored_budget, floor_alpha));
  // Each float32 operation is evaluated exactly in double and then rounded to float once, so the
  // compiler cannot fuse the multiply and the add (-march=native has FMA), which torch never does.
  const auto product_f32 = static_cast<float>(static_cast<double>(count_f32) * static_cast<double>(keep_f32));
  const auto sum_f32 = static_cast<float>(static_cast<double>(product_f32) + static_cast<double>(floor_f32));
  return round_half_even(static_cast<double>(sum_f32));
}

std::vector<std::int64_t> layer_top_counts(std::span<const std::vector<float>> scores, std::int64_t k) {
  std::vector<HeadCandidate> pool;
  for (std::size_t h = 0; h < scores.size(); ++h) {
    for (std::size_t i = 0; i < scores[h].size(); ++i) {
      pool.push_back({scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
    }
  }
  k = std::clamp<std::int64_t>(k, 0, static_cast<std::int64_t>(pool.size()));
  std::nth_element(pool.begin(), pool.begin() + k, pool.end(), ranks_before);
  std::vector<std::int64_t> counts(scores.size(), 0);
  for (auto it = pool.begin(); it != pool.begin() + k; ++it) ++counts[static_cast<std::size_t>(it->head)];
  return counts;
}

namespace {

enum class AdaKvAlloc { kOriginal, kKvpress };

// The layer's SnapKV view at one eviction: per head, how many of its newest entries form the
// observation window and the pooled scores of the entries before it.
struct LayerScores {
  std::vector<std::int64_t> windows;
  std::vector<std::vector<float>> scores;
};

std::vector<std::int64_t> window_counts(const LayerResidency& residency, std::int64_t window_begin) {
  std::vector<std::int64_t> windows;
  for (const auto& r : residency) windows.push_back(snapkv_window_count(r, window_begin));
  return windows;
}

// The head's scored entries at `chosen` (ascending indices into its resident vector), then its window.
std::vector<std::int32_t> chosen_then_window(std::span<const std::int32_t> resident,
                                             std::span<const std::int32_t> chosen, std::int64_t window) {
  std::vector<std::int32_t> kept;
  kept.reserve(chosen.size() + static_cast<std::size_t>(window));
  for (std::int32_t i : chosen) kept.push_back(resident[static_cast<std::size_t>(i)]);
  kept.insert(kept.end(), resident.end() - window, resident.end());
  return kept;
}

class AdaKvPolicy final : public SnapKvScoredPolicy {
 public:
  AdaKvPolicy(std::string spec, Budget budget, SnapKvScoring scoring, double floor_alpha, AdaKvAlloc alloc,
              EvictionPoints points)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, points), floor_alpha_(floor_alpha), alloc_(alloc) {}

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = uniform_capacity(ctx);
    if (ctx.trace == nullptr) {
      // An untraced layer has ONE representative head standing for all KV heads, so per-head
      // differences cannot be represented; the uniform per-head count gives the layer total
      // H x capacity (alloc=original: up to its rounding), which is all the accounting sees.
      snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
      return;
    }
    const std::vector<std::int64_t> windows =
        window_counts(residency, snapkv_window_begin(ctx, scoring_.window, points_.prefill));
    if (alloc_ == AdaKvAlloc::kOriginal) {
      evict_original(ctx, residency, capacity, windows);
    } else {
      evict_kvpress(ctx, residency, capacity, windows);
    }
  }

 private:
  LayerScores score_layer(const EvictionContext& ctx, const LayerResidency& residency,
                          std::vector<std::int64_t> windows) const {
    LayerScores layer{std::move(windows), std::vector<std::vector<float>>(residency.size())};
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      layer.scores[h] = snapkv_head_scores(ctx, *this, static_cast<int>(h), residency[h], layer.windows[h], scoring_);
    });
    return layer;
  }

  // FFY0/AdaKV update_kv_gqa. Its "no compression" test is B > the scored length; with heads of
  // different lengths (prefill=chunk, decode) kvsim compares the layer's scored total with H x B,
  // which is the same test for equal heads and the condition under which its torch.topk is defined.
  void evict_original(const EvictionContext& ctx, LayerResidency& residency, std::int64_t capacity,
                      const std::vector<std::int64_t>& windows) const {
    const auto heads = static_cast<std::int64_t>(residency.size());
    // The window is the newest positions, resident in every head: one B for the layer.
    const std::int64_t scored_budget = std::max<std::int64_t>(0, capacity - windows.front());
    std::int64_t scored_total = 0;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      scored_total += static_cast<std::int64_t>(residency[h].size()) - windows[h];
    }
    if (scored_total < heads * scored_budget) return;

    const LayerScores layer = score_layer(ctx, residency, windows);
    const std::vector<std::int64_t> counts = layer_top_counts(layer.scores, heads * scored_budget);
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      // torch's slice [:cap] keeps at most what the head has.
      const std::int64_t cap = adakv_head_cap(counts[h], scored_budget, floor_alpha_);
      const std::vector<std::int32_t> chosen = top_k_indices(layer.scores[h], cap);
      residency[h] = chosen_then_window(residency[h], chosen, layer.windows[h]);
    });
  }

  // NVIDIA/kvpress AdaKVPress over SnapKV: n_safe = int(n_kept x alpha) with n_kept the
  // window-inclusive per-head budget; the window ranks first (SnapKV pads it with the maximum
  // score), so the safeguard adds the head's top n_safe - window scored entries; the layer's
  // best remaining scores (ties: lower head, then lower position) fill H x capacity.
  void evict_kvpress(const EvictionContext& ctx, LayerResidency& residency, std::int64_t capacity,
                     const std::vector<std::int64_t>& windows) const {
    const auto heads = static_cast<std::int64_t>(residency.size());
    std::int64_t total = 0;
    for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
    const std::int64_t layer_budget = heads * capacity;
    if (total <= layer_budget) return;

    const LayerScores layer = score_layer(ctx, residency, windows);
    const auto n_safe = static_cast<std::int64_t>(std::floor(static_cast<double>(capacity) * floor_alpha_));
    std::vector<std::vector<bool>> keep(residency.size());
    std::int64_t remaining = layer_budget;
    std::vector<HeadCandidate> pool;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      keep[h].assign(layer.scores[h].size(), false);
      const auto safe = top_k_indices(layer.scores[h], std::max<std::int64_t>(0, n_safe - layer.windows[h]));
      for (std::int32_t i : safe) keep[h][static_cast<std::size_t>(i)] = true;
      remaining -= layer.windows[h] + static_cast<std::int64_t>(safe.size());
      for (std::size_t i = 0; i < layer.scores[h].size(); ++i) {
        if (!keep[h][i])
          pool.push_back({layer.scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
      }
    }
    remaining = std::clamp<std::int64_t>(remaining, 0, static_cast<std::int64_t>(pool.size()));
    std::nth_element(pool.begin(), pool.begin() + remaining, pool.end(), ranks_before);
    pool.resize(static_cast<std::size_t>(remaining));
    for (const HeadCandidate& c : pool)
      keep[static_cast<std::size_t>(c.head)][static_cast<std::size_t>(c.index)] = true;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      std::vector<std::int32_t> chosen;
      for (std::size_t i = 0; i < keep[h].size(); ++i) {
        if (keep[h][i]) chosen.push_back(static_cast<std::int32_t>(i));
      }
      residency[h] = chosen_then_window(residency[h], chosen, layer.windows[h]);
    }
  }

  double floor_alpha_;
  AdaKvAlloc alloc_;
};

}  // namespace

void register_adakv(PolicyRegistry& registry) {
  registry.add(
      {"adakv",
       "AdaKV: SnapKV scores; a layer's heads share its budget by their shares of its highest scores",
       "Feng et al. 2024, Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM "
       "Inference (arXiv 2407.11550); FFY0/AdaKV adaptive_snapkv/monkeypatch/snapkv_utils.py AdaptiveSnapKVCluster "
       "(alloc=original, its GQA path: one set per KV head, group mean); NVIDIA/kvpress "
       "kvpress/presses/adakv_press.py (alloc=kvpress)",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window of the SnapKV scorer: the most recent queries, kept in every head"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"gqa", "mean",
         "mean (FFY0/AdaKV gqa_support with gqa_func=mean, its GQA script; kvpress) | max (gqa_func=max) | expand "
         "(FFY0/AdaKV without gqa_support, pred.py's default: per query head, H = query heads, G copies of the cache "
         "in footprint and bytes)"},
        {"floor_alpha", "0.2",
         "in [0, 1]; original: head h keeps round((1 - floor_alpha) x count_h + int(floor_alpha x B)) scored entries, "
         "B = budget - window, count_h its share of the layer's top H x B; kvpress (its alpha_safeguard): each head "
         "keeps at least int(floor_alpha x budget) entries, its window first"},
        {"alloc", "original",
         "original (FFY0/AdaKV: caps rounded per head, the layer total is H x budget up to rounding) | kvpress "
         "(safeguard first, then the layer's best scores fill exactly H x budget)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         SnapKvScoring scoring = SnapKvScoring::read(args);
         scoring.gqa = read_gqa(args);
         const double floor_alpha = args.get_double("floor_alpha");
         const AdaKvAlloc alloc = args.get_choice("alloc", {"original", "kvpress"}) == "original"
                                      ? AdaKvAlloc::kOriginal
                                      : AdaKvAlloc::kKvpress;
         const auto points = read_eviction_points(args);
         if (!(floor_alpha >= 0.0 && floor_alpha <= 1.0)) args.fail("floor_alpha", "must be in [0, 1]");
         scoring.check_budget(args, budget);
         return std::make_unique<AdaKvPolicy>(args.canonical(), budget, scoring, floor_alpha, alloc, points);
       }});
}

}  // namespace kvsim

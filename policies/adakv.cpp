// adakv: AdaKV head-adaptive budget allocation (Feng et al. 2024, arXiv 2407.11550; NVIDIA/kvpress
// kvpress/presses/adakv_press.py over SnapKVPress). Within a layer the KV heads share one budget:
// H x capacity entries go to the highest scores across the layer's heads, after each head is
// guaranteed its window and its own top floor(alpha_safeguard x capacity) entries.
#include <algorithm>
#include <cmath>
#include <tbb/parallel_for.h>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class AdaKvPolicy final : public SnapKvScoredPolicy {
 public:
  AdaKvPolicy(std::string spec, Budget budget, SnapKvScoring scoring, double alpha, EvictionPoints points)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, points), alpha_(alpha) {}

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = uniform_capacity(ctx);
    if (ctx.trace == nullptr) {
      // An untraced layer has ONE representative head standing for all KV heads, so per-head
      // differences cannot be represented; the uniform per-head count gives the same layer total
      // H x capacity, which is all the accounting sees.
      snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
      return;
    }
    const auto heads = static_cast<std::int64_t>(residency.size());
    std::int64_t total = 0;
    for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
    const std::int64_t layer_budget = heads * capacity;
    if (total <= layer_budget) return;

    const std::int64_t window_begin = snapkv_window_begin(ctx, scoring_.window, points_.prefill);
    // kvpress: n_safe = int(n_kept * alpha) with n_kept the window-inclusive per-head budget; the
    // window ranks first (SnapKV pads it with the maximum score), so the safeguard adds the head's
    // top n_safe - window scored entries.
    const auto n_safe = static_cast<std::int64_t>(std::floor(static_cast<double>(capacity) * alpha_));
    std::vector<std::vector<float>> scores(residency.size());
    std::vector<std::vector<std::int32_t>> safe(residency.size());
    std::vector<std::int64_t> windows(residency.size());
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      windows[h] = snapkv_window_count(residency[h], window_begin);
      scores[h] = snapkv_head_scores(ctx, *this, static_cast<int>(h), residency[h], windows[h], scoring_);
      safe[h] = top_k_indices(scores[h], std::max<std::int64_t>(0, n_safe - windows[h]));
    });

    std::int64_t remaining = layer_budget;
    std::vector<HeadCandidate> pool;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      remaining -= windows[h] + static_cast<std::int64_t>(safe[h].size());
      std::vector<bool> is_safe(scores[h].size(), false);
      for (std::int32_t i : safe[h]) is_safe[static_cast<std::size_t>(i)] = true;
      for (std::size_t i = 0; i < scores[h].size(); ++i) {
        if (!is_safe[i]) pool.push_back({scores[h][i], static_cast<std::int32_t>(h), static_cast<std::int32_t>(i)});
      }
    }
    // The global pick across heads (ties: lower head, then lower position).
    remaining = std::clamp<std::int64_t>(remaining, 0, static_cast<std::int64_t>(pool.size()));
    std::nth_element(pool.begin(), pool.begin() + remaining, pool.end(), ranks_before);
    pool.resize(static_cast<std::size_t>(remaining));

    std::vector<std::vector<bool>> keep(residency.size());
    for (std::size_t h = 0; h < residency.size(); ++h) {
      keep[h].assign(residency[h].size(), false);
      for (std::int32_t i : safe[h]) keep[h][static_cast<std::size_t>(i)] = true;
      std::fill(keep[h].end() - windows[h], keep[h].end(), true);
    }
    for (const HeadCandidate& c : pool) keep[static_cast<std::size_t>(c.head)][static_cast<std::size_t>(c.index)] = true;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      std::vector<std::int32_t> kept;
      for (std::size_t i = 0; i < residency[h].size(); ++i) {
        if (keep[h][i]) kept.push_back(residency[h][i]);
      }
      residency[h] = std::move(kept);
    }
  }

 private:
  double alpha_;
};

}  // namespace

void register_adakv(PolicyRegistry& registry) {
  registry.add(
      {"adakv",
       "AdaKV: SnapKV scores; the layer's budget (heads x per-head budget) goes to its highest scores across heads",
       "Feng et al. 2024, Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM "
       "Inference (arXiv 2407.11550); NVIDIA/kvpress kvpress/presses/adakv_press.py (FFY0/AdaKV)",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "64", "observation window of the SnapKV scorer: the most recent queries, kept in every head"},
        {"kernel", "5", "pooling kernel along positions (odd)"},
        {"pooling", "avg", "max|avg"},
        {"alpha_safeguard", "0.2",
         "each head keeps at least floor(alpha_safeguard x budget) entries (its window first, then its top scores); "
         "in [0, 1]"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const SnapKvScoring scoring = SnapKvScoring::read(args);
         const double alpha = args.get_double("alpha_safeguard");
         args.set_canonical("alpha_safeguard", format_printf_g(alpha));  // as its spec has always printed it
         const auto points = read_eviction_points(args);
         if (!(alpha >= 0.0 && alpha <= 1.0)) args.fail("alpha_safeguard", "must be in [0, 1]");
         scoring.check_budget(args, budget);
         return std::make_unique<AdaKvPolicy>(args.canonical(), budget, scoring, alpha, points);
       }});
}

}  // namespace kvsim

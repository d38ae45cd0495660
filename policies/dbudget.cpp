// dbudget: DBudgetKV (Ni et al. 2025, arXiv 2502.16886), a KV cache without a fixed budget. Each
// KV head ranks its entries and prunes from the least important up, halting before the Frobenius
// norm of the observation window's attention matrix restricted to the kept entries would fall
// below `threshold` times the norm of the full matrix. No reference code was found: the paper's
// abstract and figure caption say "rank tokens, evict the least significant per layer, halt on the
// norm value of the reduced attention matrix"; the importance ranking here is SnapKV's pooled window
// attention (the paper's simplified ranking is by position) and the threshold is a kvsim choice.
//
// An untraced layer has no attention to size its budget from. It keeps the mean, over the traced
// layers, of the fraction of their non-window prompt entries the rule keeps at the end of the prompt
// (Policy::layer_statistic): at each eviction point it keeps its window plus that fraction of the
// rest, rounded half to even. Exact DBudgetKV when every layer is traced; a proxy otherwise that
// holds the untraced layers to the traced layers' typical pruning depth.
#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"
#include "util/error.h"

namespace kvsim {

namespace {

class DBudgetPolicy final : public Policy {
 public:
  DBudgetPolicy(std::string spec, double threshold, SnapKvScoring scoring, EvictionPoints points)
      : spec_(std::move(spec)), threshold_(threshold), scoring_(scoring), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, scoring_.window, points_, positions);
  }

  // Untraced layers take their kept fraction from the traced ones (file header).
  bool uses_layer_statistics(bool every_layer_traced) const override { return !every_layer_traced; }

  // The fraction of the non-window prompt entries the rule keeps in this (traced) layer.
  LayerStatistic layer_statistic(const EvictionContext& ctx, const LayerResidency& prompt) const override {
    LayerResidency residency = prompt;
    const HeadCounts counts = prune_traced(ctx, residency);
    return {counts.prunable > 0 ? static_cast<double>(counts.kept) / static_cast<double>(counts.prunable) : 1.0};
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    if (ctx.trace != nullptr) {
      prune_traced(ctx, residency);
      return;
    }
    const double fraction = traced_mean_fraction(ctx);
    const std::int64_t window_begin = snapkv_window_begin(ctx, scoring_.window, points_.prefill);
    for (auto& resident : residency) {
      const std::int64_t window = snapkv_window_count(resident, window_begin);
      const auto prefix = static_cast<std::int64_t>(resident.size()) - window;
      keep_newest(resident, window + round_half_even(fraction * static_cast<double>(prefix)));
    }
  }

 private:
  struct HeadCounts {
    std::int64_t kept = 0;      // non-window entries kept
    std::int64_t prunable = 0;  // non-window entries before
  };

  // Mean of the traced layers' statistics; the engine supplies them whenever a layer is untraced.
  double traced_mean_fraction(const EvictionContext& ctx) const {
    double sum = 0.0;
    int traced = 0;
    for (const LayerStatistic& s : ctx.layer_statistics) {
      if (s.empty()) continue;
      sum += s.front();
      ++traced;
    }
    if (traced == 0) {
      throw InputError(spec() + ": layer " + std::to_string(ctx.layer) +
                       " is untraced and no traced layer gives a kept fraction to follow");
    }
    return sum / traced;
  }

  HeadCounts prune_traced(const EvictionContext& ctx, LayerResidency& residency) const {
    const std::int64_t window_begin = snapkv_window_begin(ctx, scoring_.window, points_.prefill);
    std::vector<HeadCounts> counts(residency.size());
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      counts[h] = prune_head(ctx, static_cast<int>(h), residency[h], window_begin);
    });
    HeadCounts total;
    for (const HeadCounts& c : counts) {
      total.kept += c.kept;
      total.prunable += c.prunable;
    }
    return total;
  }

  HeadCounts prune_head(const EvictionContext& ctx, int h, std::vector<std::int32_t>& resident,
                        std::int64_t window_begin) const {
    const std::int64_t window = snapkv_window_count(resident, window_begin);
    const auto prefix = static_cast<std::int64_t>(resident.size()) - window;
    if (prefix <= 0) return {};
    // One softmax gives both the ranking (SnapKV's pooled scores) and the norm's squares.
    const WindowAttention attention = head_window_attention(ctx, *this, h, resident, window);
    const std::vector<float> scores = scoring_.pool(attention.scores);
    const std::vector<double>& squares = attention.squares;
    // Best first; ties: the older entry first, so the kept set is a function of the scores alone.
    std::vector<std::int64_t> order(static_cast<std::size_t>(prefix));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];
    });
    // ||A_S||_F >= threshold ||A||_F  <=>  sum_S a^2 >= threshold^2 sum a^2, the sums taken in rank
    // order (window first) so that keeping everything meets the bound exactly.
    double kept = 0.0;
    for (std::int64_t j = prefix; j < static_cast<std::int64_t>(resident.size()); ++j) {
      kept += squares[static_cast<std::size_t>(j)];
    }
    double total = kept;
    for (std::int64_t i : order) total += squares[static_cast<std::size_t>(i)];
    const double need = threshold_ * threshold_ * total;
    std::size_t keep = 0;
    while (keep < order.size() && kept < need) kept += squares[static_cast<std::size_t>(order[keep++])];
    std::vector<bool> is_kept(static_cast<std::size_t>(prefix), false);
    for (std::size_t k = 0; k < keep; ++k) is_kept[static_cast<std::size_t>(order[k])] = true;
    std::vector<std::int32_t> out;
    out.reserve(keep + static_cast<std::size_t>(window));
    for (std::int64_t i = 0; i < prefix; ++i) {
      if (is_kept[static_cast<std::size_t>(i)]) out.push_back(resident[static_cast<std::size_t>(i)]);
    }
    out.insert(out.end(), resident.end() - window, resident.end());
    resident = std::move(out);
    return {static_cast<std::int64_t>(keep), prefix};
  }

  std::string spec_;
  double threshold_;
  SnapKvScoring scoring_;
  EvictionPoints points_;
};

}  // namespace

void register_dbudget(PolicyRegistry& registry) {
  registry.add(
      {"dbudget",
       "DBudgetKV: no fixed budget; each head prunes its lowest-ranked entries until the window's attention "
       "norm over the kept entries would drop below threshold x the full norm",
       "Ni et al. 2025, DBudgetKV: Dynamic Budget in KV Cache Compression for Ensuring Optimal Performance "
       "(arXiv 2502.16886); implemented from the paper's description (no reference code found): SnapKV ranking "
       "and the threshold default are kvsim choices; an untraced layer keeps the traced layers' mean kept fraction",
       {{"threshold", "0.99",
         "in (0, 1]: the kept entries must carry >= threshold x the Frobenius norm of the window's attention"},
        {"window", "32", "observation window: the most recent queries, always kept"},
        {"kernel", "7", "pooling kernel of the ranking scores along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (re-applies the rule to the resident entries)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const double threshold = args.get_double("threshold");
         const SnapKvScoring scoring = SnapKvScoring::read(args);
         const auto points = read_eviction_points(args);
         if (!(threshold > 0.0 && threshold <= 1.0)) args.fail("threshold", "must be in (0, 1]");
         return std::make_unique<DBudgetPolicy>(args.canonical(), threshold, scoring, points);
       }});
}

}  // namespace kvsim

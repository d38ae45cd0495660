// dbudget: DBudgetKV (Ni et al. 2025, arXiv 2502.16886), a KV cache without a fixed budget. Each
// KV head ranks its entries and prunes from the least important up, halting before the Frobenius
// norm of the observation window's attention matrix restricted to the kept entries would fall
// below `threshold` times the norm of the full matrix. No reference code was found: the paper's
// abstract and figure caption say "rank tokens, evict the least significant per layer, halt on the
// norm value of the reduced attention matrix"; the importance ranking here is SnapKV's pooled window
// attention (the paper's simplified ranking is by position) and the threshold is a kvsim choice.
#include <algorithm>
#include <numeric>
#include <tbb/parallel_for.h>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class DBudgetPolicy final : public Policy {
 public:
  DBudgetPolicy(double threshold, SnapKvScoring scoring, EvictionPoints points)
      : threshold_(threshold), scoring_(scoring), points_(points) {}

  std::string spec() const override {
    return "dbudget(threshold=" + format_spec_number(threshold_) + ", " + scoring_.format() + ", " +
           format_eviction_points(points_) + ")";
  }
  EvictionPoints eviction_points() const override { return points_; }
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, scoring_.window, points_, positions);
  }

  // The kept count follows from the layer's attention, which an untraced layer does not have.
  bool requires_every_layer_traced() const override { return true; }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    if (ctx.trace == nullptr) return;  // unreachable: the engine refuses partial traces (above)
    const std::int64_t window_begin = snapkv_window_begin(ctx, scoring_.window, points_.prefill);
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      auto& resident = residency[h];
      const std::int64_t window = snapkv_window_count(resident, window_begin);
      const auto prefix = static_cast<std::int64_t>(resident.size()) - window;
      if (prefix <= 0) return;
      // One softmax gives both the ranking (SnapKV's pooled scores) and the norm's squares.
      const WindowAttention attention = head_window_attention(ctx, *this, static_cast<int>(h), resident, window);
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
    });
  }

 private:
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
       "and the threshold default are kvsim choices; needs every layer traced",
       {{"threshold", "0.99",
         "in (0, 1]: the kept entries must carry >= threshold x the Frobenius norm of the window's attention"},
        {"window", "32", "observation window: the most recent queries, always kept"},
        {"kernel", "7", "pooling kernel of the ranking scores along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (re-applies the rule to the resident entries)"}},
       [](SpecArgs& args) -> std::unique_ptr<Policy> {
         const double threshold = args.get_double("threshold", 0.99);
         const SnapKvScoring scoring = SnapKvScoring::read(args, {32, 7, true});
         const auto points = read_eviction_points(args, {PrefillEviction::kPostFill, 0});
         if (!(threshold > 0.0 && threshold <= 1.0)) args.fail("threshold", "must be in (0, 1]");
         return std::make_unique<DBudgetPolicy>(threshold, scoring, points);
       }});
}

}  // namespace kvsim

// snapkv: SnapKV (Li et al. 2024, arXiv 2404.14469; reference FasterDecoding/SnapKV
// snapkv/monkeypatch/snapkv_utils.py). The last `window` queries vote for earlier entries with
// their causal attention; votes are pooled along positions and each KV head keeps the window plus
// its top-voted entries, up to the capacity of DESIGN.md §4.
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class SnapKvPolicy final : public Policy {
 public:
  SnapKvPolicy(Budget budget, std::int64_t window, int kernel, bool max_pooling, EvictionPoints points)
      : budget_(budget), window_(window), kernel_(kernel), max_pooling_(max_pooling), points_(points) {}

  std::string spec() const override {
    return "snapkv(budget=" + budget_.format() + ", window=" + std::to_string(window_) +
           ", kernel=" + std::to_string(kernel_) + ", pooling=" + (max_pooling_ ? "max" : "avg") + ", " +
           format_eviction_points(points_) + ")";
  }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_);
    snapkv_evict_to_capacity(ctx, *this, residency, capacity, {window_, kernel_, max_pooling_}, points_.prefill);
  }

 private:
  Budget budget_;
  std::int64_t window_;
  int kernel_;
  bool max_pooling_;
  EvictionPoints points_;
};

}  // namespace

void register_snapkv(PolicyRegistry& registry) {
  registry.add(
      {"snapkv",
       "SnapKV: the last `window` queries score earlier entries by pooled causal attention; keep the top ones",
       "Li et al. 2024, SnapKV: LLM Knows What You are Looking for Before Generation (arXiv 2404.14469); "
       "FasterDecoding/SnapKV",
       {{"budget", "0.2", "fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window: the most recent queries, always kept"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](SpecArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget", 0.2);
         const std::int64_t window = args.get_int("window", 32);
         const std::int64_t kernel = args.get_int("kernel", 7);
         const bool max_pooling = args.get_choice("pooling", "max", {"max", "avg"}) == "max";
         const auto points = read_eviction_points(args, {PrefillEviction::kPostFill, 0});
         if (window < 1) args.fail("window", "must be >= 1");
         if (kernel < 1 || kernel % 2 == 0) args.fail("kernel", "must be an odd integer >= 1");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<SnapKvPolicy>(budget, window, static_cast<int>(kernel), max_pooling, points);
       }});
}

}  // namespace kvsim

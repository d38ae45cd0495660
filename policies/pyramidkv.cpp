// pyramidkv: PyramidKV (Cai et al. 2024, arXiv 2406.02069; Zefan-Cai/KVCache-Factory
// pyramidkv/pyramidkv_utils.py, NVIDIA/kvpress kvpress/presses/pyramidkv_press.py). SnapKV's
// scores and per-head selection, with a per-layer capacity that shrinks from the lower layers to
// the higher ones ("pyramidal information funneling"); the mean over layers is SnapKV's capacity.
#include "policies/pyramid_budget.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class PyramidKvPolicy final : public Policy {
 public:
  PyramidKvPolicy(Budget budget, SnapKvScoring scoring, std::int64_t beta, EvictionPoints points)
      : budget_(budget), scoring_(scoring), beta_(beta), points_(points) {}

  std::string spec() const override {
    return "pyramidkv(budget=" + budget_.format() + ", window=" + std::to_string(scoring_.window) +
           ", kernel=" + std::to_string(scoring_.kernel) + ", pooling=" + (scoring_.max_pooling ? "max" : "avg") +
           ", beta=" + std::to_string(beta_) + ", " + format_eviction_points(points_) + ")";
  }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, scoring_.window, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    // The capacity depends only on the layer index, never on scores, so an untraced layer (one
    // representative head) keeps its own layer's count too.
    const std::int64_t capacity = pyramid_capacity(budget_, ctx.pass, ctx.prefill, points_.prefill, scoring_.window,
                                                   static_cast<double>(beta_), ctx.layer, ctx.model.num_layers);
    snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
  }

 private:
  Budget budget_;
  SnapKvScoring scoring_;
  std::int64_t beta_;
  EvictionPoints points_;
};

}  // namespace

void register_pyramidkv(PolicyRegistry& registry) {
  registry.add(
      {"pyramidkv",
       "PyramidKV: SnapKV scores with a per-layer budget shrinking linearly from layer 0 to the last (same mean)",
       "Cai et al. 2024, PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling "
       "(arXiv 2406.02069); Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py, "
       "NVIDIA/kvpress kvpress/presses/pyramidkv_press.py",
       {{"budget", "0.2",
         "mean over layers: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "64", "observation window: the most recent queries, always kept"},
        {"kernel", "5", "pooling kernel along positions (odd)"},
        {"pooling", "avg", "max|avg"},
        {"beta", "20", "pyramid steepness: the top layer gets about 1/beta of the mean budget (>= 1)"},
        {"prefill", "post_fill",
         "post_fill (once after the prompt) | chunk (after every prefill chunk; each chunk's share scaled per layer) "
         "| none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](SpecArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget", 0.2);
         const std::int64_t window = args.get_int("window", 64);
         const std::int64_t kernel = args.get_int("kernel", 5);
         const bool max_pooling = args.get_choice("pooling", "avg", {"max", "avg"}) == "max";
         const std::int64_t beta = args.get_int("beta", 20);
         const auto points = read_eviction_points(args, {PrefillEviction::kPostFill, 0});
         if (window < 1) args.fail("window", "must be >= 1");
         if (kernel < 1 || kernel % 2 == 0) args.fail("kernel", "must be an odd integer >= 1");
         if (beta < 1) args.fail("beta", "must be >= 1");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<PyramidKvPolicy>(budget, SnapKvScoring{window, static_cast<int>(kernel), max_pooling},
                                                  beta, points);
       }});
}

}  // namespace kvsim

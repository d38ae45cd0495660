// pyramidkv: PyramidKV (Cai et al. 2024, arXiv 2406.02069; Zefan-Cai/KVCache-Factory
// pyramidkv/pyramidkv_utils.py, NVIDIA/kvpress kvpress/presses/pyramidkv_press.py). SnapKV's
// scores and per-head selection, with a per-layer capacity that shrinks from the lower layers to
// the higher ones ("pyramidal information funneling"); the mean over layers is SnapKV's capacity.
// The layer split is the original's (KVCache-Factory; policies/pyramid_budget.h), the defaults
// (window 64, kernel 5, avg pooling, beta 20) kvpress's. GQA: KVCache-Factory repeats K/V per query
// head before update_kv (maybe_repeat_kv_before_cache; its kv_head layout is opt-in), i.e. gqa=expand;
// the default gqa=mean is kvpress's (see snapkv.cpp).
#include "policies/pyramid_budget.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class PyramidKvPolicy final : public SnapKvScoredPolicy {
 public:
  PyramidKvPolicy(std::string spec, Budget budget, SnapKvScoring scoring, std::int64_t beta, EvictionPoints points)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, points), beta_(beta) {}

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    // The capacity depends only on the layer index, never on scores, so an untraced layer (one
    // representative head) keeps its own layer's count too.
    const std::int64_t capacity = pyramid_capacity(budget_, ctx.pass, ctx.prefill, points_.prefill, scoring_.window,
                                                   beta_, ctx.layer, ctx.model.num_layers);
    snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
  }

 private:
  std::int64_t beta_;
};

}  // namespace

void register_pyramidkv(PolicyRegistry& registry) {
  registry.add(
      {"pyramidkv",
       "PyramidKV: SnapKV scores with a per-layer budget shrinking linearly from layer 0 to the last (same mean)",
       "Cai et al. 2024, PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling "
       "(arXiv 2406.02069); Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py (the layer split), "
       "NVIDIA/kvpress kvpress/presses/pyramidkv_press.py (the defaults)",
       {{"budget", "0.2",
         "mean over layers: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the "
         "window"},
        {"window", "64", "observation window: the most recent queries, always kept"},
        {"kernel", "5", "pooling kernel along positions (odd)"},
        {"pooling", "avg", "max|avg"},
        {"gqa", "mean",
         "mean (kvpress: one cache per KV head, the group's mean window attention) | max (the group's maximum; "
         "KVCache-Factory's kv_head layout offers mean|max|sum) | expand (Zefan-Cai/KVCache-Factory's default: per "
         "query head, G copies of the cache in footprint and bytes)"},
        {"beta", "20",
         "pyramid steepness: the top layer scores about 1/beta of the mean scored budget, plus the window (integer >= "
         "1)"},
        {"prefill", "post_fill",
         "post_fill (once after the prompt) | chunk (after every prefill chunk; each chunk's share scaled per layer) "
         "| none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         SnapKvScoring scoring = SnapKvScoring::read(args);
         scoring.gqa = read_gqa(args);
         const std::int64_t beta = args.get_int("beta");
         const auto points = read_eviction_points(args);
         if (beta < 1) args.fail("beta", "must be >= 1");
         scoring.check_budget(args, budget);
         return std::make_unique<PyramidKvPolicy>(args.canonical(), budget, scoring, beta, points);
       }});
}

}  // namespace kvsim

// l2norm: keep the keys with the LOWEST L2 norm (Devoto et al. 2024, "A Simple and Effective L2
// Norm-Based Strategy for KV Cache Compression", arXiv 2406.11430; the authors' code
// alessiodevoto/l2compress cache.py l2_compress, ported as NVIDIA/kvpress
// kvpress/presses/knorm_press.py KnormPress, score = -||k||). Low-norm keys draw high attention in
// trained models, so the norm alone stands in for the attention the queries would pay.
// The authors leave the first layers whole (l2_compress skip_layers=[0, 1] in their README and
// eval_lm_quick.py): layers below skip_layers keep every entry; skip_layers=0 compresses every
// layer, as KnormPress does. docs/policy-sources.md "l2norm" lists the remaining differences.
#include <tbb/parallel_for.h>
#include <cmath>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"

namespace kvsim {

namespace {

class L2NormPolicy final : public Policy {
 public:
  L2NormPolicy(std::string spec, Budget budget, ProtectedEnds ends, std::int64_t skip_layers, EvictionPoints points)
      : spec_(std::move(spec)), budget_(budget), ends_(ends), skip_layers_(skip_layers), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    if (ctx.layer < skip_layers_) return;  // l2_compress: `if layer not in skip_layers` prunes
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, ends_.total());
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      if (size <= capacity) return;
      const ProtectedEnds ends = ends_.clipped(size);
      std::vector<float> scores;
      if (ctx.trace != nullptr) {
        // Untraced layers keep the right count whatever the scores; traced ones score the middle.
        const HeadMatrix& keys = ctx.trace->keys[h];
        for (std::int64_t i = ends.sinks; i < size - ends.recent; ++i) {
          scores.push_back(static_cast<float>(-keys.row(resident[static_cast<std::size_t>(i)]).cast<double>().norm()));
        }
      } else {
        scores.assign(static_cast<std::size_t>(size - ends.total()), 0.0f);
      }
      resident = keep_ends_and_top(resident, scores, ends, capacity);
    });
  }

 private:
  std::string spec_;
  Budget budget_;
  ProtectedEnds ends_;
  std::int64_t skip_layers_;
  EvictionPoints points_;
};

}  // namespace

void register_l2norm(PolicyRegistry& registry) {
  registry.add(
      {"l2norm",
       "Knorm: keep the keys with the lowest L2 norm (query-free)",
       "Devoto et al. 2024, A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression "
       "(arXiv 2406.11430); alessiodevoto/l2compress cache.py; NVIDIA/kvpress kvpress/presses/knorm_press.py",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the protected entries, or a token count (>=1) incl. them"},
        {"sinks", "0", "first resident entries always kept (kvpress: none)"},
        {"window", "0", "most recent resident entries always kept (kvpress: none)"},
        {"skip_layers", "2",
         "first layers kept whole (l2compress skip_layers=[0, 1]); 0 compresses every layer (kvpress)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t sinks = args.get_int("sinks");
         const std::int64_t window = args.get_int("window");
         const std::int64_t skip_layers = args.get_int("skip_layers");
         const auto points = read_eviction_points(args);
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (window < 0) args.fail("window", "must be >= 0");
         if (skip_layers < 0) args.fail("skip_layers", "must be >= 0");
         if (!budget.is_fraction && budget.tokens < sinks + window) {
           args.fail("budget",
                     "a token budget must hold the sinks and window (" + std::to_string(sinks + window) + ")");
         }
         return std::make_unique<L2NormPolicy>(args.canonical(), budget, ProtectedEnds{sinks, window}, skip_layers,
                                               points);
       }});
}

}  // namespace kvsim

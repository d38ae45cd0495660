// snapkv: SnapKV (Li et al. 2024, arXiv 2404.14469; reference FasterDecoding/SnapKV
// snapkv/monkeypatch/snapkv_utils.py). The last `window` queries vote for earlier entries with
// their causal attention; votes are pooled along positions and each KV head keeps the window plus
// its top-voted entries, up to the capacity of DESIGN.md §4.
// GQA: the authors' code repeats K/V per query head before update_kv (mistral_hijack_4_37.py "[SnapKV]
// move to ahead"), so it scores, selects and stores per query head: gqa=expand (G copies of the cache,
// Policy::kv_copies). The default gqa=mean is kvpress's (one cache per KV head, the group's mean),
// kvsim's behaviour before the parameter existed; gqa=max takes the group's maximum
// (docs/policy-sources.md "snapkv" measures the three).
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class SnapKvPolicy final : public SnapKvScoredPolicy {
 public:
  using SnapKvScoredPolicy::SnapKvScoredPolicy;

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    snapkv_evict_to_capacity(ctx, *this, residency, uniform_capacity(ctx), scoring_, points_.prefill);
  }
};

}  // namespace

void register_snapkv(PolicyRegistry& registry) {
  registry.add(
      {"snapkv",
       "SnapKV: the last `window` queries score earlier entries by pooled causal attention; keep the top ones",
       "Li et al. 2024, SnapKV: LLM Knows What You are Looking for Before Generation (arXiv 2404.14469); "
       "FasterDecoding/SnapKV",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "32", "observation window: the most recent queries, always kept"},
        {"kernel", "7", "pooling kernel along positions (odd)"},
        {"pooling", "max", "max|avg"},
        {"gqa", "mean",
         "mean (kvpress: one cache per KV head, the group's mean window attention) | max (the group's maximum) | "
         "expand (FasterDecoding/SnapKV's code: per query head, G copies of the cache in footprint and bytes)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         SnapKvScoring scoring = SnapKvScoring::read(args);
         scoring.gqa = read_gqa(args);
         const auto points = read_eviction_points(args);
         scoring.check_budget(args, budget);
         return std::make_unique<SnapKvPolicy>(args.canonical(), budget, scoring, points);
       }});
}

}  // namespace kvsim

// adakv: hand-checked head-adaptive kept sets, and per-layer totals at every eviction.
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(AdaKv, HandHeadAdaptiveSelection) {
  // T=6, window {5} (weight 1), kernel 1, B=3 per head -> the layer keeps 6 entries.
  // Head 0: x = [8,7,6,5,1 | 1], sum 28 -> scores [.286,.250,.214,.179,.036].
  // Head 1: x = [1,1,1,1,1 | 1], sum 6 -> scores .167 each (exact ties).
  const HandLayer hand({{8, 7, 6, 5, 1, 1}, {1, 1, 1, 1, 1, 1}});
  // alpha 0 (and the default 0.2: floor(3 x 0.2) = 0 safe entries): 6 - 2 windows = 4 global picks,
  // all from head 0 (.286,.250,.214,.179 > .167): head 0 keeps 5, head 1 only its window.
  const LayerResidency greedy{{0, 1, 2, 3, 5}, {5}};
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, alpha_safeguard=0)"), greedy);
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1)"), greedy);
  // alpha 0.7: n_safe = floor(2.1) = 2 = window + 1: each head's top entry is safe (head 1: ties ->
  // lowest position 0); 6 - 4 = 2 global picks: head 0's .250 and .214.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, alpha_safeguard=0.7)"), (LayerResidency{{0, 1, 2, 5}, {0, 5}}));
  // alpha 1: n_safe = 3 = the whole budget: uniform, SnapKV per head.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, alpha_safeguard=1)"), (LayerResidency{{0, 1, 5}, {0, 1, 5}}));
  // policy-notes.md's kvpress example (H=2, T=4, r=0.5, n_safe=0): h0 = [.9,.8,.7,.6], h1 = [.1,.2,.3,.05]
  // keeps all of head 0 and nothing of head 1. Here with a window {4} of weight 0.01 (x ~ scores).
  const HandLayer notes({{.9, .8, .7, .6, .01}, {.1, .2, .3, .05, .01}});
  // Scores: h0 x/3.01, h1 x/0.66 -> h1 = [.152,.303,.455,.076] competes above h0's [.299,.266,.233,.199]:
  // B=3 -> 4 global picks: .455(h1 2), .303(h1 1), .299(h0 0), .266(h0 1).
  EXPECT_EQ(notes.kept("adakv(budget=3, window=1, kernel=1)"), (LayerResidency{{0, 1, 4}, {1, 2, 4}}));
}


TEST(AdaKv, LayerTotalEqualsTheAllocationAtEveryEviction) {
  for (const char* spec : {"adakv(budget=0.3, window=8, kernel=3, prefill=chunk, decode=step)",
                           "adakv(budget=0.3, window=8, kernel=3, alpha_safeguard=0.5, prefill=chunk, decode=step)"}) {
    policy_test::expect_shared_layer_budget(spec);
  }
}

TEST(AdaKv, SafeguardBoundsEachHead) {
  // Post-fill, n=400, B=100 per head, alpha 0.5: every head keeps >= floor(100 x 0.5) = 50.
  const ModelShape model{"tiny", 1, 4, 4, 8};
  auto source = testing_support::random_trace(model, 400, 0, {0}, 5, 3.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(400, 0, 400);
  const auto policy = PolicyRegistry::builtin().create("adakv(budget=100, window=8, kernel=1, alpha_safeguard=0.5)");
  const LayerReplay r = replay_layer({model, source.header().requests[0], plan, 0, &trace, {}}, *policy);
  std::int64_t total = 0;
  for (const auto& h : r.final_residency) {
    EXPECT_GE(h.size(), 50u);
    total += static_cast<std::int64_t>(h.size());
  }
  EXPECT_EQ(total, 400);
}

TEST(AdaKv, RejectsBadParameters) {
  policy_test::expect_rejected({"adakv(alpha_safeguard=1.5)", "adakv(alpha_safeguard=-0.1)", "adakv(kernel=2)",
                                "adakv(budget=10)", "adakv(window=0)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("adakv")->spec(),
            "adakv(budget=0.2, window=64, kernel=5, pooling=avg, alpha_safeguard=0.2, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

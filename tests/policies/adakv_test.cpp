// adakv: FFY0/AdaKV's head-cap formula by hand, hand-checked head-adaptive kept sets (alloc=original
// and alloc=kvpress), and per-layer totals at every eviction.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "policies/adakv_alloc.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(AdaKvAlloc, HeadCapsOfTheEightHeadExample) {
  // 8 heads, B = 400 scored entries per head, floor_alpha 0.2: floor = int(400 x 0.2) = 80, and
  // head h keeps round(0.8 count_h + 80): 1010 -> 808 + 80 = 888; 606 -> 484.8 + 80 = 564.8 -> 565;
  // 621 -> 576.8 -> 577; 177 -> 221.6 -> 222; 205 -> 244; 193 -> 234.4 -> 234; 192 -> 233.6 -> 234;
  // 196 -> 236.8 -> 237. The counts sum to 8 x 400 = 3200, the caps to 3201 (rounding).
  const std::vector<std::int64_t> counts{1010, 606, 621, 177, 205, 193, 192, 196};
  const std::vector<std::int64_t> want{888, 565, 577, 222, 244, 234, 234, 237};
  EXPECT_EQ(adakv_floor_capacity(400, 0.2), 80);
  std::vector<std::int64_t> caps;
  for (std::int64_t c : counts) caps.push_back(adakv_head_cap(c, 400, 0.2));
  EXPECT_EQ(caps, want);
  EXPECT_EQ(std::accumulate(caps.begin(), caps.end(), std::int64_t{0}), 3201);
}

TEST(AdaKvAlloc, HeadCapRoundsLikeTorchInFloat32) {
  // torch.round rounds half to even. B = 5, floor_alpha 0.5: floor = int(2.5) = 2;
  // count 3 -> 1.5 + 2 = 3.5 -> 4; count 1 -> 0.5 + 2 = 2.5 -> 2; count 0 -> the floor, 2.
  EXPECT_EQ(adakv_floor_capacity(5, 0.5), 2);
  EXPECT_EQ(adakv_head_cap(3, 5, 0.5), 4);
  EXPECT_EQ(adakv_head_cap(1, 5, 0.5), 2);
  EXPECT_EQ(adakv_head_cap(0, 5, 0.5), 2);
  // float32: 1 - 0.3 becomes 0.69999999; x 645 = 451.4999923, which rounds to the float 451.5;
  // + 30 = 481.5 -> 482. In float64 it would be 481.49999999999994 -> 481.
  EXPECT_EQ(adakv_head_cap(645, 100, 0.3), 482);
  // floor_alpha 1: every head gets the floor int(B) = B whatever its count (uniform SnapKV).
  EXPECT_EQ(adakv_head_cap(37, 20, 1.0), 20);
}

TEST(AdaKvAlloc, LayerTopCountsByHand) {
  // Scores h0 = [.9, .1, .5], h1 = [.8, .8, .2]. Top 3 of the layer: .9 (h0), .8, .8 (h1).
  const std::vector<std::vector<float>> scores{{.9f, .1f, .5f}, {.8f, .8f, .2f}};
  EXPECT_EQ(layer_top_counts(scores, 3), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(layer_top_counts(scores, 4), (std::vector<std::int64_t>{2, 2}));  // + .5 (h0)
  EXPECT_EQ(layer_top_counts(scores, 0), (std::vector<std::int64_t>{0, 0}));
  // An exact tie goes to the lower head (torch.topk leaves it unspecified).
  EXPECT_EQ(layer_top_counts(std::vector<std::vector<float>>{{.5f}, {.5f}}, 1), (std::vector<std::int64_t>{1, 0}));
}

TEST(AdaKv, HandHeadAdaptiveSelectionOriginal) {
  // T=6, window {5} (weight 1), kernel 1, budget 3 per head: B = 2 scored entries, the layer's top
  // H x B = 4 scores are counted per head.
  // Head 0: x = [8,7,6,5,1 | 1], sum 28 -> scores [.286,.250,.214,.179,.036].
  // Head 1: x = [1,1,1,1,1 | 1], sum 6 -> scores .167 each (exact ties).
  // The top 4 are all head 0's: counts [4, 0].
  const HandLayer hand({{8, 7, 6, 5, 1, 1}, {1, 1, 1, 1, 1, 1}});
  // floor_alpha 0.2: floor int(0.4) = 0; caps round(3.2) = 3 and 0 (the layer keeps 5 < 6: rounding).
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1)"), (LayerResidency{{0, 1, 2, 5}, {5}}));
  // floor_alpha 0: caps = counts, 4 and 0.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=0)"), (LayerResidency{{0, 1, 2, 3, 5}, {5}}));
  // floor_alpha 0.5: floor int(1.0) = 1; caps 2 + 1 = 3 and 0 + 1 = 1 (head 1: ties -> position 0).
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=0.5)"), (LayerResidency{{0, 1, 2, 5}, {0, 5}}));
  // floor_alpha 1: floor int(2.0) = 2 for every head: uniform SnapKV.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=1)"), (LayerResidency{{0, 1, 5}, {0, 1, 5}}));
}

TEST(AdaKv, HandHeadAdaptiveSelectionKvpress) {
  // The layer of HandHeadAdaptiveSelectionOriginal. floor_alpha 0 (and 0.2: floor(3 x 0.2) = 0 safe
  // entries): 6 - 2 windows = 4 global picks, all from head 0: head 0 keeps 5, head 1 only its window.
  const HandLayer hand({{8, 7, 6, 5, 1, 1}, {1, 1, 1, 1, 1, 1}});
  const LayerResidency greedy{{0, 1, 2, 3, 5}, {5}};
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=0, alloc=kvpress)"), greedy);
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, alloc=kvpress)"), greedy);
  // floor_alpha 0.7: n_safe = floor(2.1) = 2 = window + 1: each head's top entry is safe (head 1: ties
  // -> lowest position 0); 6 - 4 = 2 global picks: head 0's .250 and .214.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=0.7, alloc=kvpress)"),
            (LayerResidency{{0, 1, 2, 5}, {0, 5}}));
  // floor_alpha 1: n_safe = 3 = the whole budget: uniform, SnapKV per head.
  EXPECT_EQ(hand.kept("adakv(budget=3, window=1, kernel=1, floor_alpha=1, alloc=kvpress)"),
            (LayerResidency{{0, 1, 5}, {0, 1, 5}}));
  // policy-notes.md's kvpress example (H=2, T=4, r=0.5, n_safe=0): h0 = [.9,.8,.7,.6], h1 = [.1,.2,.3,.05]
  // keeps all of head 0 and nothing of head 1. Here with a window {4} of weight 0.01 (x ~ scores).
  const HandLayer notes({{.9, .8, .7, .6, .01}, {.1, .2, .3, .05, .01}});
  // Scores: h0 x/3.01, h1 x/0.66 -> h1 = [.152,.303,.455,.076] competes above h0's [.299,.266,.233,.199]:
  // B=3 -> 4 global picks: .455(h1 2), .303(h1 1), .299(h0 0), .266(h0 1).
  EXPECT_EQ(notes.kept("adakv(budget=3, window=1, kernel=1, alloc=kvpress)"), (LayerResidency{{0, 1, 4}, {1, 2, 4}}));
}

TEST(AdaKv, LayerTotalFollowsTheAllocationAtEveryEviction) {
  // kvpress fills exactly H x capacity; the original rounds each of the 4 heads' caps (at most 1/2
  // each) and truncates the floor int(floor_alpha x B) (less than 1 each): within 4 x 3/2 = 6.
  for (const char* spec : {"adakv(budget=0.3, window=8, kernel=3, alloc=kvpress, prefill=chunk, decode=step)",
                           "adakv(budget=0.3, window=8, kernel=3, floor_alpha=0.5, alloc=kvpress, prefill=chunk, "
                           "decode=step)"}) {
    policy_test::expect_shared_layer_budget(spec);
  }
  for (const char* spec : {"adakv(budget=0.3, window=8, kernel=3, prefill=chunk, decode=step)",
                           "adakv(budget=0.3, window=8, kernel=3, floor_alpha=0.5, prefill=chunk, decode=step)"}) {
    policy_test::expect_shared_layer_budget(spec, 6);
  }
}

// Post-fill, n=400, 4 heads, budget 100 per head (window 8): kept entries per head.
std::vector<std::int64_t> head_sizes_after_post_fill(const std::string& spec) {
  const ModelShape model{"tiny", 1, 4, 4, 8};
  auto source = testing_support::random_trace(model, 400, 0, {0}, 5, 3.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(400, 0, 400);
  const auto policy = PolicyRegistry::builtin().create(spec);
  const LayerReplay r = replay_layer({model, source.header().requests[0], plan, 0, &trace, {}}, *policy);
  std::vector<std::int64_t> sizes;
  for (const auto& h : r.final_residency) sizes.push_back(static_cast<std::int64_t>(h.size()));
  return sizes;
}

TEST(AdaKv, FloorBoundsEachHead) {
  // original: B = 92, floor int(0.5 x 92) = 46: every head keeps >= 8 + 46 = 54; the total is
  // 400 up to rounding (+-2 for 4 heads: 46 is exact, each cap rounds by at most 1/2).
  const auto original = head_sizes_after_post_fill("adakv(budget=100, window=8, kernel=1, floor_alpha=0.5)");
  for (std::int64_t s : original) EXPECT_GE(s, 54);
  EXPECT_NEAR(static_cast<double>(std::accumulate(original.begin(), original.end(), std::int64_t{0})), 400.0, 2.0);
  // kvpress: every head keeps >= floor(100 x 0.5) = 50, the total exactly 400.
  const auto kvpress =
      head_sizes_after_post_fill("adakv(budget=100, window=8, kernel=1, floor_alpha=0.5, alloc=kvpress)");
  for (std::int64_t s : kvpress) EXPECT_GE(s, 50);
  EXPECT_EQ(std::accumulate(kvpress.begin(), kvpress.end(), std::int64_t{0}), 400);
  EXPECT_NE(original, kvpress);
}

TEST(AdaKv, RejectsBadParameters) {
  policy_test::expect_rejected({"adakv(floor_alpha=1.5)", "adakv(floor_alpha=-0.1)", "adakv(kernel=2)",
                                "adakv(budget=10)", "adakv(window=0)", "adakv(alloc=greedy)",
                                "adakv(alpha_safeguard=0.2)"});
  policy_test::expect_error("adakv(alloc=kvsim)", "alloc");
  EXPECT_EQ(PolicyRegistry::builtin().create("adakv")->spec(),
            "adakv(budget=0.2, window=32, kernel=7, pooling=max, gqa=mean, floor_alpha=0.2, alloc=original, "
            "prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

// l2norm (Knorm, arXiv 2406.11430; l2compress cache.py l2_compress, kvpress knorm_press.py):
// hand-checked kept sets, the layers it leaves whole, parameter errors, and the kept count at every
// eviction point.
#include <gtest/gtest.h>

#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using leverage_test::evict_once;
using leverage_test::make_layer;

using Positions = std::vector<std::int32_t>;

// One KV head, d = 2. Key norms by position: t0 (3,4) -> 5, t1 (1,0) -> 1, t2 (0,2) -> 2,
// t3 (0,.5) -> .5, t4 (3,0) -> 3, t5 (0,1.5) -> 1.5. Lowest first: t3 < t1 < t5 < t2 < t4 < t0.
// Head 1 reverses the order of the same rows, so its lowest are t2 < t4 < t0.
LayerTrace hand_layer() {
  const std::vector<std::vector<float>> k0{{3, 4}, {1, 0}, {0, 2}, {0, 0.5f}, {3, 0}, {0, 1.5f}};
  std::vector<std::vector<float>> k1(k0.rbegin(), k0.rend());
  return make_layer({k0, k1}, {k0, k1});
}

// Three layers: 0 and 1 are left whole by default (skip_layers=2); the hand sets evict in layer 2.
const ModelShape kTwoHeads{"hand", 3, 2, 2, 2, 16, 10000.0};
constexpr int kFirstCompressed = 2;

TEST(L2Norm, KeepsLowestNormKeys) {
  const LayerTrace layer = hand_layer();
  // Token budget 3, nothing protected: the three lowest norms of each head.
  LayerResidency r = evict_once("l2norm(budget=3)", kTwoHeads, &layer, 6, kFirstCompressed);
  EXPECT_EQ(r[0], (Positions{1, 3, 5}));
  EXPECT_EQ(r[1], (Positions{0, 2, 4}));
  // Fraction 0.5 of 6 = 3 (no protected entries by default): the same sets.
  r = evict_once("l2norm(budget=0.5)", kTwoHeads, &layer, 6, kFirstCompressed);
  EXPECT_EQ(r[0], (Positions{1, 3, 5}));
  // sinks=1, window=1 protect t0 and t5; B=3 leaves one slot for t1..t4: t3 (norm .5).
  // Head 1: norms by position are [1.5, 3, .5, 2, 1, 5]: protected t0, t5; best middle t2.
  r = evict_once("l2norm(budget=3, sinks=1, window=1)", kTwoHeads, &layer, 6, kFirstCompressed);
  EXPECT_EQ(r[0], (Positions{0, 3, 5}));
  EXPECT_EQ(r[1], (Positions{0, 2, 5}));
  // Fraction with protection: round(0.25 * 6) = 2 (half to even: 1.5 -> 2), + 2 protected = 4.
  r = evict_once("l2norm(budget=0.25, sinks=1, window=1)", kTwoHeads, &layer, 6, kFirstCompressed);
  EXPECT_EQ(r[0], (Positions{0, 1, 3, 5}));
}

TEST(L2Norm, PolicyNotesExample) {
  // policy-notes.md: norms [3,1,2,5], r = 0.5 -> keep t1, t2.
  const LayerTrace layer = make_layer({{{3, 0}, {0, 1}, {2, 0}, {0, 5}}}, {{{1, 0}, {1, 0}, {1, 0}, {1, 0}}});
  const ModelShape one{"hand", 1, 1, 1, 2, 16, 10000.0};
  EXPECT_EQ(evict_once("l2norm(budget=0.5, skip_layers=0)", one, &layer, 4)[0], (Positions{1, 2}));
}

TEST(L2Norm, UntracedLayerKeepsCount) {
  LayerResidency r = evict_once("l2norm(budget=3, sinks=1)", kTwoHeads, nullptr, 6, kFirstCompressed);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].size(), 3u);
  r = evict_once("l2norm(budget=3, sinks=1)", kTwoHeads, nullptr, 6, 1);  // a skipped layer
  EXPECT_EQ(r[0].size(), 6u);
}

// l2_compress prunes `if layer not in skip_layers`; the authors pass skip_layers=[0, 1].
TEST(L2Norm, SkipsTheFirstLayers) {
  const LayerTrace layer = hand_layer();
  const Positions all{0, 1, 2, 3, 4, 5};
  for (int l : {0, 1}) {
    const LayerResidency r = evict_once("l2norm(budget=3)", kTwoHeads, &layer, 6, l);
    EXPECT_EQ(r[0], all) << "layer " << l;
    EXPECT_EQ(r[1], all) << "layer " << l;
  }
  // skip_layers=0 (kvpress KnormPress) compresses layer 0 too; skip_layers=3 leaves layer 2 whole.
  EXPECT_EQ(evict_once("l2norm(budget=3, skip_layers=0)", kTwoHeads, &layer, 6, 0)[0], (Positions{1, 3, 5}));
  EXPECT_EQ(evict_once("l2norm(budget=3, skip_layers=1)", kTwoHeads, &layer, 6, 1)[0], (Positions{1, 3, 5}));
  EXPECT_EQ(evict_once("l2norm(budget=3, skip_layers=3)", kTwoHeads, &layer, 6, 2)[0], all);
}

TEST(L2Norm, SpecAndErrors) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("l2norm")->spec(),
            "l2norm(budget=0.2, sinks=0, window=0, skip_layers=2, prefill=post_fill, decode=none)");
  EXPECT_EQ(reg.create("l2norm(budget=0.1, skip_layers=0, prefill=chunk, decode=every:4)")->spec(),
            "l2norm(budget=0.1, sinks=0, window=0, skip_layers=0, prefill=chunk, decode=every:4)");
  policy_test::expect_rejected({"l2norm(sinks=-1)", "l2norm(window=-2)", "l2norm(budget=0)", "l2norm(budget=2.5)",
                                "l2norm(budget=3, sinks=2, window=2)", "l2norm(decode=sometimes)", "l2norm(bogus=1)",
                                "l2norm(skip_layers=-1)", "l2norm(skip_layers=abc)", "l2norm(skip_layers=1.5)"});
  policy_test::expect_error("l2norm(window=-2)", "window");
  policy_test::expect_error("l2norm(skip_layers=-1)", "skip_layers");
  policy_test::expect_error("l2norm(skip_layers=abc)", "skip_layers");
}

TEST(L2Norm, KeptCountFollowsCapacityRule) {  // replayed as layer 0: skip_layers=0 compresses it
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("l2norm(budget=0.25, skip_layers=0)", 0.25, 0, 50, 4, 50, false, 0);
  expect_capacity_rule("l2norm(budget=0.3, sinks=2, window=3, skip_layers=0)", 0.3, 5, 57, 3, 16, false, 0);
  expect_capacity_rule("l2norm(budget=0.3, sinks=2, window=3, prefill=chunk, skip_layers=0)", 0.3, 5, 57, 3, 16, true,
                       0);
  expect_capacity_rule("l2norm(budget=0.5, window=1, prefill=chunk, decode=step, skip_layers=0)", 0.5, 1, 41, 5, 8,
                       true, 1);
  expect_capacity_rule("l2norm(budget=0.2, decode=every:2, skip_layers=0)", 0.2, 0, 40, 6, 40, false, 2);
}

}  // namespace
}  // namespace kvsim

// curdkv (CurDKV, arXiv 2509.15038; kvpress cur_press.py): hand-checked kept sets for every
// leverage type and local-window size, parameter errors, and the kept count at every eviction.
#include <gtest/gtest.h>

#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using leverage_test::evict_once;
using leverage_test::make_layer;
using Positions = std::vector<std::int32_t>;

// One KV head, d = 2, six tokens.
//   ||k||^2 = [9, 1, 4, 2, 5, 1]     ||v||^2 = [1, 4, 0.25, 8, 1, 2]
LayerTrace hand_layer() {
  return make_layer({{{3, 0}, {1, 0}, {2, 0}, {1, 1}, {2, 1}, {0, 1}}},
                    {{{1, 0}, {2, 0}, {0.5f, 0}, {2, 2}, {1, 0}, {1, 1}}});
}

const ModelShape kOneHead{"hand", 1, 1, 1, 2, 16, 10000.0};

Positions kept(const std::string& spec, std::int64_t n = 6) {
  const LayerTrace layer = hand_layer();
  return evict_once(spec, kOneHead, &layer, n)[0];
}

TEST(CurDkv, HandCheckedLeverageTypes) {
  // No local normalisation, sink t0 kept. Middle t1..t5 scores:
  //   kv_product k2*v2 = [4, 1, 16, 5, 2]  -> B=4 keeps 3: t3, t4, t1
  //   key        k2    = [1, 4, 2, 5, 1]   -> B=3 keeps 2: t4, t2
  //   value      v2    = [4, .25, 8, 1, 2] -> B=3: t3, t1
  //   kv_avg (k2+v2)/2 = [2.5, 2.125, 5, 3, 1.5] -> B=3: t3, t4
  EXPECT_EQ(kept("curdkv(budget=4, sinks=1, local_window=0)"), (Positions{0, 1, 3, 4}));
  EXPECT_EQ(kept("curdkv(budget=3, sinks=1, local_window=0, leverage=key)"), (Positions{0, 2, 4}));
  EXPECT_EQ(kept("curdkv(budget=3, sinks=1, local_window=0, leverage=value)"), (Positions{0, 1, 3}));
  EXPECT_EQ(kept("curdkv(budget=3, sinks=1, local_window=0, leverage=kv_avg)"), (Positions{0, 3, 4}));
  // The default block of 16 holds all six tokens: one normalisation constant, same ranking.
  EXPECT_EQ(kept("curdkv(budget=4, sinks=1)"), (Positions{0, 1, 3, 4}));
}

TEST(CurDkv, LocalWindowNormalisation) {
  // Blocks of 2: k2 -> [.9,.1 | 4/6,2/6 | 5/6,1/6], v2 -> [.2,.8 | 1/9,8/9 | 1/3,2/3];
  // products t1..t5 = [.08, .074, .296, .278, .111]: B=4 keeps t3, t4 and now t5 (not t1).
  EXPECT_EQ(kept("curdkv(budget=4, sinks=1, local_window=2)"), (Positions{0, 3, 4, 5}));
  // Blocks of 4 (the second one short, as the zero padding of the reference leaves its sum):
  // k2 -> [9,1,4,2]/16 | [5,1]/6, v2 -> [1,4,.25,8]/13.25 | [1,2]/3;
  // products t1..t5 = [.019, .005, .075, .278, .111]: B=3 keeps t4, t5.
  EXPECT_EQ(kept("curdkv(budget=3, sinks=1, local_window=4)"), (Positions{0, 4, 5}));
}

TEST(CurDkv, DefaultSinksAreKept) {
  // sinks=4 (default) protect t0..t3; B=5 leaves one slot: t4 (k2 v2 = 5) beats t5 (2).
  EXPECT_EQ(kept("curdkv(budget=5)"), (Positions{0, 1, 2, 3, 4}));
  // Fraction: round(0.2 * 6) = 1 (1.2) + 4 sinks = 5: the same set.
  EXPECT_EQ(kept("curdkv(budget=0.2)"), (Positions{0, 1, 2, 3, 4}));
}

TEST(CurDkv, SpecAndErrors) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("curdkv")->spec(),
            "curdkv(budget=0.2, sinks=4, leverage=kv_product, local_window=16, prefill=post_fill, decode=none)");
  policy_test::expect_rejected({"curdkv(sinks=-1)", "curdkv(local_window=-1)", "curdkv(leverage=query)",
                                "curdkv(budget=3)", "curdkv(budget=-0.5)", "curdkv(prefill=sometimes)"});
  policy_test::expect_error("curdkv(leverage=query)", "leverage");
}

TEST(CurDkv, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("curdkv(budget=0.25)", 0.25, 4, 50, 4, 50, false, 0);
  expect_capacity_rule("curdkv(budget=0.3, sinks=2, local_window=8)", 0.3, 2, 57, 3, 16, false, 0);
  expect_capacity_rule("curdkv(budget=0.3, prefill=chunk)", 0.3, 4, 57, 3, 16, true, 0);
  expect_capacity_rule("curdkv(budget=0.5, sinks=1, prefill=chunk, decode=step)", 0.5, 1, 41, 5, 8, true, 1);
  expect_capacity_rule("curdkv(budget=0.2, decode=every:3)", 0.2, 4, 40, 7, 40, false, 3);
}

}  // namespace
}  // namespace kvsim

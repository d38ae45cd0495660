// obcache (OBCache saliency; formulas of MalachiAjayi/kv-cache-pruner cache_utils.py): hand-checked value,
// key and joint saliency on one head, parameter errors, and the kept count at every eviction.
#include <gtest/gtest.h>

#include <cmath>

#include "sim/replay/engine.h"
#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using Positions = std::vector<std::int32_t>;

const ModelShape kOneHead{"hand", 1, 1, 1, 1, 16, 10000.0};

// One head, d = 1, four tokens, window 1: query 3 (q = 1) sees keys ln x, x = [1, 2, 4, 1], so
// A = [.125, .25, .5, .125] and l = [0, .693, 1.386, 0]; values v = [3, 2, .5, 1], o = sum A v = 1.25.
//   value  A^2 v^2                    = [.1406, .25, .0625]        (vnorm=no: A^2 = [.0156, .0625, .25])
//   key    (A l)^2 (v - o)^2          = [0, .0169, .2703]
//   cross  2 A^2 l (v^2 - v o)        = [0, .1299, -.2599]
//   both   value + key + cross        = [.1406, .3968, .0729]
LayerTrace hand_layer() {
  const std::vector<double> x{1, 2, 4, 1};
  std::vector<std::vector<float>> k, v{{3}, {2}, {0.5f}, {1}}, q;
  for (double xi : x) {
    k.push_back({static_cast<float>(std::log(xi))});
    q.push_back({1});
  }
  return leverage_test::make_layer({k}, {v}, {q});
}

Positions kept(const std::string& spec) {
  const LayerTrace layer = hand_layer();
  return leverage_test::evict_once(spec, kOneHead, &layer, 4)[0];
}

TEST(ObCache, HandSaliency) {
  EXPECT_EQ(kept("obcache(budget=2, window=1, saliency=value)"), (Positions{1, 3}));
  EXPECT_EQ(kept("obcache(budget=2, window=1, saliency=value, vnorm=no)"), (Positions{2, 3}));
  EXPECT_EQ(kept("obcache(budget=2, window=1, saliency=key)"), (Positions{2, 3}));
  EXPECT_EQ(kept("obcache(budget=3, window=1, saliency=key)"), (Positions{1, 2, 3}));
  EXPECT_EQ(kept("obcache(budget=2, window=1)"), (Positions{1, 3}));
  EXPECT_EQ(kept("obcache(budget=3, window=1)"), (Positions{0, 1, 3}));
  // A sink is kept whatever its score: with sinks=1 the one free slot goes to the best of 1, 2.
  EXPECT_EQ(kept("obcache(budget=3, window=1, sinks=1, saliency=key)"), (Positions{0, 2, 3}));
}

// GQA: one KV head (keys ln x, x = [1, 2, 3, 1], values 1), two query heads: q = 1 attends as x,
// A = [1,2,3,1]/7, q = -2 as x^-2, A = [1, .25, .111, 1]/2.361. Value saliency without vnorm is A^2
// before the window: head 0 [.0204, .0816, .1837], head 1 [.1794, .0112, .0022]; budget 2 keeps the
// window (3) and one more. mean [.0999, .0464, .0929] -> 0; max [.1794, .0816, .1837] -> 2; expand:
// each query head its own copy, head 0 -> 2 and head 1 -> 0, two copies of the KV head.
TEST(ObCache, GqaMeanMaxExpand) {
  const ModelShape gqa{"hand", 1, 2, 1, 1, 16, 10000.0};
  std::vector<std::vector<float>> k, v, q0, q1;
  for (double x : {1.0, 2.0, 3.0, 1.0}) {
    k.push_back({static_cast<float>(std::log(x))});
    v.push_back({1});
    q0.push_back({1});
    q1.push_back({-2});
  }
  const LayerTrace layer = leverage_test::make_layer({k}, {v}, {q0, q1});
  auto run = [&](const std::string& mode) {
    return leverage_test::evict_once("obcache(budget=2, window=1, saliency=value, vnorm=no, gqa=" + mode + ")", gqa,
                                     &layer, 4);
  };
  EXPECT_EQ(run("mean"), (LayerResidency{{0, 3}}));
  EXPECT_EQ(run("max"), (LayerResidency{{2, 3}}));
  EXPECT_EQ(run("expand"), (LayerResidency{{2, 3}, {0, 3}}));
  EXPECT_EQ(PolicyRegistry::builtin().create("obcache(gqa=expand)")->kv_copies(gqa), 2);
  EXPECT_EQ(PolicyRegistry::builtin().create("obcache(gqa=mean)")->kv_copies(gqa), 1);
}

// gqa=expand counts its G copies: before any eviction a GQA-4 layer holds 4 x the entries of full,
// and so does the footprint.
TEST(ObCache, ExpandCountsGFoldMemory) {
  const ModelShape model{"tiny", 2, 8, 2, 8};
  const std::int64_t n = 64, m = 2;
  const auto source = testing_support::random_trace(model, n, m, {0}, 5);
  const RequestInfo& request = source.header().requests[0];
  const auto full = PolicyRegistry::builtin().create("full");
  const auto expand = PolicyRegistry::builtin().create("obcache(budget=0.25, window=8)");
  const auto mean = PolicyRegistry::builtin().create("obcache(budget=0.25, window=8, gqa=mean)");
  const std::vector<const Policy*> policies{full.get(), expand.get(), mean.get()};
  const std::vector<PolicyResult> r = replay_request(source, request, policies, {});
  EXPECT_EQ(r[1].pass_entries[0], 4 * r[0].pass_entries[0]);  // the prompt pass, before eviction
  EXPECT_EQ(r[2].pass_entries[0], r[0].pass_entries[0]);
  // After the post-fill eviction every copy keeps the capacity 16 + 8 = 24, plus the decoded token.
  EXPECT_EQ(r[1].pass_entries[1], 2 * 2 * 4 * 25);
  EXPECT_EQ(r[2].pass_entries[1], 2 * 2 * 25);
}

TEST(ObCache, SpecAndErrors) {
  EXPECT_EQ(PolicyRegistry::builtin().create("obcache")->spec(),
            "obcache(budget=0.2, window=32, sinks=0, saliency=both, vnorm=yes, gqa=expand, prefill=post_fill, "
            "decode=none)");
  policy_test::expect_rejected({"obcache(window=0)", "obcache(sinks=-1)", "obcache(saliency=query)",
                                "obcache(budget=32)", "obcache(vnorm=1)", "obcache(kernel=3)", "obcache(gqa=sum)"});
  policy_test::expect_error("obcache(saliency=query)", "both");
}

TEST(ObCache, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("obcache(budget=0.25, window=3)", 0.25, 3, 50, 4, 50, false, 0);
  expect_capacity_rule("obcache(budget=0.3, window=2, sinks=1, prefill=chunk)", 0.3, 3, 57, 3, 16, true, 0);
  expect_capacity_rule("obcache(budget=0.5, window=1, prefill=chunk, decode=step)", 0.5, 1, 41, 5, 8, true, 1);
  expect_capacity_rule("obcache(budget=0.2, window=4, saliency=value, decode=every:3)", 0.2, 4, 40, 7, 40, false, 3);
}

}  // namespace
}  // namespace kvsim

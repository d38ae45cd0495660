// gqa=mean|max|expand of snapkv, pyramidkv, adakv and h2o, gqa=mean|expand of think (issue 19):
// hand-computed kept sets (pruned channels) on one KV head shared by two query heads, and the copies
// each mode keeps.
#include <gtest/gtest.h>

#include <cmath>

#include "sim/replay/layer_replay.h"
#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

const ModelShape kGqa{"hand", 1, 2, 1, 1, 16, 10000.0};

// One KV head, d = 1, keys ln x with x = [1, 2, 3, 1]; window = position 3, kernel 1. Query head 0
// (q = 1) attends as x: [1, 2, 3, 1] / 7 = [.1429, .2857, .4286 | .1429]; query head 1 (q = -2) as
// x^-2: [1, .25, .1111, 1] / 2.3611 = [.4235, .1059, .0471 | .4235]. Budget 2 keeps the window and one
// more: mean [.2832, .1958, .2378] -> 0; max [.4235, .2857, .4286] -> 2; expand: each query head
// its own copy of the KV head, head 0 -> 2 and head 1 -> 0.
LayerTrace gqa_layer() {
  std::vector<std::vector<float>> k, v, q0, q1;
  for (double x : {1.0, 2.0, 3.0, 1.0}) {
    k.push_back({static_cast<float>(std::log(x))});
    v.push_back({1});
    q0.push_back({1});
    q1.push_back({-2});
  }
  return leverage_test::make_layer({k}, {v}, {q0, q1});
}

TEST(GqaModes, SnapKvScoredHandKeptSets) {
  const LayerTrace layer = gqa_layer();
  // One layer: pyramidkv's capacity is uniform; one KV head: adakv's mean and max allocate nothing, and
  // under expand the two copies share 2 scored slots, the layer's top two being head 0's position 2
  // (.4286) and head 1's 0 (.4235), caps round(0.8 x 1) = 1 each: the same sets.
  for (const std::string policy : {"snapkv", "pyramidkv", "adakv"}) {
    auto run = [&](const std::string& mode) {
      return leverage_test::evict_once(policy + "(budget=2, window=1, kernel=1, gqa=" + mode + ")", kGqa, &layer, 4);
    };
    EXPECT_EQ(run("mean"), (LayerResidency{{0, 3}})) << policy;
    EXPECT_EQ(run("max"), (LayerResidency{{2, 3}})) << policy;
    EXPECT_EQ(run("expand"), (LayerResidency{{2, 3}, {0, 3}})) << policy;
    EXPECT_EQ(PolicyRegistry::builtin().create(policy + "(gqa=expand)")->kv_copies(kGqa), 2) << policy;
    EXPECT_EQ(PolicyRegistry::builtin().create(policy + "(gqa=max)")->kv_copies(kGqa), 1) << policy;
    EXPECT_EQ(PolicyRegistry::builtin().create(policy)->kv_copies(kGqa), 1) << policy << ": default mean";
  }
}

// H2O accumulating only the prompt's last query (prompt_queries=1) scores as the window above, so the
// same sets: budget 2 keeps the recent entry 3 and the heaviest of 0..2.
TEST(GqaModes, H2oHandKeptSets) {
  const LayerTrace layer = gqa_layer();
  RequestInfo request;
  request.prompt_tokens = 4;
  const PassPlan plan = make_pass_plan(4, 0, 4);
  auto run = [&](const std::string& mode) {
    const auto policy =
        PolicyRegistry::builtin().create("h2o(budget=2, recent=1, prompt_queries=1, decode=none, gqa=" + mode + ")");
    return replay_layer({kGqa, request, plan, 0, &layer, {}}, *policy).final_residency;
  };
  EXPECT_EQ(run("mean"), (LayerResidency{{0, 3}}));
  EXPECT_EQ(run("max"), (LayerResidency{{2, 3}}));
  EXPECT_EQ(run("expand"), (LayerResidency{{2, 3}, {0, 3}}));
  EXPECT_EQ(PolicyRegistry::builtin().create("h2o(gqa=expand)")->kv_copies(kGqa), 2);
  EXPECT_EQ(PolicyRegistry::builtin().create("h2o")->kv_copies(kGqa), 1);
}

// ThinK: one KV head of keys all 1 (d = 4), the last prompt query of head 0 = [3, 0, 0, 1] (query
// norms [9, 0, 0, 1]) and of head 1 [0, 3, 1, 0] ([0, 9, 1, 0]); window 1, ratio 0.5 prunes 2
// channels. mean: [4.5, 4.5, .5, .5] -> channels 2, 3 for the KV head; expand: head 0's copy prunes
// its lowest, 1 and 2, head 1's 0 and 3 (tests/reference/test_think_reference.py's hand case).
TEST(GqaModes, ThinkPrunesPerQueryHeadUnderExpand) {
  const ModelShape model{"hand", 1, 2, 1, 4};
  RequestInfo request;
  request.prompt_tokens = 4;
  LayerTrace layer;
  layer.keys = {HeadMatrix::Ones(4, 4)};
  layer.values = {HeadMatrix::Ones(4, 4)};
  HeadMatrix q0 = HeadMatrix::Zero(4, 4), q1 = HeadMatrix::Zero(4, 4);
  q0.row(3) << 3, 0, 0, 1;
  q1.row(3) << 0, 3, 1, 0;
  layer.queries = {q0, q1};
  layer.query_positions = {0, 1, 2, 3};
  auto zeroed = [&](const std::string& mode, int index) {
    const auto policy = PolicyRegistry::builtin().create("think(ratio=0.5, window=1, recent=0, gqa=" + mode + ")");
    const HeadMatrix keys = policy->compressed_head(model, request, {}, layer, index).keys;
    std::vector<int> channels;
    for (int c = 0; c < 4; ++c) {
      if (keys.col(c).isZero()) channels.push_back(c);
    }
    return channels;
  };
  EXPECT_EQ(zeroed("mean", 0), (std::vector<int>{2, 3}));
  EXPECT_EQ(zeroed("expand", 0), (std::vector<int>{1, 2}));
  EXPECT_EQ(zeroed("expand", 1), (std::vector<int>{0, 3}));
  EXPECT_EQ(PolicyRegistry::builtin().create("think(gqa=expand)")->kv_copies(model), 2);
  EXPECT_EQ(PolicyRegistry::builtin().create("think")->kv_copies(model), 1);
}

TEST(GqaModes, RejectsUnknownMode) {
  policy_test::expect_rejected(
      {"snapkv(gqa=sum)", "pyramidkv(gqa=foo)", "adakv(gqa=)", "h2o(gqa=MEAN)", "think(gqa=max)"});
}

}  // namespace
}  // namespace kvsim

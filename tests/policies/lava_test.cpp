// lava: hand-checked kept sets (value scale across heads, floor_alpha shares, GQA group maximum)
// and per-layer totals equal to the allocation at every eviction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

// Kept positions per head after one post-fill eviction of `layer` (dimension 1, window queries 1).
LayerResidency kept(const ModelShape& model, const LayerTrace& layer, const std::string& spec) {
  RequestInfo request;
  request.prompt_tokens = layer.keys[0].rows();
  const auto policy = PolicyRegistry::builtin().create(spec);
  const PassPlan plan = make_pass_plan(request.prompt_tokens, 0, request.prompt_tokens);
  return replay_layer({model, request, plan, 0, &layer, {}}, *policy).final_residency;
}

TEST(Lava, ValueScaleWeighsHeadsAgainstEachOther) {
  // T=6, window {5} (one query: mean attention = x / sum x), kernel 1, B=3 per head -> S = 6 - 2 = 4.
  // Head 0: x = [8,7,6,5,1|1], sum 28 -> [.2857,.2500,.2143,.1786,.0357], values 1 (scale 1; the
  //   window's value 100 is not part of the scale).
  // Head 1: x = [1.2,1.1,4,.9,.8|2], sum 10 -> [.12,.11,.40,.09,.08]; values 1 except -3 at position 3:
  //   scale max |v|_1 = 3 -> [.36,.33,1.2,.27,.24].
  HandLayer hand({{8, 7, 6, 5, 1, 1}, {1.2, 1.1, 4, .9, .8, 2}});
  hand.layer.values[0] = HeadMatrix::Ones(6, 1);
  hand.layer.values[0](5, 0) = 100.0f;
  hand.layer.values[1] = HeadMatrix::Ones(6, 1);
  hand.layer.values[1](3, 0) = -3.0f;
  // Top 4: 1.2 (h1 2), .36 (h1 0), .33 (h1 1), .2857 (h0 0): head 0 keeps 1 + window, head 1 3 + window.
  const LayerResidency scaled{{0, 5}, {0, 1, 2, 5}};
  EXPECT_EQ(hand.kept("lava(budget=3, window=1, kernel=1, floor_alpha=0)"), scaled);
  // Without the scale (all values 1) the top 4 would be .40 (h1 2), .2857, .25, .2143 (h0 0..2).
  HandLayer unscaled({{8, 7, 6, 5, 1, 1}, {1.2, 1.1, 4, .9, .8, 2}});
  unscaled.layer.values = {HeadMatrix::Ones(6, 1), HeadMatrix::Ones(6, 1)};
  EXPECT_EQ(unscaled.kept("lava(budget=3, window=1, kernel=1, floor_alpha=0)"), (LayerResidency{{0, 1, 2, 5}, {2, 5}}));
  // floor_alpha 1: every head keeps S/H = 2 of its own best (head 1: 1.2 at 2, .36 at 0).
  EXPECT_EQ(hand.kept("lava(budget=3, window=1, kernel=1, floor_alpha=1, alloc=exact)"),
            (LayerResidency{{0, 1, 5}, {0, 2, 5}}));
}

TEST(Lava, FloorAlphaSharesSumToTheLayerBudget) {
  // T=7, window {6}, B=4 per head -> S = 8 - 2 = 6, mean S/H = 3; values 1 (scale 1).
  // Head 0: x = [1.6,1.5,1.4,1.3,1.2,1.1|10], sum 18.1 -> [.0884,.0829,.0773,.0718,.0663,.0608].
  // Head 1: x = [9,8,7,6,5,4|1], sum 40 -> [.225,.200,.175,.150,.125,.100].
  HandLayer hand({{1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 10}, {9, 8, 7, 6, 5, 4, 1}});
  hand.layer.values = {HeadMatrix::Ones(7, 1), HeadMatrix::Ones(7, 1)};
  // alpha 0: all 6 of head 1 beat head 0's best (.100 > .0884): counts 0, 6.
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0)"),
            (LayerResidency{{6}, {0, 1, 2, 3, 4, 5, 6}}));
  // alpha 0.5: shares .5 x 0 + .5 x 3 = 1.5 and .5 x 6 + 1.5 = 4.5 -> floors 1 and 4; the one left
  // over goes to the best remaining score: head 1's .125 (position 4) over head 0's .0829.
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0.5, alloc=exact)"),
            (LayerResidency{{0, 6}, {0, 1, 2, 3, 4, 6}}));
  // alpha 0.7: shares 2.1 and 3.9 -> 2 and 3; the one left over: head 1's .150 (position 3).
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0.7, alloc=exact)"),
            (LayerResidency{{0, 1, 6}, {0, 1, 2, 3, 6}}));
  // alpha 1: 3 each.
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=1, alloc=exact)"),
            (LayerResidency{{0, 1, 2, 6}, {0, 1, 2, 6}}));
}

TEST(Lava, OriginalAllocRoundsEachHeadFromTheConfiguredFloor) {
  // The layer of FloorAlphaSharesSumToTheLayerBudget (counts 0 and 6 of S = 6, C = 4): MGDDestiny/Lava's
  // update_kv_gqa gives head h round((1 - a) count_h + int(a x 4)) besides its window, with no remainder
  // pass: a 0.5 -> round(0 + 2) = 2 and round(3 + 2) = 5 (9 entries, not 8); a 0.7 -> int(2.8) = 2:
  // round(2) = 2, round(1.8 + 2) = 4; a 1 -> 4 and 4.
  HandLayer hand({{1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 10}, {9, 8, 7, 6, 5, 4, 1}});
  hand.layer.values = {HeadMatrix::Ones(7, 1), HeadMatrix::Ones(7, 1)};
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0.5)"),
            (LayerResidency{{0, 1, 6}, {0, 1, 2, 3, 4, 6}}));
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0.7)"),
            (LayerResidency{{0, 1, 6}, {0, 1, 2, 3, 6}}));
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=1)"),
            (LayerResidency{{0, 1, 2, 3, 6}, {0, 1, 2, 3, 6}}));
  // With a = 0 both rules are the plain top S.
  EXPECT_EQ(hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0)"),
            hand.kept("lava(budget=4, window=1, kernel=1, floor_alpha=0, alloc=exact)"));
}

// One KV head with keys ln x and two query heads of constant q0, q1 (dimension 1): the window query
// of query head g attends to position j with weight x_j^q_g / sum_i x_i^q_g.
LayerResidency gqa_kept(const std::vector<double>& x, float q0, float q1, const std::string& spec) {
  const ModelShape model{"gqa", 1, 2, 1, 1};
  LayerTrace layer;
  HeadMatrix keys(static_cast<Eigen::Index>(x.size()), 1);
  for (std::size_t j = 0; j < x.size(); ++j) keys(static_cast<Eigen::Index>(j), 0) = static_cast<float>(std::log(x[j]));
  layer.keys = {keys};
  layer.values = {HeadMatrix::Ones(keys.rows(), 1)};
  layer.queries = {HeadMatrix::Constant(keys.rows(), 1, q0), HeadMatrix::Constant(keys.rows(), 1, q1)};
  for (std::int64_t p = 0; p < keys.rows(); ++p) layer.query_positions.push_back(p);
  return kept(model, layer, spec);
}

TEST(Lava, GqaTakesTheGroupMaximumOfPooledScores) {
  // x = [1,1,2,4,4|1], q0 = 1, q1 = -2, window {5}, B=3 (2 scored):
  //   head 0: x / 13 = [.0769,.0769,.1538,.3077,.3077]; head 1: x^-2 / 3.375 = [.2963,.2963,.0741,.0185,.0185].
  //   Group maximum [.2963,.2963,.1538,.3077,.3077] keeps 3, 4; the group mean
  //   [.1866,.1866,.1140,.1631,.1631] would keep 0, 1.
  EXPECT_EQ(gqa_kept({1, 1, 2, 4, 4, 1}, 1.0f, -2.0f, "lava(budget=3, window=1, kernel=1)"),
            (LayerResidency{{3, 4, 5}}));
  // x = [.5,.5,.5,1,2|1], q0 = 1, q1 = -1, avg pooling kernel 3 (zero padding, /3), B=2 (1 scored):
  //   head 0: x / 5.5 = [.0909,.0909,.0909,.1818,.3636] -> pooled [.0606,.0909,.1212,.2121,.1818];
  //   head 1: x^-1 / 8.5 = [.2353,.2353,.2353,.1176,.0588] -> pooled [.1569,.2353,.1961,.1373,.0588].
  //   Pooling each query head, then the maximum: [.1569,.2353,.1961,.2121,.1818] keeps 1; pooling the
  //   maximum [.2353,.2353,.2353,.1818,.3636] instead would give [.1569,.2353,.2175,.2602,.1818] and keep 3.
  EXPECT_EQ(gqa_kept({.5, .5, .5, 1, 2, 1}, 1.0f, -1.0f, "lava(budget=2, window=1, kernel=3, pooling=avg)"),
            (LayerResidency{{1, 5}}));
}

TEST(Lava, LayerTotalEqualsTheAllocationAtEveryEviction) {
  for (const char* spec :
       {"lava(budget=0.3, window=8, kernel=3, floor_alpha=0, layer_budget=uniform, prefill=chunk, decode=step)",
        "lava(budget=0.3, window=8, kernel=3, floor_alpha=0.3, layer_budget=uniform, prefill=chunk, decode=step, "
        "alloc=exact)",
        "lava(budget=0.3, window=8, kernel=3, pooling=avg, floor_alpha=0.7, layer_budget=uniform, prefill=chunk, "
        "decode=step, alloc=exact)"}) {
    policy_test::expect_shared_layer_budget(spec);
  }
}

TEST(Lava, LayersShareTheBudgetByTheEntropyOfTheirScoreMaps) {
  // Three layers of one KV head (dimension 1, values 1: scale 1), prompt 9, window {8}, kernel 1,
  // budget 5 per head -> 4 scored. Layers 0 and 1 are traced, layer 2 is not.
  //   layer 0: x = [1 x 8 | 1]: flat scores, normalized entropy 1.
  //   layer 1: x = [64,32,16,8,4,2,1,1 | 1]: p = [1/2,1/4,...,1/64,1/128,1/128], entropy 1.984375 bits
  //     over log2(8) = 3 bits -> 0.661458.
  // The traced layers share 2 x 4 = 8 scored entries: 8 x 1/1.661458 = 4.815 and 3.185 -> floors 4
  // and 3, the one left to the larger remainder (layer 0): 5 and 3. The untraced layer keeps 5 - 1.
  const ModelShape model{"hand3", 3, 1, 1, 1};
  RequestInfo request;
  request.prompt_tokens = 9;
  LayerTrace flat = policy_test::log_weight_layer({{1, 1, 1, 1, 1, 1, 1, 1, 1}}, 0);
  LayerTrace peaked = policy_test::log_weight_layer({{64, 32, 16, 8, 4, 2, 1, 1, 1}}, 1);
  flat.values = {HeadMatrix::Ones(9, 1)};
  peaked.values = {HeadMatrix::Ones(9, 1)};
  const auto policy = PolicyRegistry::builtin().create("lava(budget=5, window=1, kernel=1, alloc=exact)");
  ASSERT_TRUE(policy->uses_layer_statistics(false));
  const PassPlan plan = make_pass_plan(9, 0, 9);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const LayerResidency prompt{{0, 1, 2, 3, 4, 5, 6, 7, 8}};
  auto statistic = [&](const LayerTrace& layer) {
    return policy->layer_statistic({model, request, layer.layer, &layer, prefill.back(), prefill, nullptr}, prompt)
        .at(0);
  };
  EXPECT_NEAR(statistic(flat), 1.0, 1e-6);
  EXPECT_NEAR(statistic(peaked), 1.984375 / 3.0, 1e-6);

  const std::vector<LayerStatistic> statistics{{statistic(flat)}, {statistic(peaked)}, {}};
  auto replay = [&](int layer, const LayerTrace* trace, std::span<const LayerStatistic> stats) {
    return replay_layer({model, request, plan, layer, trace, {}, stats}, *policy).final_residency;
  };
  EXPECT_EQ(replay(0, &flat, statistics), (LayerResidency{{0, 1, 2, 3, 4, 8}}));  // ties: lower positions
  EXPECT_EQ(replay(1, &peaked, statistics), (LayerResidency{{0, 1, 2, 8}}));
  EXPECT_EQ(replay(2, nullptr, statistics).front().size(), 5u);
  // alloc=original floors each share as the reference's int(density): 4 and 3 scored (layer 0 keeps 5).
  const auto original = PolicyRegistry::builtin().create("lava(budget=5, window=1, kernel=1)");
  EXPECT_EQ(replay_layer({model, request, plan, 0, &flat, {}, statistics}, *original).final_residency,
            (LayerResidency{{0, 1, 2, 3, 8}}));
  // Replayed alone (no statistics) or with layer_budget=uniform, every layer keeps 5.
  EXPECT_EQ(replay(1, &peaked, {}), (LayerResidency{{0, 1, 2, 3, 8}}));
  const auto uniform = PolicyRegistry::builtin().create("lava(budget=5, window=1, kernel=1, layer_budget=uniform)");
  EXPECT_FALSE(uniform->uses_layer_statistics(false));
  EXPECT_EQ(replay_layer({model, request, plan, 1, &peaked, {}, statistics}, *uniform).final_residency,
            (LayerResidency{{0, 1, 2, 3, 8}}));
}

TEST(Lava, RejectsBadParametersAndPrintsItsDefaults) {
  policy_test::expect_rejected({"lava(floor_alpha=1.5)", "lava(floor_alpha=-0.1)", "lava(kernel=2)", "lava(budget=10)",
                                "lava(window=0)", "lava(pooling=mean)", "lava(layer_budget=pyramid)",
                                "lava(alloc=kvpress)"});
  // The entropy split is computed once for the cache after the whole prompt.
  policy_test::expect_error("lava(prefill=chunk)", "layer_budget=uniform");
  policy_test::expect_error("lava(prefill=none, decode=step)", "prefill=post_fill");
  EXPECT_EQ(
      PolicyRegistry::builtin().create("lava")->spec(),
      "lava(budget=0.2, window=32, kernel=7, pooling=max, floor_alpha=0.2, layer_budget=entropy, alloc=original, "
      "prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

// dbudget: hand-checked kept sets of the Frobenius-norm halting rule, and its bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "policies/schedule.h"
#include "sim/replay/engine.h"
#include "tests/policies/policy_test_util.h"
#include "util/error.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(DBudget, HandNormThreshold) {
  // T=6, window {5}, kernel 1: the window query's attention is x / sum(x).
  // Head 0: x = [8,4,2,1,1 | 4] -> a = [.4,.2,.1,.05,.05 | .2], a^2 = [.16,.04,.01,.0025,.0025 | .04],
  //   sum .255. Kept mass in rank order (window first): .04, +pos0 .20, +pos1 .24, +pos2 .25, +pos3 .2525.
  // Head 1: x = [1]*6 -> a^2 = 1/36 each: k ranked entries keep (1+k)/36 of 6/36; ties: lower position.
  const HandLayer hand({{8, 4, 2, 1, 1, 4}, {1, 1, 1, 1, 1, 1}});
  // t = 0.9: need .81 x .255 = .20655 -> head 0 {0,1}; head 1: 1+k >= 6 x .81 = 4.86 -> k = 4.
  EXPECT_EQ(hand.kept("dbudget(threshold=0.9, window=1, kernel=1)"), (LayerResidency{{0, 1, 5}, {0, 1, 2, 3, 5}}));
  // t = 0.99: need .2499255 -> head 0 {0,1,2} (.25); head 1: 1+k >= 5.8806 -> k = 5 (everything).
  EXPECT_EQ(hand.kept("dbudget(threshold=0.99, window=1, kernel=1)"),
            (LayerResidency{{0, 1, 2, 5}, {0, 1, 2, 3, 4, 5}}));
  // t = 0.5: need .06375 -> head 0 {0}; head 1: 1+k >= 1.5 -> k = 1.
  EXPECT_EQ(hand.kept("dbudget(threshold=0.5, window=1, kernel=1)"), (LayerResidency{{0, 5}, {0, 5}}));
  // t = 0.3: the window alone carries enough (.04 >= .02295; 1/36 >= .54/36): only the window stays.
  EXPECT_EQ(hand.kept("dbudget(threshold=0.3, window=1, kernel=1)"), (LayerResidency{{5}, {5}}));
  // t = 1 keeps every entry with attention.
  EXPECT_EQ(hand.kept("dbudget(threshold=1, window=1, kernel=1)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}}));
}

TEST(DBudget, RanksWithPooledScores) {
  // Max pooling (k=3) of head 0's a = [.4,.2,.1,.05,.05] gives [.4,.4,.2,.1,.05]: the same order, so
  // the same kept sets as kernel 1 at t = 0.99.
  const HandLayer hand({{8, 4, 2, 1, 1, 4}, {1, 1, 1, 1, 1, 1}});
  EXPECT_EQ(hand.kept("dbudget(threshold=0.99, window=1, kernel=3)"),
            (LayerResidency{{0, 1, 2, 5}, {0, 1, 2, 3, 4, 5}}));
  // Head 0 x = [1,8,1,1,1 | 4]: max-pooled (k=3) scores favour 0 and 2 (neighbours of 8) over 3, 4;
  // a = x/16, a^2 x 256 = [1,64,1,1,1 | 16], total 84: t = 0.95 needs .9025 x 84 = 75.81:
  // window 16, +pos0 17 (tie with 1 and 2 at 8/16: lower first), +pos1 81 -> {0,1}.
  const HandLayer pooled({{1, 8, 1, 1, 1, 4}, {1, 1, 1, 1, 1, 1}});
  EXPECT_EQ(pooled.kept("dbudget(threshold=0.95, window=1, kernel=3)")[0], (std::vector<std::int32_t>{0, 1, 5}));
  // Unpooled, position 1 ranks first: 16 + 64 = 80 >= 75.81 -> {1}.
  EXPECT_EQ(pooled.kept("dbudget(threshold=0.95, window=1, kernel=1)")[0], (std::vector<std::int32_t>{1, 5}));
}

TEST(DBudget, ChunksAndStepsEvict) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const auto source = testing_support::random_trace(model, 300, 4, {0}, 9, 3.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(300, 4, 100);
  const auto policy =
      PolicyRegistry::builtin().create("dbudget(threshold=0.9, window=8, kernel=3, prefill=chunk, decode=step)");
  testing_support::RecordingPolicy traced(*policy);
  replay_layer({model, source.header().requests[0], plan, 0, &trace, {}}, traced);
  ASSERT_EQ(traced.events().size(), 7u);  // 3 chunks, 4 decode steps
  bool pruned = false;
  for (const auto& e : traced.events()) {
    for (std::size_t h = 0; h < e.after.size(); ++h) {
      EXPECT_GE(e.after[h], 8);  // the window stays
      pruned |= e.after[h] < e.before[h];
    }
  }
  EXPECT_TRUE(pruned);
}

// An untraced layer keeps its window plus the traced layers' mean kept fraction of the rest.
TEST(DBudget, UntracedLayersFollowTheTracedKeptFraction) {
  // HandNormThreshold's layer at t = 0.9 keeps 2 + 4 of its 5 + 5 non-window entries: 0.6.
  const HandLayer hand({{8, 4, 2, 1, 1, 4}, {1, 1, 1, 1, 1, 1}});
  const auto policy = PolicyRegistry::builtin().create("dbudget(threshold=0.9, window=1, kernel=1)");
  EXPECT_TRUE(policy->uses_layer_statistics(false));
  EXPECT_FALSE(policy->uses_layer_statistics(true));  // every layer traced: nothing to follow
  const PassPlan plan = make_pass_plan(6, 0, 6);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const LayerResidency prompt(2, std::vector<std::int32_t>{0, 1, 2, 3, 4, 5});
  EXPECT_EQ(
      policy->layer_statistic({hand.model, hand.request, 0, &hand.layer, prefill.back(), prefill, nullptr}, prompt),
      LayerStatistic{0.6});
  auto untraced = [&](std::vector<LayerStatistic> statistics) {
    return replay_layer({hand.model, hand.request, plan, 2, nullptr, {}, statistics}, *policy).final_residency;
  };
  // Mean 0.6 of 5: 3 kept besides the window -> the newest 4.
  EXPECT_EQ(untraced({{0.6}, {}, {}}), (LayerResidency{{2, 3, 4, 5}}));
  // Mean 0.5 of 5 = 2.5 rounds half to even: 2 -> the newest 3.
  EXPECT_EQ(untraced({{0.6}, {0.4}, {}}), (LayerResidency{{3, 4, 5}}));
  // No traced layer to follow: an error, not a made-up count.
  EXPECT_THROW(untraced({}), InputError);
}

// Through the engine: a trace of 1 of 2 layers runs, and the untraced layer holds what the rule says.
TEST(DBudget, PartialTraceCountsTheUntracedLayerByTheTracedFraction) {
  const ModelShape model{"tiny", 2, 4, 2, 8};
  const std::int64_t n = 300, m = 4, window = 8;
  const auto source = testing_support::random_trace(model, n, m, {0}, 9, 3.0f);
  const RequestInfo& request = source.header().requests[0];
  const auto policy = PolicyRegistry::builtin().create("dbudget(threshold=0.9, window=8, kernel=3)");
  const std::vector<const Policy*> policies{policy.get()};
  const std::vector<PolicyResult> results = replay_request(source, request, policies, {});

  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(n, m, n);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const LayerResidency prompt(2, [&] {
    std::vector<std::int32_t> all(static_cast<std::size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    return all;
  }());
  const double fraction =
      policy->layer_statistic({model, request, 0, &trace, prefill.back(), prefill, nullptr}, prompt).at(0);
  const LayerResidency traced = replay_layer({model, request, plan, 0, &trace, {}}, *policy).final_residency;
  std::int64_t traced_kept = -2 * m;  // prompt entries only: every head also holds the m decode ones
  for (const auto& head : traced) traced_kept += static_cast<std::int64_t>(head.size());
  ASSERT_LT(traced_kept, 2 * n);  // the rule pruned something
  EXPECT_NEAR(fraction, static_cast<double>(traced_kept - 2 * window) / static_cast<double>(2 * (n - window)), 1e-12);
  const std::int64_t untraced_kept = 2 * (window + round_half_even(fraction * static_cast<double>(n - window)));
  // The first decode step sees every kept entry plus its own, in both heads of both layers.
  EXPECT_EQ(results[0].pass_entries[1], traced_kept + untraced_kept + 2 * 2);
}

TEST(DBudget, RejectsBadParameters) {
  policy_test::expect_error("dbudget(threshold=0)", "threshold");
  policy_test::expect_error("dbudget(threshold=1.5)", "threshold");
  policy_test::expect_error("dbudget(threshold=-0.2)", "threshold");
  policy_test::expect_rejected({"dbudget(kernel=2)", "dbudget(window=0)", "dbudget(budget=0.2)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("dbudget")->spec(),
            "dbudget(threshold=0.99, window=32, kernel=7, pooling=max, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

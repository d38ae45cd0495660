// tova: hand-checked kept sets (one set per layer from the all-heads mean) and kept counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "policies/registry.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

// Two KV heads with one query head each (MHA), dimension 1: key k_j = ln x_j, query q_t, so
// exp(q_t k_j) = x_j^q_t and each head's attention is proportional to weights chosen by hand.
struct HandTrace {
  ModelShape model{"hand", 1, 2, 2, 1};
  RequestInfo request;
  LayerTrace layer;
  HandTrace(const std::vector<std::vector<double>>& x, const std::vector<std::vector<float>>& q, std::int64_t prompt) {
    request.prompt_tokens = prompt;
    request.generated_tokens = static_cast<std::int64_t>(x[0].size()) - prompt;
    for (std::size_t h = 0; h < x.size(); ++h) {
      HeadMatrix k(static_cast<Eigen::Index>(x[h].size()), 1), qm(static_cast<Eigen::Index>(q[h].size()), 1);
      for (std::size_t j = 0; j < x[h].size(); ++j)
        k(static_cast<Eigen::Index>(j), 0) = static_cast<float>(std::log(x[h][j]));
      for (std::size_t t = 0; t < q[h].size(); ++t) qm(static_cast<Eigen::Index>(t), 0) = q[h][t];
      layer.keys.push_back(k);
      layer.values.push_back(k);
      layer.queries.push_back(qm);
    }
    for (std::size_t t = 0; t < q[0].size(); ++t) layer.query_positions.push_back(static_cast<std::int64_t>(t));
  }
  LayerResidency kept(const std::string& spec, std::int64_t chunk = 0) const {
    const auto policy = PolicyRegistry::builtin().create(spec);
    const PassPlan plan =
        make_pass_plan(request.prompt_tokens, request.generated_tokens, chunk > 0 ? chunk : request.prompt_tokens);
    return replay_layer({model, request, plan, 0, &layer, {}}, *policy).final_residency;
  }
};

using Kept = std::vector<std::int32_t>;

// Head 0: x = [1,2,4,1 | 2], q = 1. Head 1: x = [6,1,1,2 | 1], q = 1 in the prompt, -1 at the decode step.
const HandTrace kTrace({{1, 2, 4, 1, 2}, {6, 1, 1, 2, 1}}, {{1, 1, 1, 1, 1}, {1, 1, 1, 1, -1}}, 4);

TEST(Tova, HandPostFillAndDecodeMeanOverAllHeads) {
  // Post-fill, query 3: head 0 [1,2,4,1]/8 = [.125,.25,.5,.125], head 1 [6,1,1,2]/10 = [.6,.1,.1,.2];
  // mean [.3625,.175,.3,.1625] -> budget 2 keeps {0,2} in BOTH heads (per head it would be {1,2} and
  // {0,3}); the current token 3 is not protected.
  // Step 4 sees {0,2,4}: head 0 [1,4,2]/7 = [.143,.571,.286]; head 1 (q=-1) [1/6,1,1]/2.167 = [.077,.462,.462];
  // mean [.110,.516,.374] -> {2,4}.
  EXPECT_EQ(kTrace.kept("tova(budget=2, decode=none)"), (LayerResidency{{0, 2, 4}, {0, 2, 4}}));
  EXPECT_EQ(kTrace.kept("tova(budget=2)"), (LayerResidency{{2, 4}, {2, 4}}));
  // Budget 3 after the prompt: top 3 of the mean = {0,1,2}. Step 4 sees {0,1,2,4}: head 0 [1,2,4,2]/9,
  // head 1 [1/6,1,1,1]/3.167; mean [.082,.269,.380,.269]: 1 and 4 tie -> lower position: {1,2,4}.
  EXPECT_EQ(kTrace.kept("tova(budget=3)"), (LayerResidency{{1, 2, 4}, {1, 2, 4}}));
}

TEST(Tova, HandChunkedPrefill) {
  // Chunks [0,2) [2,4), budget 0.5 -> capacities min(round(1), 2) = 1, then 2; decode keeps 2.
  // Chunk 0, query 1: head 0 [1,2]/3, head 1 [6,1]/7 -> mean [.595,.405] -> {0}.
  // Chunk 1, query 3 over {0,2,3}: head 0 [1,4,1]/6, head 1 [6,1,2]/9 -> mean [.417,.389,.194] -> {0,2}.
  // Step 4 over {0,2,4}: as in the post-fill case -> {2,4}.
  EXPECT_EQ(kTrace.kept("tova(budget=0.5, prefill=chunk, decode=none)", 2), (LayerResidency{{0, 2, 4}, {0, 2, 4}}));
  EXPECT_EQ(kTrace.kept("tova(budget=0.5, prefill=chunk)", 2), (LayerResidency{{2, 4}, {2, 4}}));
}

void expect_counts(const std::string& spec, std::int64_t n, std::int64_t m, std::int64_t chunk,
                   const std::vector<std::int64_t>& want) {
  policy_test::expect_kept_counts(spec, n, m, chunk, want, 4, /*same_sets=*/true);
}

TEST(TovaFootprint, KeptCountsFollowTheCapacityRule) {
  // Chunks 16,16,16,2: min(round(0.2 c), c) = 3, 3, 3, 0 -> 3, 6, 9, 9; decode keeps 9.
  expect_counts("tova(budget=0.2, prefill=chunk)", 50, 3, 16, {3, 6, 9, 9, 9, 9, 9});
  expect_counts("tova", 50, 3, 16, {10, 10, 10, 10});  // round(0.2 * 50) = 10
  expect_counts("tova(budget=12, decode=every:2)", 50, 4, 50, {12, 12, 12});
  expect_counts("tova(budget=7, prefill=none)", 20, 3, 8, {7, 7, 7});  // the first decode step trims 21 to 7
}

TEST(Tova, SpecQueriesAndBadParameters) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("tova")->spec(), "tova(budget=0.2, prefill=post_fill, decode=step)");
  policy_test::expect_rejected({"tova(budget=0)", "tova(budget=2.5)", "tova(window=4)"});
  RequestInfo r;
  r.prompt_tokens = 10;
  r.generated_tokens = 2;
  const PassPlan plan = make_pass_plan(10, 2, 4);
  std::vector<std::int64_t> q;
  reg.create("tova(prefill=chunk)")->add_required_queries(r, {plan.prefill_begin(), plan.prefill_end()}, &q);
  EXPECT_EQ(q, (std::vector<std::int64_t>{3, 7, 9, 10, 11}));
}

}  // namespace
}  // namespace kvsim

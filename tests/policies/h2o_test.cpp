// h2o: hand-checked kept sets, the accumulation kernel against its definition, and kept counts.
#include <gtest/gtest.h>

#include <tbb/task_arena.h>
#include <cmath>
#include <numeric>
#include <random>

#include "policies/h2o_attention.h"
#include "policies/registry.h"
#include "policies/shared_results.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"
#include "tests/test_support.h"

namespace kvsim {
namespace {

// One KV head and one query head of dimension 1: key k_j = ln x_j and query q_t, so
// exp(q_t k_j) = x_j^q_t: attention is proportional to weights chosen by hand.
struct HandTrace {
  ModelShape model{"hand", 1, 1, 1, 1};
  RequestInfo request;
  LayerTrace layer;
  HandTrace(const std::vector<double>& x, const std::vector<float>& q, std::int64_t prompt) {
    request.prompt_tokens = prompt;
    request.generated_tokens = static_cast<std::int64_t>(x.size()) - prompt;
    HeadMatrix k(static_cast<Eigen::Index>(x.size()), 1), qm(static_cast<Eigen::Index>(q.size()), 1);
    for (std::size_t j = 0; j < x.size(); ++j) k(static_cast<Eigen::Index>(j), 0) = static_cast<float>(std::log(x[j]));
    for (std::size_t t = 0; t < q.size(); ++t) qm(static_cast<Eigen::Index>(t), 0) = q[t];
    layer.keys = {k};
    layer.values = {k};
    layer.queries = {qm};
    for (std::size_t t = 0; t < q.size(); ++t) layer.query_positions.push_back(static_cast<std::int64_t>(t));
  }
  std::vector<std::int32_t> kept(const std::string& spec, std::int64_t chunk = 0) const {
    const auto policy = PolicyRegistry::builtin().create(spec);
    const PassPlan plan =
        make_pass_plan(request.prompt_tokens, request.generated_tokens, chunk > 0 ? chunk : request.prompt_tokens);
    return replay_layer({model, request, plan, 0, &layer, {}}, *policy).final_residency.front();
  }
};

using Kept = std::vector<std::int32_t>;

TEST(H2o, HandAccumulationOverPrefillAndDecode) {
  // x = [4,1,2,1 | 1,1], prompt queries q=1, decode queries q=-1 (weights 1/x); budget 3 = 1 recent + 2 heavy.
  // Prompt query t gives x_j / (x_0+..+x_t), prefix sums 4,5,7,8:
  //   s0 = 1 + 4/5 + 4/7 + 4/8 = 2.871, s1 = 1/5+1/7+1/8 = 0.468, s2 = 2/7+2/8 = 0.536, s3 = 0.125.
  //   post-fill: recent {3}, heavy top-2 of {0,1,2} = {0,2}.
  // Step 4 sees {0,2,3,4}: weights [1/4,1/2,1,1] / 2.75 = [.091,.182,.364,.364] -> s0 2.962, s2 .718, s3 .489;
  //   recent {4}, heavy {0,2}: 3 goes, although the current query alone would rank it above 0 (TOVA's rule).
  // Step 5 sees {0,2,4,5}, same weights -> s0 3.053, s2 .899, s4 .727; recent {5}, heavy {0,2}.
  const HandTrace t({4, 1, 2, 1, 1, 1}, {1, 1, 1, 1, -1, -1}, 4);
  EXPECT_EQ(t.kept("h2o(budget=3, recent=1)"), (Kept{0, 2, 5}));
  EXPECT_EQ(t.kept("h2o(budget=3, recent=1, decode=none)"), (Kept{0, 2, 3, 4, 5}));
  // Share 0.5 of capacity 3: round_half_even(1.5) = 2 recent, 1 heavy: post-fill {0,2,3}; step 4 {0,3,4}
  // (heavy: 0); step 5 sees {0,3,4,5}: weights [1/4,1,1,1]/3.25 -> s3 .489+.308, s4 .364+.308; keeps {0,4,5}.
  EXPECT_EQ(t.kept("h2o(budget=3, recent=0.5)"), (Kept{0, 4, 5}));
}

TEST(H2o, HandNormalisationAndPromptQueries) {
  // x = [1,1,3,1], q = 1, budget 2 = 1 recent + 1 heavy, one post-fill eviction. Prefix sums 1,2,5,6:
  //   sum:   s0 = 1 + 1/2 + 1/5 + 1/6 = 1.867, s1 = .867, s2 = 3/5 + 3/6 = 1.1 -> heavy 0.
  //   count: divided by the queries that saw them (4, 3, 2): .467, .289, .55 -> heavy 2.
  //   prompt_queries=1: only query 3, [1,1,3,1]/6 -> heavy 2.
  const HandTrace t({1, 1, 3, 1}, {1, 1, 1, 1}, 4);
  EXPECT_EQ(t.kept("h2o(budget=2, recent=1)"), (Kept{0, 3}));
  EXPECT_EQ(t.kept("h2o(budget=2, recent=1, normalize=count)"), (Kept{2, 3}));
  EXPECT_EQ(t.kept("h2o(budget=2, recent=1, prompt_queries=1)"), (Kept{2, 3}));
}

TEST(H2o, HandChunkedPrefillSeesOnlyTheKeptCache) {
  // x = [4,1,2,1], q = 1, chunks [0,2) [2,4), budget 0.5 per chunk: min(round(1), 2) = 1, then 2.
  // Chunk 0: s0 = 1 + 4/5, s1 = 1/5; capacity 1, recent round(0.5) = 0 -> keeps {0}.
  // Chunk 1 sees {0,2,3}: q2 [4,2]/6, q3 [4,2,1]/7 -> s0 = 3.04, s2 = .62; capacity 2 = 1 recent {3} + heavy {0}.
  const HandTrace t({4, 1, 2, 1}, {1, 1, 1, 1}, 4);
  EXPECT_EQ(t.kept("h2o(budget=0.5, recent=0.5, prefill=chunk, decode=none)", 2), (Kept{0, 3}));
}

TEST(H2o, KernelMatchesDefinitionWithGqaAndGaps) {
  std::mt19937_64 rng(3);
  const HeadMatrix keys = testing_support::random_matrix(rng, 40, 8, 1.5f);
  const HeadMatrix q0 = testing_support::random_matrix(rng, 40, 8, 1.5f);
  const HeadMatrix q1 = testing_support::random_matrix(rng, 40, 8, 1.5f);
  // Cached entries with gaps, then the pass [30, 40); queries at some pass positions only.
  std::vector<std::int32_t> visible{0, 2, 3, 9, 17, 25};
  for (std::int32_t t = 30; t < 40; ++t) visible.push_back(t);
  const std::vector<std::int64_t> positions{31, 32, 36, 39}, rows = positions;
  const std::vector<const HeadMatrix*> heads{&q0, &q1};
  std::vector<double> got(visible.size(), 0.5);  // adds to what is there
  add_pass_attention(keys, visible, 6, 30, {heads, rows, positions}, got);
  std::vector<double> want(visible.size(), 0.5);
  for (const HeadMatrix* q : heads) {
    for (std::int64_t t : positions) {
      std::vector<double> w;
      for (std::int32_t j : visible) {
        if (j > t) break;
        double dot = 0;
        for (int c = 0; c < 8; ++c) dot += double(q->coeff(t, c)) * keys.coeff(j, c);
        w.push_back(std::exp(dot / std::sqrt(8.0)));
      }
      double total = 0;
      for (double v : w) total += v;
      for (std::size_t j = 0; j < w.size(); ++j) want[j] += w[j] / total / 2;
    }
  }
  for (std::size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-6 * std::max(1.0, want[j])) << j;
}

// Many query blocks (1100 queries: 18 blocks of 64, in waves of 8) give the definition's sums, and
// the same bits on one thread as on two.
TEST(H2o, KernelOverManyBlocksIsThreadCountIndependent) {
  std::mt19937_64 rng(4);
  const std::int64_t n = 1100;
  const HeadMatrix keys = testing_support::random_matrix(rng, n, 8, 1.0f);
  const HeadMatrix q0 = testing_support::random_matrix(rng, n, 8, 1.0f);
  std::vector<std::int32_t> visible(static_cast<std::size_t>(n));
  std::iota(visible.begin(), visible.end(), 0);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(n));
  std::iota(positions.begin(), positions.end(), 0);
  const std::vector<const HeadMatrix*> heads{&q0};
  auto sums_on = [&](int threads) {
    std::vector<double> out(visible.size(), 0.0);
    tbb::task_arena(threads).execute([&] {
      add_pass_attention(keys, visible, 0, 0, {heads, positions, positions}, out);
    });
    return out;
  };
  const std::vector<double> one = sums_on(1);
  EXPECT_EQ(sums_on(2), one);
  // Spot-check entries against the definition: entry j gets sum over t >= j of softmax_t(j).
  const Eigen::MatrixXd weights =
      ((q0.cast<double>() * keys.cast<double>().transpose()) / std::sqrt(8.0)).array().exp().matrix();
  for (std::int64_t j : {0, 63, 64, 511, 512, 1099}) {
    double want = 0.0;
    for (std::int64_t t = j; t < n; ++t) want += weights(t, j) / weights.row(t).head(t + 1).sum();
    EXPECT_NEAR(one[static_cast<std::size_t>(j)], want, 1e-4 * std::max(1.0, want)) << j;
  }
}

// The prompt's attention sums, shared between H2O policies while nothing is evicted, leave every
// policy's kept sets exactly as it computes them alone.
TEST(H2o, SharedPromptSumsKeepTheSameSets) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const std::int64_t n = 300, m = 4;
  const auto source = testing_support::random_trace(model, n, m, {0}, 5, 2.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const RequestInfo& request = source.header().requests[0];
  const PassPlan plan = make_pass_plan(n, m, 100);
  SharedResults shared;
  for (const char* spec :
       {"h2o(budget=0.1, prefill=post_fill, decode=none)", "h2o(budget=0.3, prefill=post_fill, decode=none)",
        "h2o(budget=0.2, prefill=chunk, decode=step)"}) {
    const auto policy = PolicyRegistry::builtin().create(spec);
    const LayerResidency alone = replay_layer({model, request, plan, 0, &trace, {}}, *policy).final_residency;
    const LayerResidency together =
        replay_layer({model, request, plan, 0, &trace, {}, {}, &shared}, *policy).final_residency;
    EXPECT_EQ(together, alone) << spec;
  }
}

// Kept count per head after each eviction point equals the capacity rule (DESIGN.md §4), traced or not.
void expect_counts(const std::string& spec, std::int64_t n, std::int64_t m, std::int64_t chunk,
                   const std::vector<std::int64_t>& want) {
  policy_test::expect_kept_counts(spec, n, m, chunk, want, 9);
}

TEST(H2oFootprint, KeptCountsFollowTheCapacityRule) {
  // Chunks 16,16,16,2 with recent=4 tokens: min(round(0.2 c) + 4, c) = 7, 7, 7, 2 -> 7, 14, 21, 23; decode keeps 23.
  expect_counts("h2o(budget=0.2, recent=4, prefill=chunk)", 50, 3, 16, {7, 14, 21, 23, 23, 23, 23});
  // post_fill, share: round(0.3 * 50) = 15, fixed in decode.
  expect_counts("h2o(budget=0.3)", 50, 3, 16, {15, 15, 15, 15});
  // Token budget, eviction at decode steps 1 and 3: 10, then 12 trimmed back to 10 twice.
  expect_counts("h2o(budget=10, recent=0.25, prompt_queries=4, decode=every:2)", 50, 4, 50, {10, 10, 10});
}

TEST(H2o, SpecAndBadParameters) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(
      reg.create("h2o")->spec(),
      "h2o(budget=0.2, recent=0.5, prompt_queries=all, normalize=none, gqa=mean, prefill=post_fill, decode=step)");
  policy_test::expect_rejected({"h2o(recent=-1)", "h2o(recent=2.5)", "h2o(budget=8, recent=8)", "h2o(prompt_queries=0)",
                                "h2o(prompt_queries=last)", "h2o(normalize=mean)"});
}

TEST(H2o, RequiresEveryAccumulatedQuery) {
  const auto policy = PolicyRegistry::builtin().create("h2o(prompt_queries=3, prefill=chunk)");
  RequestInfo r;
  r.prompt_tokens = 10;
  r.generated_tokens = 2;
  const PassPlan plan = make_pass_plan(10, 2, 4);
  std::vector<std::int64_t> q;
  policy->add_required_queries(r, {plan.prefill_begin(), plan.prefill_end()}, &q);
  EXPECT_EQ(q, (std::vector<std::int64_t>{1, 2, 3, 5, 6, 7, 8, 9, 10, 11}));
  q.clear();
  PolicyRegistry::builtin().create("h2o")->add_required_queries(r, {plan.prefill_begin(), plan.prefill_end()}, &q);
  EXPECT_EQ(q.size(), 12u);
}

}  // namespace
}  // namespace kvsim

// kvzip: hand-checked kept sets (max over the reconstruction queries; chunked scoring with sinks,
// chunk and causal repeat keys; the global threshold; token and head level, per-head and pooled
// allocation, generated tokens), scores against a direct loop, counts, specs and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "policies/kvzip_scores.h"
#include "policies/registry.h"
#include "sim/replay/engine.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

// MHA, head_dim 1: KV head h has keys ln x_h[j], so a reconstruction query q gives attention
// x_h[j]^q / sum_j' x_h[j']^q over the prompt (no causal mask). The prompt is 6 tokens.
//   head 0: x = [1/4, 4, 2, 1, 1/2, 8], queries q = 3 and q = -1:
//     q = 3:  x^3 = [1/64, 64, 8, 1, 1/8, 512] / 585.14 = [.00003, .1094, .0137, .0017, .0002, .8750]
//     q = -1: 1/x = [4, 1/4, 1/2, 1, 2, 1/8] / 7.875   = [.5079, .0317, .0635, .1270, .2540, .0159]
//     max = [.508, .1094, .0635, .1270, .2540, .875]   (mean would rank position 1 above 3)
//   head 1: x = [10, 30, 25, 20, 1, 14] (sum 100), queries q = 1 twice: scores x / 100.
struct HandKvzip {
  ModelShape model{"hand", 1, 2, 2, 1};
  RequestInfo request;
  LayerTrace layer;
  explicit HandKvzip(std::int64_t generated = 0) {
    request.id = "0";
    request.prompt_tokens = 6;
    request.generated_tokens = generated;
    const std::vector<std::vector<double>> x = {{0.25, 4, 2, 1, 0.5, 8}, {10, 30, 25, 20, 1, 14}};
    const std::vector<std::vector<float>> q = {{3, -1}, {1, 1}};
    for (int h = 0; h < 2; ++h) {
      HeadMatrix k(6 + generated, 1);
      for (std::int64_t j = 0; j < k.rows(); ++j) k(j, 0) = j < 6 ? static_cast<float>(std::log(x[h][j])) : 0.0f;
      layer.keys.push_back(k);
      layer.values.push_back(k);
      layer.recon_queries.push_back(Eigen::Map<const HeadMatrix>(q[h].data(), 2, 1));
    }
  }
  LayerResidency kept(const std::string& spec, std::int64_t chunk = 6) const {
    const auto policy = PolicyRegistry::builtin().create(spec);
    const PassPlan plan = make_pass_plan(request.prompt_tokens, request.generated_tokens, chunk);
    return replay_layer({model, request, plan, 0, &layer, {}}, *policy).final_residency;
  }
};

TEST(Kvzip, ScoresAreTheMaxOverReconstructionQueries) {
  const HandKvzip hand;
  const KvzipScores s = compute_kvzip_scores(hand.layer, hand.model, 6, KvzipScoring::kWhole, 1);
  const std::vector<double> head0 = {32.0 / 63.0, 64 / 585.140625, 0.5 / 7.875, 1 / 7.875, 2 / 7.875, 512 / 585.140625};
  const std::vector<double> head1 = {.1, .3, .25, .2, .01, .14};
  for (std::size_t j = 0; j < 6; ++j) {
    EXPECT_NEAR(s.pair[0][j], head0[j], 1e-6) << j;
    EXPECT_NEAR(s.pair[1][j], head1[j], 1e-6) << j;
  }
  // The memoised scores are the same numbers, shared by equal content.
  const auto cached = kvzip_scores(hand.layer, hand.model, 6, KvzipScoring::kWhole, 1);
  EXPECT_EQ(cached->pair, s.pair);
  EXPECT_EQ(kvzip_scores(HandKvzip().layer, hand.model, 6, KvzipScoring::kWhole, 1).get(), cached.get());
}

// HandKvzip with reconstruction passes (sinks 1, window 1: context [1, 5)): pass 0 re-reads [1, 3)
// with repeat keys ln y rows 0-1, pass 1 re-reads [3, 5) with rows 2-3; one query q = 1 per pass,
// at row 1 (sees rows 0, 1) and row 2 (sees row 2 only: causal). Attention = x or y / the sum over
// [sink 0 | chunk | repeat keys seen]:
//   head 0, x = [1/4, 4, 2, 1, 1/2, 8], y = [2, 1, 4, 3]:
//     pass 0: 1/4 + 4 + 2 + 2 + 1 = 9.25        -> pos 1 4/9.25 = .43243, pos 2 2/9.25 = .21622
//     pass 1: 1/4 + 1 + 1/2 + 4 = 5.75 (not y3) -> pos 3 1/5.75 = .17391, pos 4 .5/5.75 = .08696
//   head 1, x = [10, 30, 25, 20, 1, 14], y = [5, 5, 5, 5]:
//     pass 0: 10 + 30 + 25 + 5 + 5 = 75         -> pos 1 .4, pos 2 .33333
//     pass 1: 10 + 20 + 1 + 5 = 36              -> pos 3 .55556, pos 4 .02778
// Positions 0 and 5 lie in no pass: score 0.
struct HandChunks : HandKvzip {
  HandChunks() {
    const std::vector<std::vector<double>> y = {{2, 1, 4, 3}, {5, 5, 5, 5}};
    layer.recon_queries.clear();
    for (int h = 0; h < 2; ++h) {
      HeadMatrix k(4, 1);
      for (int r = 0; r < 4; ++r) k(r, 0) = static_cast<float>(std::log(y[h][r]));
      layer.recon_keys.push_back(k);
      layer.recon_queries.push_back(HeadMatrix::Ones(2, 1));
    }
    layer.recon_passes = {{1, 3, 0, 2}, {3, 5, 2, 4}};
    layer.recon_query_rows = {1, 2};
  }
};

TEST(Kvzip, ChunkScoresSpanSinksChunkAndCausalRepeatKeys) {
  const HandChunks hand;
  const KvzipScores s = compute_kvzip_scores(hand.layer, hand.model, 6, KvzipScoring::kChunk, 1);
  const std::vector<double> head0 = {0, 4 / 9.25, 2 / 9.25, 1 / 5.75, 0.5 / 5.75, 0};
  const std::vector<double> head1 = {0, 0.4, 25.0 / 75, 20.0 / 36, 1.0 / 36, 0};
  for (std::size_t j = 0; j < 6; ++j) {
    EXPECT_NEAR(s.pair[0][j], head0[j], 1e-6) << j;
    EXPECT_NEAR(s.pair[1][j], head1[j], 1e-6) << j;
  }
  // sinks=0: no sink key in the softmax; pass 0 of head 1 sums 30 + 25 + 5 + 5 = 65.
  EXPECT_NEAR(compute_kvzip_scores(hand.layer, hand.model, 6, KvzipScoring::kChunk, 0).pair[1][1], 30.0 / 65, 1e-6);
}

TEST(Kvzip, GlobalThresholdIsTheOriginalsStrictRule) {
  const HandChunks hand;
  // Context scores, descending: .556 (h1:3), .432 (h0:1), .4 (h1:1), .333 (h1:2), .216, .174, .087, .028.
  // ratio 0.5 of N = 8: thres = sorted[int(4) - 1 = 3] = .333; keep the 3 above it.
  EXPECT_EQ(hand.kept("kvzip(budget=0.5, sinks=1, window=1)"), (LayerResidency{{0, 1, 5}, {0, 1, 3, 5}}));
  // ratio 0.3: thres = sorted[int(2.4) - 1 = 1] = .432: only .556 is above it.
  EXPECT_EQ(hand.kept("kvzip(budget=0.3, sinks=1, window=1)"), (LayerResidency{{0, 5}, {0, 3, 5}}));
  // alloc=layer with the chunk scores: 2 x 4 entries = 2 windows, 2 sinks and the best 4 context pairs.
  EXPECT_EQ(hand.kept("kvzip(budget=4, alloc=layer, sinks=1, window=1)"), (LayerResidency{{0, 1, 5}, {0, 1, 2, 3, 5}}));
}

TEST(Kvzip, HandTokenLevel) {
  const HandKvzip hand;
  // Budget 4 tokens incl. window 1, sink 1: each head keeps 0 (sink), 5 (window) and two more.
  // Per head: head 0 ranks 4 (.254) > 3 (.127) > 1 (.109) > 2 -> {3, 4}; head 1 -> {1, 2}.
  EXPECT_EQ(hand.kept("kvzip(budget=4, alloc=head, sinks=1, window=1, scoring=whole)"),
            (LayerResidency{{0, 3, 4, 5}, {0, 1, 2, 5}}));
  // Pooled over the layer: 8 entries = 2 windows + 2 sinks + the 4 best of the rest across heads:
  // .3 (h1:1), .254 (h0:4), .25 (h1:2), .2 (h1:3).
  EXPECT_EQ(hand.kept("kvzip(budget=4, alloc=layer, sinks=1, window=1, scoring=whole)"),
            (LayerResidency{{0, 4, 5}, {0, 1, 2, 3, 5}}));
  // Without sinks position 0 competes: head 0's .508 is its best.
  EXPECT_EQ(hand.kept("kvzip(budget=3, alloc=head, sinks=0, window=1, scoring=whole)"),
            (LayerResidency{{0, 4, 5}, {1, 2, 5}}));
}

TEST(Kvzip, HandHeadLevel) {
  const HandKvzip hand;
  // Head scores = max over positions [sinks, n - window) = [1, 5): head 0 .254, head 1 .3. Budget
  // 0.5 of 2 heads -> 1 full head (head 1); head 0 keeps its sink and window only.
  EXPECT_EQ(hand.kept("kvzip(level=head, budget=0.5, sinks=1, window=1, scoring=whole)"),
            (LayerResidency{{0, 5}, {0, 1, 2, 3, 4, 5}}));
  // Counting the sink, head 0's .508 wins.
  EXPECT_EQ(hand.kept("kvzip(level=head, budget=0.5, sinks=0, window=2, scoring=whole)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5}, {4, 5}}));
  EXPECT_EQ(hand.kept("kvzip(level=head, budget=0.4, sinks=1, window=1, scoring=whole)"),
            (LayerResidency{{0, 5}, {0, 5}}));
}

TEST(Kvzip, HandDecodeStepsKeepGeneratedTokens) {
  const HandKvzip hand(2);
  // After the prompt head 0 keeps {0, 3, 4, 5}. Step 6: window {6}; 0 (sink) and the best two of
  // 3 (.127), 4 (.254), 5 (.875) -> {0, 4, 5, 6}. Step 7: window {7}; the generated token 6 ranks
  // with the sink above every prompt entry, then 5 -> {0, 5, 6, 7}.
  const LayerResidency kept = hand.kept("kvzip(budget=4, alloc=head, sinks=1, window=1, decode=step, scoring=whole)");
  EXPECT_EQ(kept[0], (std::vector<std::int32_t>{0, 5, 6, 7}));
}

TEST(Kvzip, ChunkedPrefillUsesTheChunkWindow) {
  const HandKvzip hand;
  // Chunks [0,3) [3,6), budget 0.5, window 1: capacities min(round(1.5)+1, 3) = 3, then 3 + 3 = 6:
  // the first chunk keeps all three; nothing is evicted.
  EXPECT_EQ(hand.kept("kvzip(budget=0.5, alloc=head, sinks=1, window=1, prefill=chunk, scoring=whole)", 3),
            (LayerResidency{{0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5}}));
  // Budget 0.2, window 1: round(0.6)+1 = 2 per chunk. Chunk 0 (window {2}): sink 0 + window ->
  // {0, 2}. Chunk 1 (window {5}): capacity 4 of {0, 2, 3, 4, 5}: 0, 5 and the best two of
  // 2 (.0635), 3 (.127), 4 (.254) -> {0, 3, 4, 5}.
  EXPECT_EQ(hand.kept("kvzip(budget=0.2, alloc=head, sinks=1, window=1, prefill=chunk, scoring=whole)", 3)[0],
            (std::vector<std::int32_t>{0, 3, 4, 5}));
}

// A random GQA layer: scores equal a direct double loop over the definition.
TEST(Kvzip, ScoresMatchADirectLoopWithGqa) {
  const ModelShape model{"gqa", 1, 6, 2, 8};
  auto source = testing_support::random_trace(model, 150, 3, {0}, 9, 1.5f);
  LayerTrace t = source.load_layer("0", 0);
  std::mt19937_64 rng(4);
  for (int g = 0; g < 6; ++g) t.recon_queries.push_back(testing_support::random_matrix(rng, 70, 8, 1.5f));
  const KvzipScores s = compute_kvzip_scores(t, model, 150, KvzipScoring::kWhole, 4);
  double worst = 0.0;
  for (int h = 0; h < 2; ++h) {
    std::vector<double> want(150, 0.0);
    for (int g = 3 * h; g < 3 * h + 3; ++g) {
      for (Eigen::Index i = 0; i < 70; ++i) {
        std::vector<double> p(150);
        double top = -1e300, sum = 0.0;
        for (int j = 0; j < 150; ++j) {
          p[j] = t.keys[h].row(j).cast<double>().dot(t.recon_queries[g].row(i).cast<double>()) / std::sqrt(8.0);
          top = std::max(top, p[j]);
        }
        for (double& x : p) sum += (x = std::exp(x - top));
        for (int j = 0; j < 150; ++j) want[j] = std::max(want[j], p[j] / sum);
      }
    }
    for (int j = 0; j < 150; ++j) worst = std::max(worst, std::abs(s.pair[h][j] - want[j]) / want[j]);
  }
  EXPECT_LT(worst, 1e-4);
}

TEST(Kvzip, KeptCountsFollowTheCapacityRule) {
  // expect_kept_counts uses a random trace without recon queries: give the traced case some.
  const ModelShape model{"tiny", 1, 4, 2, 8};
  auto source = testing_support::random_trace(model, 50, 3, {0}, 4);
  LayerTrace t = source.load_layer("0", 0);
  std::mt19937_64 rng(5);
  for (int g = 0; g < 4; ++g) t.recon_queries.push_back(testing_support::random_matrix(rng, 20, 8));
  const PassPlan plan = make_pass_plan(50, 3, 16);
  for (const LayerTrace* layer : {static_cast<const LayerTrace*>(&t), static_cast<const LayerTrace*>(nullptr)}) {
    for (const char* spec : {"kvzip(budget=0.2, window=4, prefill=chunk, alloc=head, scoring=whole)",
                             "kvzip(budget=0.2, window=4, prefill=chunk, scoring=whole)"}) {
      testing_support::RecordingPolicy policy(PolicyRegistry::builtin().create(spec));
      replay_layer({model, source.header().requests[0], plan, 0, layer, {}}, policy);
      // Chunks 16,16,16,2: min(round(3.2)+4, c) = 7, 7, 7, 2 -> 7, 14, 21, 23 (per head, or per
      // head on average when pooled).
      std::vector<std::int64_t> totals;
      for (const auto& e : policy.events())
        totals.push_back(e.after[0] + (e.after.size() > 1 ? e.after[1] : e.after[0]));
      EXPECT_EQ(totals, (std::vector<std::int64_t>{14, 28, 42, 46})) << spec << (layer ? " traced" : " untraced");
    }
  }
}

TEST(Kvzip, UntracedLayersCountHeadLevelGroupsOrTheGlobalShare) {
  const auto policy = PolicyRegistry::builtin().create("kvzip(level=head, budget=0.6, sinks=4, window=8)");
  const ModelShape model{"m", 4, 16, 8, 16};
  // floor(0.6 x 4 x 8) = 19 full heads, spread over 4 layers: 4, 5, 5, 5.
  EXPECT_EQ(policy->untraced_head_groups(model, 0), (std::vector<int>{4, 4}));
  EXPECT_EQ(policy->untraced_head_groups(model, 2), (std::vector<int>{5, 3}));
  RequestInfo request;
  request.prompt_tokens = 100;
  const PassPlan plan = make_pass_plan(100, 0, 100);
  const LayerReplay r = replay_layer({model, request, plan, 2, nullptr, {}}, *policy);
  ASSERT_EQ(r.final_residency.size(), 2u);
  EXPECT_EQ(r.final_residency[0].size(), 100u);
  EXPECT_EQ(r.final_residency[1].size(), 12u);              // sinks 4 + window 8
  EXPECT_EQ(r.footprint_entry_steps, 5 * 5050 + 3 * 5050);  // one pass: 5050 per head whatever it keeps
  const auto token = PolicyRegistry::builtin().create("kvzip");
  EXPECT_EQ(token->untraced_head_groups(model, 2), (std::vector<int>{8}));
  // alloc=global: the sinks, the window and the mean share floor(ratio x context) per head:
  // 4 + 8 + floor(0.3 x 88) = 38.
  const auto global = PolicyRegistry::builtin().create("kvzip(budget=0.3, window=8)");
  const LayerReplay g = replay_layer({model, request, plan, 2, nullptr, {}}, *global);
  ASSERT_EQ(g.final_residency.size(), 1u);
  EXPECT_EQ(g.final_residency[0].size(), 38u);
}

TEST(Kvzip, SpecDefaultsAndBadParameters) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("kvzip")->spec(),
            "kvzip(budget=0.3, level=token, alloc=global, scoring=chunk, sinks=4, window=32, prefill=post_fill, "
            "decode=none)");
  // The original thresholds once after the prompt: other eviction points default to alloc=layer.
  EXPECT_EQ(reg.create("kvzip(prefill=chunk)")->spec(),
            "kvzip(budget=0.3, level=token, alloc=layer, scoring=chunk, sinks=4, window=32, prefill=chunk, "
            "decode=none)");
  EXPECT_EQ(reg.create("kvzip(level=head)")->spec(),
            "kvzip(budget=0.6, level=head, scoring=chunk, sinks=4, window=32, prefill=post_fill, decode=none)");
  EXPECT_TRUE(reg.create("kvzip")->requires_recon_queries());
  EXPECT_TRUE(reg.create("kvzip")->requires_recon_passes());
  EXPECT_FALSE(reg.create("kvzip(scoring=whole)")->requires_recon_passes());
  policy_test::expect_rejected({"kvzip(budget=0)", "kvzip(budget=2.5)", "kvzip(level=pair)", "kvzip(sinks=-1)",
                                "kvzip(window=-1)", "kvzip(budget=16, window=16, alloc=layer)", "kvzip(alloc=pooled)",
                                "kvzip(scoring=pass)", "kvzip(scoring=)"});
  policy_test::expect_error("kvzip(alloc=global, prefill=chunk)", "needs prefill=post_fill");
  policy_test::expect_error("kvzip(alloc=global, prefill=none, decode=step)", "needs prefill=post_fill");
  policy_test::expect_error("kvzip(budget=100)", "alloc=global takes the original's ratio");
  policy_test::expect_error("kvzip(level=head, budget=40)", "fraction of the KV heads");
  policy_test::expect_error("kvzip(level=head, alloc=head)", "level=token only");
}

TEST(Kvzip, TraceWithoutReconQueriesIsAClearError) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const auto source = testing_support::random_trace(model, 40, 2, {0}, 3);
  const auto policy = PolicyRegistry::builtin().create("kvzip");
  const Policy* policies[] = {policy.get()};
  try {
    replay_request(source, source.header().requests[0], policies, {});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no recon_queries dataset"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("kvzip(budget=0.3"), std::string::npos) << e.what();
  }
}

TEST(Kvzip, ChunkScoringWithoutReconPassesIsAClearError) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const auto source = testing_support::random_trace(model, 40, 2, {0}, 3);
  LayerTrace t = source.load_layer("0", 0);
  std::mt19937_64 rng(5);
  for (int g = 0; g < 4; ++g) t.recon_queries.push_back(testing_support::random_matrix(rng, 5, 8));
  const PassPlan plan = make_pass_plan(40, 2, 40);
  const auto chunk = PolicyRegistry::builtin().create("kvzip");
  EXPECT_THROW(replay_layer({model, source.header().requests[0], plan, 0, &t, {}}, *chunk), std::logic_error);
  const auto whole = PolicyRegistry::builtin().create("kvzip(scoring=whole)");
  EXPECT_NO_THROW(replay_layer({model, source.header().requests[0], plan, 0, &t, {}}, *whole));
}

}  // namespace
}  // namespace kvsim

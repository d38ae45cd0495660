// kvcompress: hand-checked block evictions across heads (the reference's hanging-token rule, the
// budget rounded up to whole blocks, window - 1 protected entries), blocks ranked across layers
// (rank=sequence) against per layer (rank=layer), the block granularity of every eviction, and bad inputs.
#include <gtest/gtest.h>

#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(KvCompress, HandBlocksAcrossHeads) {
  // T=8, window 1: one metric query (position 7), no protected entry (window - 1 = 0); kernel 1: the
  // metric is (x_j / sum x)^2, so each head's eviction order is by x (ties: older first).
  // Head 0: x = [1..7, 4], sum 32: order 0,1,2,3,7,4,5,6. Head 1: x = [8,1,8,1,8,1,8,4], sum 39:
  // order 1,3,5,7,0,2,4,6. 8 entries in blocks of 2: hanging 2, block c evicts order[0 .. 2c+2) and
  // its metric is that of order[2c+1]: head 0 x = 2, 4, 5, 7 (/32); head 1 x = 1, 4, 8, 8 (/39).
  const HandLayer hand({{1, 2, 3, 4, 5, 6, 7, 4}, {8, 1, 8, 1, 8, 1, 8, 4}});
  // B=6: 8 blocks, budget 2 x 3 -> 2 evicted: h1 c0 (1/39), h0 c0 (2/32).
  const LayerResidency six{{2, 3, 4, 5, 6, 7}, {0, 2, 4, 5, 6, 7}};
  EXPECT_EQ(hand.kept("kvcompress(budget=6, block_tokens=2, window=1, kernel=1, rank=layer)"), six);
  // B=5 rounds up to whole blocks (max_cache_tokens): as B=6.
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=2, window=1, kernel=1, rank=layer)"), six);
  // B=4: 4 evicted, + h1 c1 (4/39) and h0 c1 (4/32); head 1 loses its last entry (nothing protected).
  EXPECT_EQ(hand.kept("kvcompress(budget=4, block_tokens=2, window=1, kernel=1, rank=layer)"),
            (LayerResidency{{4, 5, 6, 7}, {0, 2, 4, 6}}));
  // Blocks of 3: hanging 8 - 6 = 2, block c evicts order[0 .. 3c+2), metric of order[3c+1]:
  // head 0 x = 2, 4, 7; head 1 x = 1, 8, 8. B=5 -> 6 per head: 2 of 6 blocks go, h1 c0 and h0 c0,
  // 2 entries each (the hanging ones): both heads keep two whole blocks.
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=3, window=1, kernel=1, rank=layer)"), six);
  // B=3: 4 blocks go: h1 c0, h0 c0, h0 c1 (4/32), h1 c1 (8/39): each head loses (2-1) x 3 + 2 = 5.
  EXPECT_EQ(hand.kept("kvcompress(budget=3, block_tokens=3, window=1, kernel=1, rank=layer)"),
            (LayerResidency{{4, 5, 6}, {2, 4, 6}}));
  // Replayed alone, rank=sequence has no other layer and ranks within the layer.
  EXPECT_EQ(hand.kept("kvcompress(budget=6, block_tokens=2, window=1, kernel=1)"), six);
}

TEST(KvCompress, ProtectsWindowMinusOneAndScoresTheWindowEntries) {
  // Window 2: queries 6 and 7 score (query 6 sees 0..6, query 7 sees 0..7); only position 7 is
  // protected. metric_j = x_j^2 (1/S6^2 + 1/S7^2), j <= 6: head 0 (S6 = 28, S7 = 32) x^2 x .002252,
  // head 1 (S6 = 35, S7 = 39) x^2 x .001474. 7 evictable entries, hanging 2: blocks c0..c2 (block 3
  // would need 8). Head 0: order 0..6, metrics .0090, .0360, .0811; head 1: order 1,3,5,0,2,4,6,
  // metrics .0015, .0943, .0943. B=4: 4 of 8 blocks go: h1 c0, h0 c0, h0 c1, h0 c2: head 0 loses
  // (3-1) x 2 + 2 = 6 entries and keeps its last evictable one and the protected one.
  const HandLayer hand({{1, 2, 3, 4, 5, 6, 7, 4}, {8, 1, 8, 1, 8, 1, 8, 4}});
  EXPECT_EQ(hand.kept("kvcompress(budget=4, block_tokens=2, window=2, kernel=1, rank=layer)"),
            (LayerResidency{{6, 7}, {0, 2, 4, 5, 6, 7}}));
}

TEST(KvCompress, MaxPoolsEachQueryHeadsMetricOverAllEntries) {
  // Window 1, kernel 3, blocks of 2, B=4: head 0's squares [1,4,9,16,25,36,49,16] (/32^2) pool, the
  // window entry included, to [4,9,16,25,36,49,49,49]: order 0..7, block metrics (order[1], [3], ...)
  // 9, 25, 49, 49 /1024 = .0088, .0244, .0479, .0479. Head 1's [64,1,64,1,64,1,64,16] pool to 64
  // everywhere: order 0..7, blocks all .0421. 4 go: h0 c0, h0 c1, then h1 c0, h1 c1 (.0421 < .0479).
  const HandLayer hand({{1, 2, 3, 4, 5, 6, 7, 4}, {8, 1, 8, 1, 8, 1, 8, 4}});
  EXPECT_EQ(hand.kept("kvcompress(budget=4, block_tokens=2, window=1, kernel=3, rank=layer)"),
            (LayerResidency{{4, 5, 6, 7}, {4, 5, 6, 7}}));
  // The default kernel is the reference's 7.
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=2, window=1)"),
            hand.kept("kvcompress(budget=5, block_tokens=2, window=1, kernel=7)"));
}

TEST(KvCompress, RanksBlocksAcrossLayers) {
  // Two layers of one head, window 1, kernel 1, blocks of 2, B=4 (2 of 4 blocks per layer over budget).
  // Layer 0: x flat, every block metric 1/64. Layer 1: x = [64,64,1,1,1,1,1,1]: order 2..7,0,1, blocks
  // c0..c2 (1/134)^2, c3 (64/134)^2. Per layer: each evicts 2 blocks. Across the sequence: the 4
  // lowest are layer 1's c0..c2 and layer 0's c0: layer 1 keeps 2, layer 0 keeps 6, 8 in all.
  const ModelShape model{"hand2", 2, 1, 1, 1};
  RequestInfo request;
  request.prompt_tokens = 8;
  const LayerTrace flat = policy_test::log_weight_layer({{1, 1, 1, 1, 1, 1, 1, 1}}, 0);
  const LayerTrace peaked = policy_test::log_weight_layer({{64, 64, 1, 1, 1, 1, 1, 1}}, 1);
  const PassPlan plan = make_pass_plan(8, 0, 8);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const LayerResidency prompt{{0, 1, 2, 3, 4, 5, 6, 7}};
  const auto sequence = PolicyRegistry::builtin().create("kvcompress(budget=4, block_tokens=2, window=1, kernel=1)");
  ASSERT_TRUE(sequence->uses_layer_statistics(true));
  std::vector<LayerStatistic> statistics;
  for (const LayerTrace* layer : {&flat, &peaked}) {
    statistics.push_back(
        sequence->layer_statistic({model, request, layer->layer, layer, prefill.back(), prefill, nullptr}, prompt));
  }
  EXPECT_EQ(statistics[0].front(), 2.0);  // blocks over budget
  EXPECT_EQ(statistics[0].size(), 5u);    // and the 4 block metrics
  auto replay = [&](const Policy& policy, const LayerTrace& layer, std::span<const LayerStatistic> stats) {
    return replay_layer({model, request, plan, layer.layer, &layer, {}, stats}, policy).final_residency;
  };
  EXPECT_EQ(replay(*sequence, flat, statistics), (LayerResidency{{2, 3, 4, 5, 6, 7}}));
  EXPECT_EQ(replay(*sequence, peaked, statistics), (LayerResidency{{0, 1}}));
  // An untraced layer keeps the uniform budget.
  EXPECT_EQ(replay_layer({model, request, plan, 1, nullptr, {}, statistics}, *sequence).final_residency[0].size(), 4u);
  const auto layer =
      PolicyRegistry::builtin().create("kvcompress(budget=4, block_tokens=2, window=1, kernel=1, rank=layer)");
  EXPECT_FALSE(layer->uses_layer_statistics(true));
  EXPECT_EQ(replay(*layer, flat, {}), (LayerResidency{{4, 5, 6, 7}}));
  EXPECT_EQ(replay(*layer, peaked, {}), (LayerResidency{{0, 1, 6, 7}}));
  // With prefill=chunk only per-layer ranking is possible (no end-of-prompt metrics mid-prompt).
  EXPECT_FALSE(PolicyRegistry::builtin().create("kvcompress(prefill=chunk)")->uses_layer_statistics(true));
}

TEST(KvCompress, EvictsWholeBlocksAndMeetsTheLayerBudget) {
  // GQA 8 query / 4 KV heads, chunks 100,100,100,50 with b=0.3, w=8 -> capacity 38, 76, 114, 137,
  // rounded up to whole blocks; the three decode steps keep 137. After an eviction every head holds
  // whole blocks (its hanging entries go with its first evicted block) and the layer holds exactly
  // its rounded budget unless the protected entries stop it.
  const ModelShape model{"tiny", 2, 8, 4, 8};
  const auto source = testing_support::random_trace(model, 350, 3, {0}, 21, 2.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(350, 3, 100);
  const std::vector<std::int64_t> capacity{38, 76, 114, 137, 137, 137, 137};
  for (std::int64_t block : {1, 4, 16}) {
    const std::string spec =
        "kvcompress(budget=0.3, window=8, block_tokens=" + std::to_string(block) + ", prefill=chunk, decode=step)";
    testing_support::RecordingPolicy traced(PolicyRegistry::builtin().create(spec));
    replay_layer({model, source.header().requests[0], plan, 0, &trace, {}}, traced);
    const auto events = traced.events();
    ASSERT_EQ(events.size(), capacity.size()) << spec;
    bool uneven = false;
    for (std::size_t e = 0; e < events.size(); ++e) {
      const std::int64_t budget = (capacity[e] + block - 1) / block * block;
      std::int64_t total = 0;
      for (std::size_t h = 0; h < 4; ++h) {
        if (events[e].after[h] != events[e].before[h]) {
          EXPECT_EQ(events[e].after[h] % block, 0) << spec << " eviction " << e << " head " << h;
        }
        EXPECT_GE(events[e].after[h], 7) << spec;  // window - 1 entries are protected
        total += events[e].after[h];
        uneven |= events[e].after[h] != events[e].after[0];
      }
      EXPECT_LE(total, 4 * budget) << spec << " eviction " << e;
      EXPECT_GT(total, 4 * budget - 4 * block) << spec << " eviction " << e;
    }
    EXPECT_TRUE(uneven) << spec << ": per-head counts should differ on random heads";
    // Untraced: the uniform count, rounded up to whole blocks.
    testing_support::RecordingPolicy untraced(PolicyRegistry::builtin().create(spec));
    replay_layer({model, source.header().requests[0], plan, 1, nullptr, {}}, untraced);
    ASSERT_EQ(untraced.sizes().size(), capacity.size());
    for (std::size_t e = 0; e < capacity.size(); ++e)
      EXPECT_EQ(untraced.sizes()[e][0], (capacity[e] + block - 1) / block * block) << spec;
  }
}

TEST(KvCompress, RejectsBadParameters) {
  policy_test::expect_error("kvcompress(block_tokens=0)", "block_tokens");
  policy_test::expect_error("kvcompress(budget=32)", "budget");
  policy_test::expect_rejected({"kvcompress(window=0)", "kvcompress(budget=-1)", "kvcompress(kernel=4)",
                                "kvcompress(kernel=0)", "kvcompress(kernel=2000001)", "kvcompress(pooling=max)",
                                "kvcompress(rank=head)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("kvcompress")->spec(),
            "kvcompress(budget=0.2, block_tokens=16, window=32, kernel=7, rank=sequence, prefill=post_fill, "
            "decode=none)");
}

}  // namespace
}  // namespace kvsim

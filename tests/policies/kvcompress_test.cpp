// kvcompress: hand-checked block evictions across heads, the block granularity of every eviction,
// and bad inputs.
#include <gtest/gtest.h>

#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(KvCompress, HandBlocksAcrossHeads) {
  // T=8, window {7}, kernel 1 (no pooling): metric = (x_j / sum x)^2, so each head's eviction order is
  // by x (ties: older first).
  // Head 0: x = [1..7 | 4], sum 32: order 0..6. Head 1: x = [8,1,8,1,8,1,8 | 4], sum 39: order 1,3,5,0,2,4,6.
  const HandLayer hand({{1, 2, 3, 4, 5, 6, 7, 4}, {8, 1, 8, 1, 8, 1, 8, 4}});
  // Blocks of 2 (metric = sqrt of its last entry's metric): head 0 {0,1} 2/32, {2,3} 4/32, {4,5} 6/32;
  // head 1 {1,3} 1/39, {5,0} 8/39, {2,4} 8/39; each head's 7th entry has no full block and stays.
  // B=6: 16 entries, budget 12 -> 2 blocks: h1{1,3} (.026), h0{0,1} (.0625).
  EXPECT_EQ(hand.kept("kvcompress(budget=6, block_tokens=2, window=1, kernel=1)"),
            (LayerResidency{{2, 3, 4, 5, 6, 7}, {0, 2, 4, 5, 6, 7}}));
  // B=5: 3 blocks, + h0{2,3} (.125).
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=2, window=1, kernel=1)"),
            (LayerResidency{{4, 5, 6, 7}, {0, 2, 4, 5, 6, 7}}));
  // B=4: 4 blocks, + h0{4,5} (.1875 < h1's .205): head 0 keeps 2, head 1 keeps 6.
  EXPECT_EQ(hand.kept("kvcompress(budget=4, block_tokens=2, window=1, kernel=1)"),
            (LayerResidency{{6, 7}, {0, 2, 4, 5, 6, 7}}));
  // Blocks of 3: head 0 {0,1,2} 3/32, {3,4,5} 6/32; head 1 {1,3,5} 1/39, {0,2,4} 8/39.
  // B=5: excess 6 -> 2 blocks: h1{1,3,5}, h0{0,1,2}.
  const LayerResidency three{{3, 4, 5, 6, 7}, {0, 2, 4, 6, 7}};
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=3, window=1, kernel=1)"), three);
  // B=4: excess 8 -> floor(8/3) = 2 blocks as well: the layer stays 2 entries over its budget.
  EXPECT_EQ(hand.kept("kvcompress(budget=4, block_tokens=3, window=1, kernel=1)"), three);
  // B=7: excess 2 < one block: nothing is evicted.
  EXPECT_EQ(hand.kept("kvcompress(budget=7, block_tokens=3, window=1, kernel=1)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}}));
}

TEST(KvCompress, MaxPoolsEachQueryHeadsMetric) {
  // The layer above with kernel 3: head 0's squares [1,4,9,16,25,36,49]/32^2 pool to
  // [4,9,16,25,36,49,49]/32^2; head 1's [64,1,64,1,64,1,64]/39^2 pool to 64/39^2 = .0421 everywhere
  // (order 0..6). B=5, blocks of 2, 3 evicted: h0{0,1} (.0088), h0{2,3} (.0244), h1{0,1} (.0421),
  // before h1{2,3}, h1{4,5} and h0{4,5} (.0479).
  const HandLayer hand({{1, 2, 3, 4, 5, 6, 7, 4}, {8, 1, 8, 1, 8, 1, 8, 4}});
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=2, window=1, kernel=3)"),
            (LayerResidency{{4, 5, 6, 7}, {2, 3, 4, 5, 6, 7}}));
  // The default kernel is the reference's 7.
  EXPECT_EQ(hand.kept("kvcompress(budget=5, block_tokens=2, window=1)"),
            hand.kept("kvcompress(budget=5, block_tokens=2, window=1, kernel=7)"));
}

TEST(KvCompress, EvictsWholeBlocksAndMeetsTheLayerBudget) {
  // GQA 8 query / 4 KV heads, chunks 100,100,100,50 with b=0.3, w=8 -> capacity 38, 76, 114, 137; the
  // three decode steps keep 137 (each adds 4 entries to the layer: a block of 4 goes every step).
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
      std::int64_t total = 0;
      for (std::size_t h = 0; h < 4; ++h) {
        EXPECT_EQ((events[e].before[h] - events[e].after[h]) % block, 0) << spec << " eviction " << e << " head " << h;
        EXPECT_GE(events[e].after[h], 8) << spec;  // the window stays
        total += events[e].after[h];
        uneven |= events[e].after[h] != events[e].after[0];
      }
      EXPECT_GE(total, 4 * capacity[e]) << spec << " eviction " << e;
      EXPECT_LT(total, 4 * capacity[e] + block) << spec << " eviction " << e;
    }
    EXPECT_TRUE(uneven) << spec << ": per-head counts should differ on random heads";
    // Untraced: the uniform count.
    testing_support::RecordingPolicy untraced(PolicyRegistry::builtin().create(spec));
    replay_layer({model, source.header().requests[0], plan, 1, nullptr, {}}, untraced);
    ASSERT_EQ(untraced.sizes().size(), capacity.size());
    for (std::size_t e = 0; e < capacity.size(); ++e) EXPECT_EQ(untraced.sizes()[e][0], capacity[e]) << spec;
  }
}

TEST(KvCompress, RejectsBadParameters) {
  policy_test::expect_error("kvcompress(block_tokens=0)", "block_tokens");
  policy_test::expect_error("kvcompress(budget=32)", "budget");
  policy_test::expect_rejected({"kvcompress(window=0)", "kvcompress(budget=-1)", "kvcompress(kernel=4)",
                                "kvcompress(kernel=0)", "kvcompress(kernel=2000001)", "kvcompress(pooling=max)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("kvcompress")->spec(),
            "kvcompress(budget=0.2, block_tokens=16, window=32, kernel=7, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

// think (ThinK key-channel pruning): the pruned channels and bytes of a hand-made head. Most cases
// use recent=0 (every prompt key pruned, as kvpress); Think.RecentKeysStayWhole the original's
// recent_size.
#include <gtest/gtest.h>

#include "policies/pass_plan.h"
#include "policies/registry.h"
#include "util/error.h"

namespace kvsim {
namespace {

// One MHA head, head_dim 4, prompt 4, 2 decode tokens. Prompt keys give
// kn = mean k^2 = [1, 2, 2, 1]; the window (last 2 prompt queries, rows 2 and 3) gives
// qn = mean q^2 = [(9+1)/2, 1, 1, (0+9)/2] = [5, 1, 1, 4.5]; score = qn * kn = [5, 2, 2, 4.5].
struct HandHead {
  ModelShape model{"hand", 1, 1, 1, 4};
  RequestInfo request;
  LayerTrace layer;
  HandHead() {
    request.prompt_tokens = 4;
    request.generated_tokens = 2;
    HeadMatrix k(6, 4), v(6, 4), q(6, 4);
    k << 1, 2, 0, 1, 1, 2, 0, 1, 1, 0, 2, 1, 1, 0, 2, 1, 7, 7, 7, 7, 5, 5, 5, 5;
    v = k * 0.5f;
    q << 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 1, 0, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1, 1, 1;
    layer.keys = {k};
    layer.values = {v};
    layer.queries = {q};
    layer.query_positions = {0, 1, 2, 3, 4, 5};
  }
};

TEST(Think, PrunesLowestScoredChannelsOfPromptKeys) {
  const HandHead hand;
  // ratio 0.5: floor(4 * 0.5) = 2 channels, the two scored 2: channels 1 and 2, every prompt key.
  const auto half = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=0)");
  const CompressedHead c = half->compressed_head(hand.model, hand.request, {}, hand.layer, 0);
  HeadMatrix want = hand.layer.keys[0];
  want.col(1).setZero();
  want.col(2).setZero();
  EXPECT_EQ(c.keys.topRows(4), want.topRows(4));
  EXPECT_EQ(c.values, hand.layer.values[0]);
  // ratio 0.25: one channel; channels 1 and 2 tie at 2 and the lower index goes.
  const auto quarter = PolicyRegistry::builtin().create("think(ratio=0.25, window=2, recent=0)");
  const CompressedHead c1 = quarter->compressed_head(hand.model, hand.request, {}, hand.layer, 0);
  EXPECT_EQ(c1.keys.col(1).head(4).norm(), 0.0f);
  EXPECT_GT(c1.keys.col(2).head(4).norm(), 0.0f);
  // A window of 1 (row 3 only): qn = [1, 1, 1, 9] -> scores [1, 2, 2, 9]: channels 0 and 1 go.
  const auto narrow = PolicyRegistry::builtin().create("think(ratio=0.5, window=1, recent=0)");
  const CompressedHead c2 = narrow->compressed_head(hand.model, hand.request, {}, hand.layer, 0);
  EXPECT_EQ(c2.keys.col(0).head(4).norm(), 0.0f);
  EXPECT_EQ(c2.keys.col(1).head(4).norm(), 0.0f);
  EXPECT_GT(c2.keys.col(2).head(4).norm(), 0.0f);
}

TEST(Think, BytesByHand) {
  const HandHead hand;
  const auto policy = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=0)");
  // 6 kept entries after the prompt of 4, fp16, head_dim 4: keys 4 * (4 - 2) * 2 + 2 * 4 * 2 = 32,
  // values 6 * 4 * 2 = 48; the first 4 keys are the pruned class.
  StoredEntries s = policy->stored(hand.model, hand.request, {}, 6);
  EXPECT_EQ(s.key_compressed, 4);
  EXPECT_EQ(s.value_compressed, 0);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 32);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 48);
  // Mid-prompt (chunked prefill): nothing pruned yet.
  s = policy->stored(hand.model, hand.request, {}, 3);
  EXPECT_EQ(s.key_compressed, 0);
  EXPECT_DOUBLE_EQ(s.bytes.total(), 3 * 16);
  // llama-like head_dim 128 at ratio 0.4: floor(51.2) = 51 channels pruned -> 77 * 2 = 154 key bytes;
  // by default the last 32 prompt keys stay whole (256 bytes each).
  const ModelShape llama{"l", 1, 32, 8, 128};
  RequestInfo r;
  r.prompt_tokens = 42;
  const auto think04 = PolicyRegistry::builtin().create("think(ratio=0.4)");
  EXPECT_EQ(think04->stored(llama, r, {}, 42).key_compressed, 10);
  EXPECT_DOUBLE_EQ(think04->stored(llama, r, {}, 42).bytes.key_bytes, 10 * 154 + 32 * 256);
  r.prompt_tokens = 20;  // a prompt within the recent keys: nothing pruned
  EXPECT_EQ(think04->stored(llama, r, {}, 20).key_compressed, 0);
  EXPECT_DOUBLE_EQ(think04->stored(llama, r, {}, 20).bytes.key_bytes, 20 * 256);
}

// The original (ThinK key_pruner_query_driven) keeps the last recent_size prompt keys whole: with
// recent=1 the channels are scored as with recent=0 (all prompt keys in kn) but key 3 keeps them.
TEST(Think, RecentKeysStayWhole) {
  const HandHead hand;
  const auto policy = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=1)");
  EXPECT_EQ(policy->spec(), "think(ratio=0.5, window=2, recent=1, gqa=mean, prefill=post_fill)");
  EXPECT_EQ(PolicyRegistry::builtin().create("think")->spec(),
            "think(ratio=0.5, window=32, recent=32, gqa=mean, prefill=post_fill)");
  const CompressedHead c = policy->compressed_head(hand.model, hand.request, {}, hand.layer, 0);
  HeadMatrix want = hand.layer.keys[0];
  want.block(0, 1, 3, 2).setZero();
  EXPECT_EQ(c.keys, want);
  // 6 kept: keys 3 * (4 - 2) * 2 + 3 * 4 * 2 = 36 bytes; the first 3 are the pruned class.
  StoredEntries s = policy->stored(hand.model, hand.request, {}, 6);
  EXPECT_EQ(s.key_compressed, 3);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 36);
  // recent >= the prompt: nothing pruned.
  const auto all_recent = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=4)");
  EXPECT_EQ(all_recent->compressed_head(hand.model, hand.request, {}, hand.layer, 0).keys, hand.layer.keys[0]);
  EXPECT_EQ(all_recent->stored(hand.model, hand.request, {}, 6).key_compressed, 0);
  // prefill=chunk, chunks [0, 2) and [2, 4), recent=1: chunk 0 prunes key 0 with its channels 0, 1;
  // chunk 1 prunes keys 1 and 2 with its channels 1, 2; key 3 stays whole.
  const auto chunked = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=1, prefill=chunk)");
  const PassPlan plan = make_pass_plan(4, 2, 2);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  want = hand.layer.keys[0];
  want.block(0, 0, 1, 2).setZero();
  want.block(1, 1, 2, 2).setZero();
  EXPECT_EQ(chunked->compressed_head(hand.model, hand.request, prefill, hand.layer, 0).keys, want);
  EXPECT_EQ(chunked->stored(hand.model, hand.request, prefill, 3).key_compressed, 1);
  EXPECT_EQ(chunked->stored(hand.model, hand.request, prefill, 6).key_compressed, 3);
}

// prefill=chunk, chunks [0, 2) and [2, 4), window 2: chunk [0, 2) is scored by queries 0 and 1
// (zero) -> all scores 0, channels 0 and 1 go (ties: lower index); chunk [2, 4) has kn = [1, 0, 4, 1]
// and qn = [5, 1, 1, 4.5] -> scores [5, 0, 4, 4.5]: channels 1 and 2 go.
TEST(Think, ChunkModePrunesEachChunkByItsOwnScores) {
  const HandHead hand;
  const auto policy = PolicyRegistry::builtin().create("think(ratio=0.5, window=2, recent=0, prefill=chunk)");
  EXPECT_EQ(policy->spec(), "think(ratio=0.5, window=2, recent=0, gqa=mean, prefill=chunk)");
  const PassPlan plan = make_pass_plan(4, 2, 2);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const CompressedHead c = policy->compressed_head(hand.model, hand.request, prefill, hand.layer, 0);
  HeadMatrix want = hand.layer.keys[0];
  want.block(0, 0, 2, 2).setZero();
  want.block(2, 1, 2, 2).setZero();
  EXPECT_EQ(c.keys, want);  // decode keys (rows 4, 5) whole
  // Bytes: after chunk 0 (2 stored entries) both are pruned; mid-chunk (3) only the first 2.
  StoredEntries s = policy->stored(hand.model, hand.request, prefill, 2);
  EXPECT_EQ(s.key_compressed, 2);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 2 * 2 * 2);
  s = policy->stored(hand.model, hand.request, prefill, 3);
  EXPECT_EQ(s.key_compressed, 2);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 2 * 2 * 2 + 4 * 2);
  // Its queries: the window of each chunk.
  std::vector<std::int64_t> positions;
  policy->add_required_queries(hand.request, prefill, &positions);
  EXPECT_EQ(positions, (std::vector<std::int64_t>{0, 1, 2, 3}));
}

TEST(Think, RejectsBadParameters) {
  for (const char* spec : {"think(ratio=1)", "think(ratio=-0.1)", "think(window=0)", "think(bits=2)",
                           "think(prefill=none)", "think(decode=step)", "think(recent=-1)", "think(recent=abc)"}) {
    EXPECT_THROW(PolicyRegistry::builtin().create(spec), InputError) << spec;
  }
}

}  // namespace
}  // namespace kvsim

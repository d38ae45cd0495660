// chunkkv: hand-checked chunk selection, the budget rounded down to whole chunks, and kept counts
// of traced and untraced layers at every eviction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using policy_test::HandLayer;

TEST(ChunkKv, HandWholeChunksSharedByHeads) {
  // T=8, window {7}, chunk_length 2: chunks {0,1} {2,3} {4,5}, leftover {6} kept with the window.
  // Head 0: x = [1,1,5,1,2,2,1 | 1] / 14; head 1: x = [4,1,1,1,1,1,1 | 1] / 11.
  // Chunk means of the head sums: {0,1}: (2/14 + 5/11)/2 = .2987; {2,3}: (6/14 + 2/11)/2 = .3052;
  // {4,5}: (4/14 + 2/11)/2 = .2338. Head 1 alone would keep position 0; the layer keeps chunk {2,3}.
  const HandLayer hand({{1, 1, 5, 1, 2, 2, 1, 1}, {4, 1, 1, 1, 1, 1, 1, 1}});
  const LayerResidency one{{2, 3, 6, 7}, {2, 3, 6, 7}};
  // B=4: floor((4 - 2)/2) = 1 chunk; B=5 rounds down to the same chunk (4 entries kept).
  EXPECT_EQ(hand.kept("chunkkv(budget=4, window=1, kernel=1, chunk_length=2)"), one);
  EXPECT_EQ(hand.kept("chunkkv(budget=5, window=1, kernel=1, chunk_length=2)"), one);
  // B=6: two chunks, {2,3} and {0,1}.
  EXPECT_EQ(hand.kept("chunkkv(budget=6, window=1, kernel=1, chunk_length=2)"),
            (LayerResidency{{0, 1, 2, 3, 6, 7}, {0, 1, 2, 3, 6, 7}}));
  // B=3 < window + leftover + one chunk: no chunk, only the protected tail.
  EXPECT_EQ(hand.kept("chunkkv(budget=3, window=1, kernel=1, chunk_length=2)"), (LayerResidency{{6, 7}, {6, 7}}));
  // chunk_length 10 > the 7 scored entries: no whole chunk, kvpress falls back to its scorer
  // (SnapKV per head, B=3: head 0 {2, 4, 7} (5 then 2,2 tie -> lower), head 1 {0, 1, 7}).
  EXPECT_EQ(hand.kept("chunkkv(budget=3, window=1, kernel=1, chunk_length=10)"),
            (LayerResidency{{2, 4, 7}, {0, 1, 7}}));
}

// The count rule of chunkkv.cpp: w + rho + L floor((C - w - rho)/L), or C with no whole chunk.
std::int64_t chunk_count(std::int64_t size, std::int64_t window, std::int64_t capacity, std::int64_t length) {
  if (size <= capacity) return size;
  const std::int64_t chunks = (size - window) / length;
  if (chunks == 0) return capacity;
  const std::int64_t tail = size - chunks * length;
  return tail + length * std::clamp<std::int64_t>((capacity - tail) / length, 0, chunks);
}

TEST(ChunkKv, CountsFollowTheChunkRoundingAtEveryEviction) {
  // GQA 4 query / 2 KV heads; prompt 330 in chunks of 100 (last 30), budget 0.3, w=8, L=7.
  const ModelShape model{"tiny", 2, 4, 2, 8};
  const std::int64_t n = 330, m = 2, w = 8, length = 7;
  auto source = testing_support::random_trace(model, n, m, {0}, 33, 2.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(n, m, 100);
  const std::string spec = "chunkkv(budget=0.3, window=8, kernel=3, chunk_length=7, prefill=chunk)";
  testing_support::RecordingPolicy traced(PolicyRegistry::builtin().create(spec)),
      untraced(PolicyRegistry::builtin().create(spec));
  replay_layer({model, source.header().requests[0], plan, 0, &trace, {}}, traced);
  replay_layer({model, source.header().requests[0], plan, 1, nullptr, {}}, untraced);
  EXPECT_TRUE(traced.same_sets()) << "heads share the chunks";
  // Expected: replay the count rule; capacity after chunk j = sum min(round(0.3 c) + 8, c).
  std::vector<std::int64_t> want;
  std::int64_t resident = 0, capacity = 0;
  for (std::int64_t c : {100, 100, 100, 30}) {
    capacity += std::min<std::int64_t>(std::llround(0.3 * static_cast<double>(c)) + w, c);
    resident = chunk_count(resident + c, std::min(w, c), capacity, length);
    want.push_back(resident);
  }
  // By hand: chunk 0: S=100, C=38: 92 = 13 x 7 + rho 1, tail 9, floor(29/7) = 4 chunks -> 37.
  // Chunk 1: S=137, C=76: 129 = 18 x 7 + 3, tail 11, floor(65/7) = 9 -> 74. Chunk 2: S=174, C=114:
  // tail 13, floor(101/7) = 14 -> 111. Chunk 3 (30 tokens): S=141, C=131: 133 = 19 x 7, tail 8, 17 -> 127.
  EXPECT_EQ(want, (std::vector<std::int64_t>{37, 74, 111, 127}));
  const auto traced_sizes = traced.sizes(), untraced_sizes = untraced.sizes();
  ASSERT_EQ(traced_sizes.size(), want.size());
  ASSERT_EQ(untraced_sizes.size(), want.size());
  for (std::size_t e = 0; e < want.size(); ++e) {
    EXPECT_EQ(traced_sizes[e], (std::vector<std::int64_t>{want[e], want[e]})) << "eviction " << e;
    EXPECT_EQ(untraced_sizes[e], (std::vector<std::int64_t>{want[e]})) << "eviction " << e;
  }
}

TEST(ChunkKv, RejectsBadParameters) {
  policy_test::expect_rejected(
      {"chunkkv(chunk_length=0)", "chunkkv(kernel=0)", "chunkkv(budget=64)", "chunkkv(window=-1)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("chunkkv")->spec(),
            "chunkkv(budget=0.2, window=64, kernel=5, pooling=avg, chunk_length=20, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

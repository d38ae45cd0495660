// morphkv (ghadiaravi13/MorphKV patch_llama.py morphkv_mask): hand-checked max and sum aggregation on
// one head, parameter errors, and the kept count at every eviction.
#include <gtest/gtest.h>

#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using Positions = std::vector<std::int32_t>;

const ModelShape kOneHead{"hand", 1, 1, 1, 2, 16, 10000.0};

// One head, d = 2, seven tokens; window=2: tokens 4, 5 (queries (1,0) and (0,1)) and the current token 6
// are kept, and score tokens 0..3 with keys (2.3,2.3) (3,-3) (-3,2.8) (0,0):
//   query 4: softmax(k_x / sqrt 2) = [.350, .573, .008, .069]
//   query 5: softmax(k_y / sqrt 2) = [.378, .009, .539, .074]
//   max = [.378, .573, .539, .074]     sum = [.728, .582, .547, .143]
LayerTrace hand_layer() {
  const std::vector<std::vector<float>> k{{2.3f, 2.3f}, {3, -3}, {-3, 2.8f}, {0, 0}, {0, 0}, {0, 0}, {0, 0}};
  const std::vector<std::vector<float>> q{{0, 0}, {0, 0}, {0, 0}, {0, 0}, {1, 0}, {0, 1}, {5, 5}};
  return leverage_test::make_layer({k}, {k}, {q});
}

Positions kept(const std::string& spec) {
  const LayerTrace layer = hand_layer();
  return leverage_test::evict_once(spec, kOneHead, &layer, 7)[0];
}

TEST(MorphKv, HandMaxAndSum) {
  EXPECT_EQ(kept("morphkv(budget=4, window=2)"), (Positions{1, 4, 5, 6}));
  EXPECT_EQ(kept("morphkv(budget=4, window=2, aggregate=sum)"), (Positions{0, 4, 5, 6}));
  EXPECT_EQ(kept("morphkv(budget=5, window=2)"), (Positions{1, 2, 4, 5, 6}));
  EXPECT_EQ(kept("morphkv(budget=5, window=2, aggregate=sum)"), (Positions{0, 1, 4, 5, 6}));
  // window=1: only query 5 scores tokens 0..4 (token 4's key (0,0) scores like token 3): top 1 = token 2.
  EXPECT_EQ(kept("morphkv(budget=3, window=1)"), (Positions{2, 5, 6}));
}

TEST(MorphKv, SpecAndErrors) {
  EXPECT_EQ(PolicyRegistry::builtin().create("morphkv")->spec(),
            "morphkv(budget=0.2, window=32, aggregate=max, prefill=none, decode=step)");
  policy_test::expect_rejected(
      {"morphkv(window=0)", "morphkv(aggregate=mean)", "morphkv(budget=33)", "morphkv(kernel=3)"});
  policy_test::expect_error("morphkv(aggregate=mean)", "sum");
}

TEST(MorphKv, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("morphkv(budget=0.25, window=3, prefill=post_fill, decode=none)", 0.25, 4, 50, 4, 50, false, 0);
  expect_capacity_rule("morphkv(budget=0.3, window=2, prefill=chunk, decode=none)", 0.3, 3, 57, 3, 16, true, 0);
  expect_capacity_rule("morphkv(budget=0.5, window=1, prefill=chunk)", 0.5, 2, 41, 5, 8, true, 1);
  expect_capacity_rule("morphkv(budget=0.2, window=4, prefill=post_fill, decode=every:3)", 0.2, 5, 40, 7, 40, false, 3);
}

// The original evicts in decode only (patch_llama.py forward: `if hidden_states.shape[1]==1`): by
// default no prefill eviction, then one per decode step at round(0.25 * 40) + 3 + 1 = 14 entries.
TEST(MorphKv, DefaultEvictsOnlyInDecode) {
  policy_test::expect_kept_counts("morphkv(budget=0.25, window=3)", 40, 4, 16, {14, 14, 14, 14}, 5);
  policy_test::expect_kept_counts("morphkv(budget=20, window=3)", 40, 3, 40, {20, 20, 20}, 6);
}

}  // namespace
}  // namespace kvsim

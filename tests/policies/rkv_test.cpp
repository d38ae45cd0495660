// rkv (R-KV, Zefan-Cai/R-KV r1_kv.py + utils.py): hand-checked importance-only and redundancy-only
// kept sets on one head, parameter errors, and the kept count at every eviction.
#include <gtest/gtest.h>

#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

using Positions = std::vector<std::int32_t>;

const ModelShape kOneHead{"hand", 1, 1, 1, 2, 16, 10000.0};

// One head, d = 2, five tokens, window 1 (token 4, whose query (0,3) scores tokens 0..3).
//   k = (1,0) (1,.1) (0,1) (-1,.2) | (.1,1)
LayerTrace hand_layer() {
  const std::vector<std::vector<float>> k{{1, 0}, {1, 0.1f}, {0, 1}, {-1, 0.2f}, {0.1f, 1}};
  const std::vector<std::vector<float>> q{{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 3}};
  return leverage_test::make_layer({k}, {k}, {q});
}

Positions kept(const std::string& spec) {
  const LayerTrace layer = hand_layer();
  return leverage_test::evict_once(spec, kOneHead, &layer, 5)[0];
}

TEST(Rkv, ImportanceOnly) {
  // mix_lambda=1: softmax of q.k/sqrt 2 ~ k_y = [0, .1, 1, .2] -> tokens 2 and 3 beside the window.
  EXPECT_EQ(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=1)"), (Positions{2, 3, 4}));
}

TEST(Rkv, RedundancyOnly) {
  // mix_lambda=0: keep the LEAST redundant. Cosines (unit keys):
  //   C01=.995 C02=0 C03=-.981 C04=.0995 C12=.0995 C13=-.956 C14=.198 C23=.196 C24=.995 C34=.0975
  // Spared entry per row (last j != t with C > .5; none -> column 0): row0 -> 1, row1 -> 0, row2 -> 4,
  // row3 -> 0 (no duplicate; C30 = -.981 is zeroed too), row4 -> 2.
  // Column sums of the rest: col0 = .0995, col1 = .0995 - .956 + .198 = -.658, col2 = .0995 + .196 = .296,
  // col3 = -.981 - .956 + .196 + .0975 = -1.644 -> the two lowest: 3 and 1 (of the duplicates 0 and 1 the
  // newer stays). Without the column-0 rule col0 would be -.88 and token 0 would stay instead of 1.
  EXPECT_EQ(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=0)"), (Positions{1, 3, 4}));
  // threshold=1: no row has a duplicate, every row zeroes its column-0 entry: col0 = 0,
  // col1 = .995 + .0995 - .956 + .198 = .337, col2 = 1.29, col3 = -1.644 -> 3 and 0.
  EXPECT_EQ(kept("rkv(budget=3, window=1, kernel=1, mix_lambda=0, threshold=1)"), (Positions{0, 3, 4}));
}

TEST(Rkv, SpecAndErrors) {
  EXPECT_EQ(PolicyRegistry::builtin().create("rkv")->spec(),
            "rkv(budget=0.2, window=8, kernel=7, mix_lambda=0.07, threshold=0.5, group_pooling=max, "
            "prefill=post_fill, decode=length:128)");
  policy_test::expect_rejected({"rkv(window=0)", "rkv(kernel=4)", "rkv(mix_lambda=1.5)", "rkv(threshold=2)",
                                "rkv(budget=8)", "rkv(group_pooling=min)", "rkv(buffer=128)"});
  policy_test::expect_error("rkv(group_pooling=min)", "mean");
}

TEST(Rkv, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("rkv(budget=0.25, decode=none)", 0.25, 8, 50, 4, 50, false, 0);
  expect_capacity_rule("rkv(budget=0.3, window=2, prefill=chunk, decode=none)", 0.3, 2, 57, 3, 16, true, 0);
  expect_capacity_rule("rkv(budget=0.5, window=1, prefill=chunk, decode=step)", 0.5, 1, 41, 5, 8, true, 1);
  expect_capacity_rule("rkv(budget=0.2, window=4, decode=every:3)", 0.2, 4, 40, 7, 40, false, 3);
}

}  // namespace
}  // namespace kvsim

// expected_attention (kvpress ExpectedAttentionPress): a hand-checked layer where the averaged
// rotation cancels, parameter errors, and the kept count at every eviction.
#include <gtest/gtest.h>

#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"
#include "traces/rope.h"

namespace kvsim {
namespace {

using Positions = std::vector<std::int32_t>;

const ModelShape kOneHead{"hand", 1, 1, 1, 2, 16, 10000.0};

std::vector<float> rotated(std::vector<float> x, std::int64_t position) {
  apply_rope(x.data(), 2, position, rope_inv_freq(2, 10000.0));
  return x;
}

// One head, d = 2, n = 5 (the only RoPE pair turns by 1 rad per position). With future=1 the
// averaged rotation is R_5 exactly, and keys are stored as k_t = R_5 w_t, so the scores see w_t:
//   z_t = mu.w_t / sqrt 2 + w_t^T Sigma w_t / 4.
// Pre-RoPE queries at t = 1..4: (1,1) (1,-1) (3,1) (3,-1) -> mu = (2,0), Sigma = I (biased); the
// sink query at t = 0, (100,0), is left out of the statistics.
// w_1..4 = (1,0) (0,2) (-1,0) (.5,0):
//   covariance=yes: z = [1.664, 1.000, -1.164, 0.770]
//   covariance=no:  z = [1.414, 0, -1.414, 0.707]
LayerTrace hand_layer(float v1_norm = 1.0f, float v4_norm = 1.0f) {
  const std::vector<std::vector<float>> w{{7, 7}, {1, 0}, {0, 2}, {-1, 0}, {0.5f, 0}};
  const std::vector<std::vector<float>> q{{100, 0}, {1, 1}, {1, -1}, {3, 1}, {3, -1}};
  std::vector<std::vector<float>> keys, queries, values;
  for (std::int64_t t = 0; t < 5; ++t) {
    keys.push_back(rotated(w[t], 5));
    queries.push_back(rotated(q[t], t));
    values.push_back({t == 1 ? v1_norm : t == 4 ? v4_norm : 1.0f, 0});
  }
  return leverage_test::make_layer({keys}, {values}, {queries});
}

Positions kept(const std::string& spec, const LayerTrace& layer) {
  return leverage_test::evict_once(spec, kOneHead, &layer, 5)[0];
}

TEST(ExpectedAttention, HandCheckedMeanAndCovariance) {
  const LayerTrace layer = hand_layer();
  // Budget 3 = the sink + 2: the covariance term lifts w_2 = (0,2) above w_4.
  EXPECT_EQ(kept("expected_attention(budget=3, sinks=1, future=1, vnorm=no)", layer), (Positions{0, 1, 2}));
  EXPECT_EQ(kept("expected_attention(budget=3, sinks=1, future=1, vnorm=no, covariance=no)", layer),
            (Positions{0, 1, 4}));
  // stats_queries=2: t = 3, 4 only -> mu = (3,0), Sigma = diag(0,1): z = [2.121, 1.000, -2.121, 1.061] -> w_1, w_4.
  EXPECT_EQ(kept("expected_attention(budget=3, sinks=1, future=1, vnorm=no, stats_queries=2)", layer),
            (Positions{0, 1, 4}));
}

TEST(ExpectedAttention, ValueNormScaling) {
  // ||v_1|| = .25, ||v_4|| = 2: exp(z) * ||v|| = [5.28*.25, 2.72, .31, 2.16*2] = [1.32, 2.72, .31, 4.32].
  const LayerTrace layer = hand_layer(0.25f, 2.0f);
  EXPECT_EQ(kept("expected_attention(budget=3, sinks=1, future=1)", layer), (Positions{0, 2, 4}));
  EXPECT_EQ(kept("expected_attention(budget=3, sinks=1, future=1, vnorm=no)", layer), (Positions{0, 1, 2}));
}

TEST(ExpectedAttention, SpecAndErrors) {
  EXPECT_EQ(PolicyRegistry::builtin().create("expected_attention")->spec(),
            "expected_attention(budget=0.2, sinks=4, future=512, covariance=yes, vnorm=yes, epsilon=0, "
            "stats_queries=all, prefill=post_fill, decode=none)");
  policy_test::expect_rejected({"expected_attention(sinks=-1)", "expected_attention(future=0)",
                                "expected_attention(covariance=maybe)", "expected_attention(budget=4)",
                                "expected_attention(stats_queries=0)", "expected_attention(epsilon=-1)",
                                "expected_attention(window=3)"});
  policy_test::expect_error("expected_attention(vnorm=1)", "yes");
}

TEST(ExpectedAttention, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("expected_attention(budget=0.25)", 0.25, 4, 50, 4, 50, false, 0);
  expect_capacity_rule("expected_attention(budget=0.3, sinks=2, prefill=chunk)", 0.3, 2, 57, 3, 16, true, 0);
  expect_capacity_rule("expected_attention(budget=0.5, sinks=1, prefill=chunk, decode=step)", 0.5, 1, 41, 5, 8, true,
                       1);
  expect_capacity_rule("expected_attention(budget=0.2, decode=every:3, stats_queries=8)", 0.2, 4, 40, 7, 40, false, 3);
}

}  // namespace
}  // namespace kvsim

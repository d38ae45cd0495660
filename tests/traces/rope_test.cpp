#include "traces/rope.h"

#include <gtest/gtest.h>

#include <cmath>

namespace kvsim {
namespace {

TEST(SynthRope, HandExample) {
  // d = 4, theta = 10000: pair frequencies 1 and 0.01; dim 0 pairs with 2, dim 1 with 3.
  const auto f = rope_inv_freq(4, 10000.0);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], 0.01, 1e-15);
  float x[4] = {1, 2, 3, 4};
  apply_rope(x, 4, 1, f);
  EXPECT_NEAR(x[0], std::cos(1.0) - 3 * std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(1.0) + std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(0.01) - 4 * std::sin(0.01), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(0.01) + 2 * std::sin(0.01), 1e-6);
}

TEST(SynthRope, DotProductDependsOnlyOnDistance) {
  const auto f = rope_inv_freq(8, 500000.0);
  auto dot_at = [&](std::int64_t t, std::int64_t s) {
    float q[8] = {0.3f, -1, 2, 0.5f, 1, 0.2f, -0.7f, 1.5f};
    float k[8] = {1, 0.4f, -0.2f, 0.9f, -1.1f, 0.6f, 0.8f, -0.3f};
    apply_rope(q, 8, t, f);
    apply_rope(k, 8, s, f);
    double d = 0;
    for (int i = 0; i < 8; ++i) d += q[i] * k[i];
    return d;
  };
  EXPECT_NEAR(dot_at(10, 3), dot_at(1007, 1000), 1e-4);
}

TEST(SynthRope, TableMatchesDirectRotation) {
  const auto f = rope_inv_freq(16, 10000.0);
  const RopeTable table(100, 50, f);
  for (std::int64_t row : {0, 17, 49}) {
    float a[16], b[16];
    for (int i = 0; i < 16; ++i) a[i] = b[i] = 0.1f * i - 0.5f;
    table.rotate(a, row);
    apply_rope(b, 16, 100 + row, f);
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
  }
}

}  // namespace
}  // namespace kvsim

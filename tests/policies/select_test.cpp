#include "policies/select.h"

#include <gtest/gtest.h>

namespace kvsim {
namespace {

TEST(Select, AvgPoolMatchesTorchCountIncludePad) {
  // kernel 3, zero padding 1, divide by 3 everywhere (torch avg_pool1d default).
  const std::vector<float> x{3, 0, 6, 3};
  const auto y = avg_pool(x, 3);
  ASSERT_EQ(y.size(), 4u);
  EXPECT_FLOAT_EQ(y[0], 1.0f);  // (0 + 3 + 0) / 3
  EXPECT_FLOAT_EQ(y[1], 3.0f);  // (3 + 0 + 6) / 3
  EXPECT_FLOAT_EQ(y[2], 3.0f);
  EXPECT_FLOAT_EQ(y[3], 3.0f);  // (6 + 3 + 0) / 3
}

TEST(Select, MaxPoolIgnoresPadding) {
  const std::vector<float> x{-1, -5, -2, -7, -3};
  const auto y = max_pool(x, 3);
  EXPECT_EQ(y, (std::vector<float>{-1, -1, -2, -2, -3}));
  EXPECT_EQ(max_pool(x, 1), x);
  const auto wide = max_pool(std::vector<float>{1, 9, 2, 3, 4, 0, 0}, 5);
  EXPECT_EQ(wide, (std::vector<float>{9, 9, 9, 9, 4, 4, 4}));
}

TEST(Select, TopKBreaksTiesTowardsLowerIndex) {
  const std::vector<float> s{0.5f, 0.9f, 0.5f, 0.1f, 0.5f};
  EXPECT_EQ(top_k_indices(s, 2), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(top_k_indices(s, 3), (std::vector<std::int32_t>{0, 1, 2}));
  EXPECT_EQ(top_k_indices(s, 0), (std::vector<std::int32_t>{}));
  EXPECT_EQ(top_k_indices(s, 9).size(), 5u);
}

}  // namespace
}  // namespace kvsim

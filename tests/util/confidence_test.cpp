// util/confidence.h: the Student-t interval behind [workload] seeds, against hand-computed values.
#include "util/confidence.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace kvsim {
namespace {

TEST(Confidence, StudentTQuantilesMatchTables) {
  // Two-sided 95 % critical values of Student's t (any statistics table; R: qt(0.975, df)).
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.706204736, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 2), 4.302652730, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 4), 2.776445105, 1e-8);
  EXPECT_NEAR(student_t_quantile(0.975, 19), 2.093024054, 1e-8);
  // t = z + (z^3 + z) / (4 dof) + ...: 2.4e-6 above the normal quantile at 10^6 degrees of freedom.
  EXPECT_NEAR(student_t_quantile(0.975, 1000000), 1.959963985 + 2.37e-6, 1e-8) << "tends to the normal quantile";
  EXPECT_NEAR(student_t_quantile(0.025, 4), -2.776445105, 1e-8) << "symmetric";
  EXPECT_THROW(student_t_quantile(0.975, 0), std::invalid_argument);
  EXPECT_THROW(student_t_quantile(1.0, 3), std::invalid_argument);
}

TEST(Confidence, IntervalByHand) {
  // 1..5: mean 3, sample sd sqrt(2.5), half-width t(0.975, 4) * sqrt(2.5) / sqrt(5) = 2.7764451 / sqrt(2).
  const std::vector<double> draws = {4, 1, 5, 2, 3};
  const MeanInterval i = student_t_interval(draws);
  EXPECT_DOUBLE_EQ(i.mean, 3.0);
  EXPECT_NEAR(i.half_width, 2.776445105197793 / std::sqrt(2.0), 1e-12);
  // 0.8, 0.9, 1.0: sd 0.1, half-width 4.3026527 * 0.1 / sqrt(3).
  const std::vector<double> three = {0.8, 0.9, 1.0};
  EXPECT_NEAR(student_t_interval(three).mean, 0.9, 1e-15);
  EXPECT_NEAR(student_t_interval(three).half_width, 0.24841377, 1e-8);
  EXPECT_NEAR(student_t_interval(three, 0.9).half_width, 2.91998558 * 0.1 / std::sqrt(3.0), 1e-8) << "90 %";
}

TEST(Confidence, EqualDrawsAreExact) {
  // 0.1 * 3 / 3 is not 0.1 in binary: equal draws must not pick up that rounding or a spread.
  const std::vector<double> equal = {0.1, 0.1, 0.1};
  EXPECT_EQ(student_t_interval(equal).mean, 0.1);
  EXPECT_EQ(student_t_interval(equal).half_width, 0.0);
  const std::vector<double> one = {0.7};
  EXPECT_EQ(student_t_interval(one).mean, 0.7);
  EXPECT_EQ(student_t_interval(one).half_width, 0.0) << "one draw has no interval";
  EXPECT_THROW(student_t_interval(std::vector<double>{}), std::invalid_argument);
}

TEST(Confidence, FourTimesTheDrawsHalveTheWidthTimesTheTRatio) {
  // Alternating -1, 1, ...: five draws have mean -0.2 and squares 3 * 0.64 + 2 * 1.44 = 4.8 (sd
  // sqrt(1.2)); twenty have mean 0 and sd sqrt(20 / 19).
  std::vector<double> five, twenty;
  for (int i = 0; i < 5; ++i) five.push_back(i % 2 ? 1.0 : -1.0);
  for (int i = 0; i < 20; ++i) twenty.push_back(i % 2 ? 1.0 : -1.0);
  EXPECT_NEAR(student_t_interval(five).mean, -0.2, 1e-15);
  EXPECT_NEAR(student_t_interval(five).half_width, 2.776445105197793 * std::sqrt(1.2) / std::sqrt(5.0), 1e-12);
  EXPECT_EQ(student_t_interval(twenty).mean, 0.0);
  EXPECT_NEAR(student_t_interval(twenty).half_width, 2.093024054408263 * std::sqrt(20.0 / 19.0) / std::sqrt(20.0),
              1e-12);
}

}  // namespace
}  // namespace kvsim

// float16 <-> float conversion used by the trace file reader and writer (traces/float16.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "traces/float16.h"

namespace kvsim {
namespace {

// Named TraceFile* so that --gtest_filter='TraceFile*' runs it with the trace file tests.
TEST(TraceFileFloat16, EveryHalfSurvivesWideningAndNarrowing) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const auto half = static_cast<std::uint16_t>(bits);
    const float wide = half_to_float(half);
    if (std::isnan(wide)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(wide))));
    } else {
      ASSERT_EQ(float_to_half(wide), half) << "half bits " << bits;
    }
  }
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00u);  // the tie above 65504 goes to (even) infinity
  EXPECT_EQ(float_to_half(-1e9f), 0xfc00u);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0u);                  // tie between 0 and the smallest subnormal
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02u);  // tie, up to the even mantissa
  EXPECT_FALSE(half_is_finite(float_to_half(std::numeric_limits<float>::infinity())));
}

}  // namespace
}  // namespace kvsim

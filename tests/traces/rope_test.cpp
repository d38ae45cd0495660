#include "traces/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>

#include "util/error.h"

namespace kvsim {
namespace {

// Llama-3.1's rope_scaling (meta-llama/Llama-3.1-8B config.json).
RopeScaling llama31_scaling() {
  RopeScaling r;
  r.type = "llama3";
  r.factor = 8.0;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 8192;
  return r;
}

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

TEST(RopeScaling, Llama3HandComputed) {
  // Llama-3.1-8B: head_dim 128, theta 500000, so pair i has inv_freq 500000^(-i/64) and wavelength
  // 2 pi / inv_freq. llama3 scaling (factor 8, low_freq_factor 1, high_freq_factor 4, original
  // context 8192) keeps wavelengths below 8192/4 = 2048 tokens, divides those above 8192/1 = 8192 by
  // 8, and between them blends with smooth = (8192 / wavelength - 1) / (4 - 1):
  //   i = 0:  inv_freq 1, wavelength 2 pi = 6.28          -> high frequency, unchanged: 1
  //   i = 20: inv_freq 500000^(-20/64) = 0.0165604, wavelength 379.4 -> unchanged
  //   i = 63: inv_freq 500000^(-63/64) = 2.45514e-6, wavelength 2.56e6 > 8192 -> 2.45514e-6 / 8 = 3.06893e-7
  //   i = 32: inv_freq 500000^(-1/2) = 1/707.107 = 1.41421e-3, wavelength 2 pi * 707.107 = 4442.88, in
  //           [2048, 8192]: smooth = (8192 / 4442.88 - 1) / 3 = (1.843848 - 1) / 3 = 0.281283, and
  //           inv_freq' = inv_freq * ((1 - smooth) / 8 + smooth) = 1.41421e-3 * (0.089840 + 0.281283)
  //                     = 1.41421e-3 * 0.371122 = 5.24846e-4
  //   boundaries: i = 28 has wavelength 1955 (< 2048, unchanged), i = 29 2401.7 (blended), i = 34
  //   6695 (blended), i = 35 8218.7 (> 8192, divided): 6 blended + 29 divided = 35 of 64 pairs change.
  const auto plain = rope_inv_freq(128, 500000.0);
  const auto f = rope_inv_freq(128, 500000.0, llama31_scaling());
  ASSERT_EQ(f.size(), 64u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[20], 0.0165604, 1e-7);
  EXPECT_DOUBLE_EQ(f[20], plain[20]);
  EXPECT_NEAR(f[63], 3.06893e-7, 1e-12);
  EXPECT_NEAR(f[32], 5.24846e-4, 1e-9);
  int changed = 0, divided = 0;
  for (int i = 0; i < 64; ++i) {
    changed += f[i] != plain[i] ? 1 : 0;
    divided += std::abs(f[i] - plain[i] / 8) <= 1e-15 * plain[i] ? 1 : 0;
    EXPECT_LE(f[i], plain[i]);  // scaling only ever slows a pair down
    EXPECT_GE(f[i], plain[i] / 8 * (1 - 1e-15));
  }
  EXPECT_EQ(changed, 35);
  EXPECT_EQ(divided, 29);
  EXPECT_DOUBLE_EQ(f[28], plain[28]);
  EXPECT_LT(f[29], plain[29]);
  EXPECT_GT(f[34], plain[34] / 8);
  EXPECT_NEAR(f[35], plain[35] / 8, 1e-18);
  // The model's own frequencies go through the same function.
  ModelShape m{"llama-3.1-8b", 32, 32, 8, 128, 16, 500000.0};
  m.rope_scaling = llama31_scaling();
  EXPECT_EQ(rope_inv_freq(m), f);
}

TEST(RopeScaling, LinearDividesEveryPair) {
  RopeScaling r;
  r.type = "linear";
  r.factor = 4.0;
  const auto plain = rope_inv_freq(8, 10000.0);
  const auto f = rope_inv_freq(8, 10000.0, r);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(f[i], plain[i] / 4);
}

std::string validation_error(const RopeScaling& r) {
  ModelShape m{"m", 2, 4, 2, 16, 16, 10000.0};
  m.rope_scaling = r;
  try {
    m.validate("model.ini");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(RopeScaling, ValidationNamesTheKey) {
  EXPECT_EQ(validation_error(llama31_scaling()), "");
  RopeScaling r = llama31_scaling();
  r.type = "dynamic";
  EXPECT_EQ(validation_error(r),
            "model.ini: rope_scaling_type is 'dynamic'; expected none, linear or llama3 (yarn is not supported)");
  r.type = "yarn";
  EXPECT_NE(validation_error(r).find("rope_scaling_type = yarn is not supported"), std::string::npos);
  r = llama31_scaling();
  r.factor = 0.0;
  EXPECT_EQ(validation_error(r), "model.ini: rope_scaling_factor must be a positive number, got 0");
  r = llama31_scaling();
  r.high_freq_factor.reset();
  EXPECT_NE(
      validation_error(r).find("model.ini: rope_scaling_high_freq_factor is missing; rope_scaling_type = llama3 needs"),
      std::string::npos);
  r = llama31_scaling();
  r.high_freq_factor = 1.0;
  EXPECT_NE(validation_error(r).find("rope_scaling_high_freq_factor (1) must be greater than"), std::string::npos);
  r = RopeScaling{};
  r.factor = 2.0;
  EXPECT_NE(validation_error(r).find("rope_scaling_factor is given, but rope_scaling_type = none"), std::string::npos);
  r.type = "linear";
  EXPECT_EQ(validation_error(r), "");
  r.low_freq_factor = 1.0;
  EXPECT_NE(validation_error(r).find("rope_scaling_low_freq_factor is given"), std::string::npos);
  EXPECT_EQ(llama31_scaling().text(),
            "llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192)");
}

}  // namespace
}  // namespace kvsim

// kivi and the quantization it rests on: the dequantization error bound, hand-computed grids,
// bytes per entry by hand, and the byte-weighted footprint / peak of a small replay by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "policies/quantize.h"
#include "policies/registry.h"
#include "sim/replay/engine.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

HeadMatrix random_normal(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HeadMatrix x(rows, cols);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index c = 0; c < x.cols(); ++c) x(r, c) = normal(rng) * (1.0f + static_cast<float>(c % 5));
  }
  return x;
}

// |x - deq(x)| <= scale / 2 with scale = (max - min) / (2^bits - 1) over each group, and deq(x)
// on the group's grid min + k * scale. `per_channel`: groups run down a column, else along a row.
void expect_within_bound(const HeadMatrix& x, const HeadMatrix& deq, int bits, int group, bool per_channel) {
  const Eigen::Index outer = per_channel ? x.cols() : x.rows();
  const Eigen::Index inner = per_channel ? x.rows() : x.cols();
  auto at = [&](const HeadMatrix& m, Eigen::Index o, Eigen::Index i) { return per_channel ? m(i, o) : m(o, i); };
  for (Eigen::Index o = 0; o < outer; ++o) {
    for (Eigen::Index g0 = 0; g0 < inner; g0 += group) {
      const Eigen::Index g1 = std::min<Eigen::Index>(g0 + group, inner);
      double lo = at(x, o, g0), hi = lo;
      for (Eigen::Index i = g0; i < g1; ++i)
        lo = std::min<double>(lo, at(x, o, i)), hi = std::max<double>(hi, at(x, o, i));
      const double scale = (hi - lo) / ((1 << bits) - 1);
      for (Eigen::Index i = g0; i < g1; ++i) {
        const double err = std::abs(static_cast<double>(at(x, o, i)) - at(deq, o, i));
        ASSERT_LE(err, scale / 2 * (1 + 1e-5) + 1e-6) << "bits " << bits << " group at " << o << "," << g0;
        const double k = (at(deq, o, i) - lo) / scale;
        ASSERT_NEAR(k, std::round(k), 1e-3);
        ASSERT_GE(std::round(k), 0);
        ASSERT_LE(std::round(k), (1 << bits) - 1);
      }
    }
  }
}

TEST(Quantize, DequantizationErrorWithinAnalyticBound) {
  const HeadMatrix x = random_normal(150, 64, 7);  // 150 tokens: a last partial key group of 22
  for (int bits : {2, 4}) {
    for (int group : {32, 16}) {
      expect_within_bound(x, fake_quantize_per_channel(x, bits, group), bits, group, true);
      expect_within_bound(x, fake_quantize_per_token(x, bits, group), bits, group, false);
    }
  }
  // More bits, smaller error.
  EXPECT_LT((fake_quantize_per_token(x, 4, 32) - x).norm(), (fake_quantize_per_token(x, 2, 32) - x).norm() / 3);
}

TEST(Quantize, HandGrid) {
  // One key channel, one group of 4 tokens, 2 bits: min 0, max 3 -> scale 1. 0.4 -> 0, 0.6 -> 1,
  // and ties round half to even (torch.round): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  HeadMatrix k(4, 1);
  k << 0.0f, 0.4f, 0.6f, 3.0f;
  HeadMatrix want(4, 1);
  want << 0.0f, 0.0f, 1.0f, 3.0f;
  EXPECT_EQ(fake_quantize_per_channel(k, 2, 4), want);
  k << 0.5f, 1.5f, 2.5f, 3.0f;  // min 0.5, max 3 -> scale 2.5/3; (x-min)/scale = 0, 1.2, 2.4, 3
  want << 0.5f, 0.5f + 2.5f / 3.0f, 0.5f + 2 * (2.5f / 3.0f), 3.0f;
  const HeadMatrix got = fake_quantize_per_channel(k, 2, 4);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(got(i, 0), want(i, 0), 1e-6) << i;
  // A value row of 4 channels in two groups of 2, 4 bits: [1, 1] (constant: exact), [0, 1.5] (exact ends).
  HeadMatrix v(1, 4);
  v << 1.0f, 1.0f, 0.0f, 1.5f;
  EXPECT_EQ(fake_quantize_per_token(v, 4, 2), v);
}

TEST(Kivi, BytesPerEntryByHand) {
  ModelShape model{"hand", 1, 8, 8, 128};  // fp16
  RequestInfo request;
  // 1000 stored entries, R=128: keys quantized 7 * 128 = 896, values 1000 - 128 = 872.
  // Per quantized entry and K or V, 128 channels: bits/8 bytes each + fp16 scale and zero per 32.
  //   2 bits: 128 * 2/8 + 128/32 * 4 = 32 + 16 = 48 bytes; 4 bits: 64 + 16 = 80 bytes. Full: 256.
  const auto two = PolicyRegistry::builtin().create("kivi(bits=2, group=32, residual=128)");
  StoredEntries s = two->stored(model, request, {}, 1000);
  EXPECT_EQ(s.key_compressed, 896);
  EXPECT_EQ(s.value_compressed, 872);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 896 * 48 + 104 * 256);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 872 * 48 + 128 * 256);
  const auto four = PolicyRegistry::builtin().create("kivi(bits=4)");
  s = four->stored(model, request, {}, 1000);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 896 * 80 + 104 * 256);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 872 * 80 + 128 * 256);
  // Fewer than R entries: nothing quantized yet.
  s = two->stored(model, request, {}, 100);
  EXPECT_EQ(s.key_compressed, 0);
  EXPECT_EQ(s.value_compressed, 0);
  EXPECT_DOUBLE_EQ(s.bytes.total(), 100 * 512);
  // Long-run bytes per entry: 96 (2 bits) and 160 (4 bits) of 512.
  const double n = 1 << 20;
  EXPECT_NEAR(two->stored(model, request, {}, 1 << 20).bytes.total() / n, 96, 0.1);
  EXPECT_NEAR(four->stored(model, request, {}, 1 << 20).bytes.total() / n, 160, 0.1);
  // The default (every other policy): entries x entry_bytes, split evenly.
  s = PolicyRegistry::builtin().create("full")->stored(model, request, {}, 10);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 10 * 256);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 10 * 256);
}

TEST(Kivi, RejectsBadParameters) {
  for (const char* spec : {"kivi(bits=3)", "kivi(bits=8)", "kivi(group=0)", "kivi(residual=100)", "kivi(residual=0)",
                           "kivi(budget=0.2)"}) {
    EXPECT_THROW(PolicyRegistry::builtin().create(spec), InputError) << spec;
  }
  const ModelShape model{"odd", 1, 2, 2, 48};
  EXPECT_THROW(PolicyRegistry::builtin().create("kivi(group=32, residual=64)")->stored(model, RequestInfo{}, {}, 10),
               InputError);
}

// Bytes one head stores with s entries under kivi(bits=2, group=32, residual=64), head_dim 32,
// fp16, written out independently of the policy: 12 bytes per quantized K or V (32 * 2/8 + 4),
// 64 per full-precision one.
double hand_stored_bytes(std::int64_t s) {
  const std::int64_t kq = s / 64 * 64, vq = std::max<std::int64_t>(0, s - 64);
  return kq * 12.0 + (s - kq) * 64.0 + vq * 12.0 + (s - vq) * 64.0;
}

TEST(Kivi, ReplayFootprintAndPeakByHand) {
  const ModelShape model{"tiny", 2, 4, 2, 32};  // layer 1 untraced: counted by the same rule
  const std::int64_t n = 300, m = 20, chunk = 100;
  const auto source = testing_support::random_trace(model, n, m, {0}, 3);
  const auto kivi = PolicyRegistry::builtin().create("kivi(bits=2, group=32, residual=64)");
  const auto full = PolicyRegistry::builtin().create("full");
  const auto lossless = PolicyRegistry::builtin().create("kivi(bits=2, group=32, residual=512)");
  const Policy* policies[] = {full.get(), kivi.get(), lossless.get()};
  ReplayOptions options;
  options.chunk_tokens = chunk;
  const auto results = replay_request(source, source.header().requests[0], policies, options);

  // Per head: a pass with `before` stored entries and `len` new ones holds stored(before) + len * 128
  // bytes, and its queries see stored(before) + (k+1) * 128 for k < len.
  const double entry = 128, heads = 4;
  double footprint = 0, peak = 0;
  for (std::int64_t begin = 0; begin < n + m; begin += begin < n ? chunk : 1) {
    const std::int64_t len = begin < n ? chunk : 1;
    footprint += len * hand_stored_bytes(begin) + entry * len * (len + 1) / 2;
    peak = std::max(peak, hand_stored_bytes(begin) + len * entry);
  }
  const double full_footprint = entry * (n + m) * (n + m + 1) / 2;
  EXPECT_NEAR(results[1].footprint_byte_steps, footprint * heads, 1e-6 * footprint);
  EXPECT_NEAR(results[1].footprint_normalized, footprint / full_footprint, 1e-12);
  EXPECT_EQ(results[1].peak_bytes, static_cast<std::int64_t>(std::llround(peak * heads)));
  EXPECT_EQ(results[1].peak_bytes, std::llround(4 * (hand_stored_bytes(200) + 100 * 128)));  // the last prefill chunk
  EXPECT_EQ(results[1].peak_entries, results[0].peak_entries);                               // kept entries unchanged
  EXPECT_EQ(results[0].footprint_normalized, 1.0);
  EXPECT_DOUBLE_EQ(results[0].footprint_byte_steps, full_footprint * heads);

  // Nothing evicted: recall 1. Quantized K/V move the output; a residual longer than the request
  // quantizes nothing and must reproduce the full cache through the same code path.
  ASSERT_TRUE(results[1].attention_recall && results[1].output_error);
  EXPECT_NEAR(results[1].attention_recall->mean, 1.0, 1e-5);
  EXPECT_GT(results[1].output_error->mean, 1e-3);
  EXPECT_LT(results[2].output_error->tail, 1e-5);
  EXPECT_DOUBLE_EQ(results[2].footprint_normalized, 1.0);
}

}  // namespace
}  // namespace kvsim

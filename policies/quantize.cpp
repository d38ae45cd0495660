#include "policies/quantize.h"

#include <algorithm>
#include <cmath>

namespace kvsim {

namespace {

// Quantizes x(rows, cols) in place for the rows [r0, r1) x cols [c0, c1) block as one group.
void fake_quantize_block(HeadMatrix& x, Eigen::Index r0, Eigen::Index r1, Eigen::Index c0, Eigen::Index c1, int bits) {
  auto block = x.block(r0, c0, r1 - r0, c1 - c0);
  const float lo = block.minCoeff();
  const float hi = block.maxCoeff();
  const auto levels = static_cast<float>((1 << bits) - 1);
  const float scale = (hi - lo) / levels;
  if (!(scale > 0.0f)) {
    block.setConstant(lo);
    return;
  }
  for (Eigen::Index r = 0; r < block.rows(); ++r) {
    for (Eigen::Index c = 0; c < block.cols(); ++c) {
      const float q = std::clamp(std::nearbyint((block(r, c) - lo) / scale), 0.0f, levels);
      block(r, c) = q * scale + lo;
    }
  }
}

}  // namespace

HeadMatrix fake_quantize_per_channel(const HeadMatrix& x, int bits, int group) {
  HeadMatrix out = x;
  for (Eigen::Index c = 0; c < x.cols(); ++c) {
    for (Eigen::Index r = 0; r < x.rows(); r += group) {
      fake_quantize_block(out, r, std::min<Eigen::Index>(r + group, x.rows()), c, c + 1, bits);
    }
  }
  return out;
}

HeadMatrix fake_quantize_per_token(const HeadMatrix& x, int bits, int group) {
  HeadMatrix out = x;
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index c = 0; c < x.cols(); c += group) {
      fake_quantize_block(out, r, r + 1, c, std::min<Eigen::Index>(c + group, x.cols()), bits);
    }
  }
  return out;
}

double quantized_bytes(std::int64_t elements, int bits, int group) {
  const std::int64_t whole_groups = elements / group;  // one scale + zero-point per complete group
  return static_cast<double>(elements) * bits / 8.0 +
         static_cast<double>(whole_groups) * static_cast<double>(kQuantScaleZeroBytes);
}

}  // namespace kvsim

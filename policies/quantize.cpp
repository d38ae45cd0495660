#include "policies/quantize.h"

#include <algorithm>

namespace kvsim {

namespace {

// x' = clamp(rint((x - lo) / scale), 0, levels) * scale + lo, elementwise over equal-shaped arrays
// (rint rounds half to even, as the reference's round does). A constant group has scale 0: divided
// by 1 instead, x - lo = 0 quantizes to 0 and dequantizes to lo exactly.
template <typename Values>
void quantize_in_place(Values&& x, const Eigen::ArrayXf& lo, const Eigen::ArrayXf& scale, float levels) {
  const Eigen::ArrayXf safe = (scale > 0.0f).select(scale, 1.0f);
  x = ((x - lo) / safe).rint().max(0.0f).min(levels) * scale + lo;
}

template <typename Values>
void quantize_in_place(Values&& x, float lo, float scale, float levels) {
  const float safe = scale > 0.0f ? scale : 1.0f;
  x = ((x - lo) / safe).rint().max(0.0f).min(levels) * scale + lo;
}

float levels_of(int bits) { return static_cast<float>((1 << bits) - 1); }

}  // namespace

void fake_quantize_per_channel_in_place(HeadMatrix& x, int bits, int group) {
  // Row-major: a group is `group` consecutive rows; its per-channel min and max are running
  // elementwise min/max over those rows, so every pass reads contiguous memory.
  const float levels = levels_of(bits);
  Eigen::ArrayXf lo(x.cols());
  Eigen::ArrayXf hi(x.cols());
  Eigen::ArrayXf scale(x.cols());
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += group) {
    const Eigen::Index r1 = std::min<Eigen::Index>(r0 + group, x.rows());
    lo = x.row(r0).array().transpose();
    hi = lo;
    for (Eigen::Index r = r0 + 1; r < r1; ++r) {
      lo = lo.min(x.row(r).array().transpose());
      hi = hi.max(x.row(r).array().transpose());
    }
    scale = (hi - lo) / levels;
    for (Eigen::Index r = r0; r < r1; ++r) quantize_in_place(x.row(r).array().transpose(), lo, scale, levels);
  }
}

void fake_quantize_per_token_in_place(HeadMatrix& x, int bits, int group) {
  const float levels = levels_of(bits);
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    for (Eigen::Index c = 0; c < x.cols(); c += group) {
      auto segment = x.row(r).segment(c, std::min<Eigen::Index>(group, x.cols() - c)).array();
      const float lo = segment.minCoeff();
      quantize_in_place(segment, lo, (segment.maxCoeff() - lo) / levels, levels);
    }
  }
}

HeadMatrix fake_quantize_per_channel(const HeadMatrix& x, int bits, int group) {
  HeadMatrix out = x;
  fake_quantize_per_channel_in_place(out, bits, group);
  return out;
}

HeadMatrix fake_quantize_per_token(const HeadMatrix& x, int bits, int group) {
  HeadMatrix out = x;
  fake_quantize_per_token_in_place(out, bits, group);
  return out;
}

double quantized_bytes(std::int64_t elements, int bits, int group) {
  const std::int64_t whole_groups = elements / group;  // one scale + zero-point per complete group
  return static_cast<double>(elements) * bits / 8.0 +
         static_cast<double>(whole_groups) * static_cast<double>(kQuantScaleZeroBytes);
}

}  // namespace kvsim

#include "traces/rope.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

namespace kvsim {

std::vector<double> rope_inv_freq(int head_dim, double rope_theta, const RopeScaling& scaling) {
  const int pairs = head_dim / 2;
  // _compute_default_rope_parameters: 1 / base^(arange(0, dim, 2) / dim).
  std::vector<double> inv_freq(pairs);
  for (int i = 0; i < pairs; ++i) inv_freq[i] = std::pow(rope_theta, -2.0 * i / head_dim);
  if (scaling.type == "none") return inv_freq;
  if (scaling.type == "linear") {
    // _compute_linear_scaling_rope_parameters: inv_freq /= factor (positions divided by factor).
    for (double& f : inv_freq) f /= *scaling.factor;
    return inv_freq;
  }
  if (scaling.type == "llama3") {
    // _compute_llama3_parameters: wavelengths shorter than original / high_freq_factor keep their
    // frequency, longer than original / low_freq_factor are divided by factor, and those between
    // (both bounds included) interpolate smoothly between the two.
    const double factor = *scaling.factor;
    const double low = *scaling.low_freq_factor;
    const double high = *scaling.high_freq_factor;
    const auto old_context = static_cast<double>(*scaling.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / low;
    const double high_freq_wavelen = old_context / high;
    for (double& f : inv_freq) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_freq_wavelen) {
        f /= factor;
      } else if (!(wavelen < high_freq_wavelen)) {
        const double smooth = (old_context / wavelen - low) / (high - low);
        f = (1.0 - smooth) * f / factor + smooth * f;
      }
    }
    return inv_freq;
  }
  // ModelShape::validate refuses every other type (yarn included) with an InputError.
  throw std::logic_error("rope_inv_freq: unvalidated rope_scaling_type '" + scaling.type + "'");
}

std::vector<double> rope_inv_freq(const ModelShape& model) {
  return rope_inv_freq(model.head_dim, model.rope_theta, model.rope_scaling);
}

void apply_rope(float* x, int head_dim, std::int64_t position, const std::vector<double>& inv_freq) {
  const int pairs = head_dim / 2;
  for (int i = 0; i < pairs; ++i) {
    const double angle = static_cast<double>(position) * inv_freq[i];
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    const double a = x[i];
    const double b = x[i + pairs];
    x[i] = static_cast<float>(a * c - b * s);
    x[i + pairs] = static_cast<float>(b * c + a * s);
  }
}

RopeTable::RopeTable(std::int64_t first_position, std::int64_t count, const std::vector<double>& inv_freq)
    : pairs_(static_cast<int>(inv_freq.size())),
      cos_(static_cast<std::size_t>(count) * inv_freq.size()),
      sin_(cos_.size()) {
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, count, 1024), [&](const auto& range) {
    for (std::int64_t row = range.begin(); row < range.end(); ++row) {
      const double position = static_cast<double>(first_position + row);
      for (int i = 0; i < pairs_; ++i) {
        const double angle = position * inv_freq[i];
        cos_[row * pairs_ + i] = static_cast<float>(std::cos(angle));
        sin_[row * pairs_ + i] = static_cast<float>(std::sin(angle));
      }
    }
  });
}

void RopeTable::rotate(float* x, std::int64_t row) const {
  const float* c = &cos_[row * pairs_];
  const float* s = &sin_[row * pairs_];
  for (int i = 0; i < pairs_; ++i) {
    const float a = x[i];
    const float b = x[i + pairs_];
    x[i] = a * c[i] - b * s[i];
    x[i + pairs_] = b * c[i] + a * s[i];
  }
}

}  // namespace kvsim

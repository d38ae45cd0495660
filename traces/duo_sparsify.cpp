#include "traces/duo_sparsify.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace kvsim {

namespace {

// numpy's legacy random_sample: 53 random bits from two 32-bit MT19937 outputs (genrand_res53).
double numpy_random_sample(std::mt19937& mt) {
  const auto a = static_cast<double>(mt() >> 5);
  const auto b = static_cast<double>(mt() >> 6);
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

// np.quantile(values, q) with the default method "linear" (numpy >= 1.22 _quantile and _lerp):
// virtual index (n - 1) q, interpolated from below for t < 0.5 and from above for t >= 0.5.
double numpy_quantile_linear(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double virtual_index = static_cast<double>(values.size() - 1) * q;
  const auto below = static_cast<std::size_t>(std::floor(virtual_index));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  const double t = virtual_index - static_cast<double>(below);
  const double a = values[below], b = values[above];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

}  // namespace

std::vector<bool> duo_sparsify(std::span<const double> gates, double sparsity, std::uint32_t seed) {
  std::vector<bool> full(gates.size(), false);
  if (gates.empty()) return full;
  std::mt19937 mt(seed);  // numpy's mt19937_seed is MT19937's init_genrand, as std::mt19937's
  std::vector<double> noisy(gates.begin(), gates.end());
  for (double& g : noisy) g += 0.0 + 1e-6 * numpy_random_sample(mt);  // uniform(0, 1e-6) = low + range x sample
  double threshold = numpy_quantile_linear(noisy, sparsity);
  if (sparsity >= 1.0) threshold = 2.0;   // "all heads are pruned"
  if (sparsity <= 0.0) threshold = -1.0;  // "no heads are pruned"
  for (std::size_t i = 0; i < noisy.size(); ++i) full[i] = noisy[i] >= threshold;
  return full;
}

}  // namespace kvsim

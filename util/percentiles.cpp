#include "util/percentiles.h"

#include <algorithm>
#include <cmath>

namespace kvsim {

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

Percentiles percentiles_of(const std::vector<double>& values) {
  if (values.empty()) return {};
  return {percentile(values, 50), percentile(values, 90), percentile(values, 99)};
}

}  // namespace kvsim

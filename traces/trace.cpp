#include "traces/trace.h"

#include <algorithm>

namespace kvsim {

std::int64_t LayerTrace::query_row(std::int64_t position) const {
  const auto it = std::lower_bound(query_positions.begin(), query_positions.end(), position);
  if (it == query_positions.end() || *it != position) return -1;
  return it - query_positions.begin();
}

std::string LayerTrace::where() const { return origin.empty() ? "trace layer " + std::to_string(layer) : origin; }

}  // namespace kvsim

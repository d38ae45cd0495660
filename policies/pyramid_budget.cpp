#include "policies/pyramid_budget.h"

#include <algorithm>

namespace kvsim {

std::int64_t pyramid_layer_budget(std::int64_t tokens, std::int64_t uniform, std::int64_t window, double beta,
                                  int layer, int num_layers) {
  if (num_layers < 2) return uniform;
  const auto t = static_cast<double>(tokens);
  const auto u = static_cast<double>(uniform);
  const auto w = static_cast<double>(window);
  double min_num = u / beta;
  double max_num = 2.0 * u - min_num;
  if (max_num >= t - w) {
    max_num = t - w;
    min_num = 2.0 * u - max_num;
  }
  if (!(t >= max_num && max_num >= min_num && min_num >= w)) return uniform;
  const double steps = (max_num - min_num) / static_cast<double>(num_layers - 1);
  return round_half_even(max_num - static_cast<double>(layer) * steps);
}

std::int64_t pyramid_capacity(const Budget& budget, const Pass& pass, std::span<const Pass> prefill,
                              PrefillEviction mode, std::int64_t window, double beta, int layer, int num_layers) {
  const std::int64_t prompt = prefill.empty() ? 0 : prefill.back().end;
  const bool chunked = mode == PrefillEviction::kChunk;
  if (!budget.is_fraction) {
    const std::int64_t tokens = chunked && pass.prefill ? pass.end : prompt;
    return pyramid_layer_budget(tokens, std::min(budget.tokens, tokens), window, beta, layer, num_layers);
  }
  auto share = [&](std::int64_t c) {
    const std::int64_t uniform = std::min(round_half_even(budget.fraction * static_cast<double>(c)) + window, c);
    return pyramid_layer_budget(c, uniform, window, beta, layer, num_layers);
  };
  if (!chunked) return share(prompt);
  const int last = pass.prefill ? pass.index : static_cast<int>(prefill.size()) - 1;
  std::int64_t total = 0;
  for (int i = 0; i <= last; ++i) total += share(prefill[i].tokens());
  return total;
}

}  // namespace kvsim

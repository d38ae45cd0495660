#include "policies/pyramid_budget.h"

#include <algorithm>

namespace kvsim {

std::int64_t pyramid_layer_budget(std::int64_t tokens, std::int64_t uniform, std::int64_t window, std::int64_t beta,
                                  int layer, int num_layers) {
  const std::int64_t scored = uniform - window;  // B: the reference's pyramid spreads the scored part
  if (num_layers < 2 || uniform >= tokens || scored <= 0 || tokens < 2 * scored) return uniform;
  std::int64_t min_num = scored / beta;
  std::int64_t max_num = 2 * scored - min_num;
  if (max_num >= tokens - window) {
    max_num = tokens - window;
    min_num = 2 * scored - max_num;
  }
  const std::int64_t steps = (max_num - min_num) / (num_layers - 1);
  return max_num - layer * steps + window;
}

std::int64_t pyramid_capacity(const Budget& budget, const Pass& pass, std::span<const Pass> prefill,
                              PrefillEviction mode, std::int64_t window, std::int64_t beta, int layer, int num_layers) {
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

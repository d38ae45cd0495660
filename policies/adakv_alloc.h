#pragma once
// AdaKV's per-head budgets within one layer, as the authors' code computes them: FFY0/AdaKV
// @efe4e2e adaptive_snapkv/monkeypatch/snapkv_utils.py, AdaptiveSnapKVCluster (__init__ and
// update_kv_gqa). With B = budget - window scored entries per head and H heads:
//   count_h = how many of the layer's H x B highest scores belong to head h;
//   cap_h   = round((1 - floor_alpha) x count_h + int(floor_alpha x B))   (torch.round in float32);
// head h then keeps its window plus its own top cap_h scored entries. The caps sum to H x B only up
// to rounding (FFY0's own 8-head example: 3201 for B = 400).
#include <cstdint>
#include <span>
#include <vector>

namespace kvsim {

// int(floor_alpha x B): AdaKV's floor_capacity, computed once in double and truncated.
std::int64_t adakv_floor_capacity(std::int64_t scored_budget, double floor_alpha);

// round(count x (1 - floor_alpha) + floor_capacity) as torch evaluates it: count becomes float32,
// the python float (1 - floor_alpha) is cast to float32, each operation rounds to float32, and
// torch.round rounds half to even. (float64 gives other caps, e.g. 481 instead of 482 for
// count 645, B 100, floor_alpha 0.3.)
std::int64_t adakv_head_cap(std::int64_t count, std::int64_t scored_budget, double floor_alpha);

// count_h: how many of the `k` highest scores over all heads belong to each head (torch.topk over
// the layer's flattened scores). Ties, which torch.topk leaves unspecified, go to the lower head,
// then the lower index (ranks_before). k is clamped to [0, number of scores].
std::vector<std::int64_t> layer_top_counts(std::span<const std::vector<float>> scores, std::int64_t k);

}  // namespace kvsim

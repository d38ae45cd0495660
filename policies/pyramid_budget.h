#pragma once
// PyramidKV's layer allocation (Cai et al. 2024, arXiv 2406.02069): the same mean budget per
// layer as a uniform policy (up to rounding), spread as an arithmetic series that shrinks from layer
// 0 upwards.
#include <cstdint>
#include <span>

#include "policies/policy.h"
#include "policies/schedule.h"

namespace kvsim {

// Entries kept by `layer` of `num_layers` for a cache of `tokens` entries whose uniform allocation
// is `uniform` entries per layer (window w included), as Zefan-Cai/KVCache-Factory
// pyramidkv/pyramidkv_utils.py PyramidKVCluster.update_kv, in integers: with B = U - w scored entries,
//   T <= U: U (nothing to evict);  T < 2B: U (the reference's uniform SnapKV branch);
//   else min = B // beta, max = 2B - min; if max >= T - w: max = T - w, min = 2B - max;
//        steps = (max - min) // (L - 1); layer l keeps max - l*steps scored entries + w.
// Layer 0 gets the most. The mean over layers is U up to the floor of steps (at most (L-1)/2
// above). A single-layer model has no slope: U. (NVIDIA/kvpress's port builds the pyramid on the
// whole budget with the window inside and falls back to uniform when min < w; kvsim follows the
// original.)
std::int64_t pyramid_layer_budget(std::int64_t tokens, std::int64_t uniform, std::int64_t window, std::int64_t beta,
                                  int layer, int num_layers);

// The layer's capacity (entries per KV head) after `pass`, the pyramid version of
// Budget::capacity (DESIGN.md §4), with w = `window`:
//  fraction b, prefill=post_fill (and decode): pyramid(T = n, U = min(round(b*n) + w, n));
//  fraction b, prefill=chunk, after chunk j: sum_{i<=j} pyramid(T = c_i, U = min(round(b*c_i) + w, c_i)),
//    each chunk's share scaled across layers like a whole prompt (its mean over layers is the
//    uniform per-chunk capacity of the footprint paper); decode keeps the end-of-prefill value;
//  token count B: pyramid(T, U = min(B, T)) with T the tokens processed so far (prefill=chunk) or
//    the prompt (otherwise, and in decode).
std::int64_t pyramid_capacity(const Budget& budget, const Pass& pass, std::span<const Pass> prefill,
                              PrefillEviction mode, std::int64_t window, std::int64_t beta, int layer, int num_layers);

}  // namespace kvsim

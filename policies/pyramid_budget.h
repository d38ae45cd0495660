#pragma once
// PyramidKV's layer allocation (Cai et al. 2024, arXiv 2406.02069): the same mean budget per
// layer as a uniform policy, spread as an arithmetic series that shrinks from layer 0 upwards.
#include <cstdint>
#include <span>

#include "policies/policy.h"
#include "policies/schedule.h"

namespace kvsim {

// Entries kept by `layer` of `num_layers` for a cache of `tokens` entries whose uniform allocation
// is `uniform` entries per layer (window included), as NVIDIA/kvpress pyramidkv_press.py
// get_layer_budget (budget formula of Zefan-Cai/KVCache-Factory pyramidkv/pyramidkv_utils.py):
//   min = U/beta, max = 2U - min; if max >= T - w: max = T - w, min = 2U - max;
//   unless T >= max >= min >= w: U (uniform fallback); else round(max - layer*(max - min)/(L - 1)),
// round half to even; layer 0 gets the most, and the mean over layers is U (exactly, before
// rounding). A single-layer model has no slope: U.
std::int64_t pyramid_layer_budget(std::int64_t tokens, std::int64_t uniform, std::int64_t window, double beta,
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
                              PrefillEviction mode, std::int64_t window, double beta, int layer, int num_layers);

}  // namespace kvsim

#pragma once
// DuoAttention's rule turning trained gate values into a full-head mask, transliterated from
// mit-han-lab/duo-attention duo_attn/utils.py sparsify_attention_heads (commit
// fe93c314ae87306ef6629dc16713250b4718ffe7), as called by its evaluation scripts
// (eval/LongBench/pred.py: seed_everything(42), then sparsify_attention_heads(..., sparsity=s)):
//
//   gates += np.random.uniform(0, 1e-6, gates.shape)   # "a very small random noise ... to break ties"
//   threshold = np.quantile(gates, sparsity)           # linear interpolation; s >= 1: 2, s <= 0: -1
//   full = gates >= threshold
//
// The noise is numpy's legacy MT19937 stream after np.random.seed(seed): std::mt19937 seeded the
// same way, each draw 1e-6 x (a >> 5, b >> 6) / 2^53 (numpy's random_sample), row-major. The number
// of full heads is N - ceil((N - 1) s) for distinct values; ties fall where the noise puts them.
#include <cstdint>
#include <span>
#include <vector>

namespace kvsim {

// The seed of DuoAttention's evaluation scripts (eval/LongBench/pred.py, eval/needle).
inline constexpr std::uint32_t kDuoTieSeed = 42;

// One flag per value (row-major over layers x KV heads): true = full (retrieval) head.
// `gates` must already be clipped to [0, 1] (load_attn_pattern's np.clip).
std::vector<bool> duo_sparsify(std::span<const double> gates, double sparsity, std::uint32_t seed = kDuoTieSeed);

}  // namespace kvsim

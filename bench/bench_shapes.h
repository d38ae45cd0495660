#pragma once
// Shapes shared by the kernel benchmarks and bench/torch_reference.py (which must time the same
// computations): one llama-3.1-8b layer has 8 KV heads of d = 128 and 4 query heads per KV head;
// SnapKV's observation window is 32 queries.
#include <cstdint>

namespace kvsim::bench {

inline constexpr int kHeadDim = 128;
inline constexpr int kGroup = 4;
inline constexpr int kKvHeads = 8;
inline constexpr int kWindow = 32;
// Square SGEMM size for the machine's peak: large enough to be compute-bound, small enough to run
// many iterations.
inline constexpr int kPeakGemmSize = 1024;
// KIVI's defaults (policies/kivi.cpp): 2-bit elements in groups of 32.
inline constexpr int kKiviBits = 2;
inline constexpr int kKiviGroup = 32;

// FLOPs of the GEMM inside one KV head's window attention: [group*window x d] x [d x keys].
inline double window_attention_flops(std::int64_t keys) {
  return 2.0 * kGroup * kWindow * static_cast<double>(keys) * kHeadDim;
}

// FLOPs of exact leverage of a [keys x d] matrix: the Gram matrix X^T X (symmetric, n d^2) and the
// projection X W (2 n d^2); the d x d eigensolve is negligible at these sizes.
inline double leverage_flops(std::int64_t keys) { return 3.0 * static_cast<double>(keys) * kHeadDim * kHeadDim; }

}  // namespace kvsim::bench

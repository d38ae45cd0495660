#pragma once
// Shared pieces of the query-free geometric scorers l2norm, compactor and curdkv: protected-ends
// selection, exact statistical leverage, Compactor's right-Gaussian-sketch leverage and its
// non-causal chunked attention.
#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "traces/trace.h"

namespace kvsim {

// The first `sinks` and the last `recent` entries of a resident list, which are always kept.
struct ProtectedEnds {
  std::int64_t sinks = 0;
  std::int64_t recent = 0;

  // Clipped so that the two ends never overlap on a list of `size` entries.
  ProtectedEnds clipped(std::int64_t size) const;
  std::int64_t total() const { return sinks + recent; }
};

// Keeps the (clipped) protected ends of `resident` plus the capacity - ends.total() middle entries
// with the highest scores (ties towards the lower position). middle_scores[i] scores
// resident[ends.sinks + i]. If the capacity is below the protected count, the most recent
// protected entries win (a fixed-size cache never holds more than its capacity).
std::vector<std::int32_t> keep_ends_and_top(std::span<const std::int32_t> resident,
                                            std::span<const float> middle_scores, ProtectedEnds ends,
                                            std::int64_t capacity);

// Exact leverage of the rows of X after centering them on their mean: lev[t] = x_t^T (X^T X)^+ x_t
// (the hat-matrix diagonal; sum = rank). The pseudo-inverse drops eigenvalues of X^T X below
// 1e-10 of the largest, so duplicate or constant channels do not blow up. Computed in double.
Eigen::VectorXd centered_leverage(Eigen::MatrixXd x);

// Compactor's leverage estimator as NVIDIA/kvpress writes it (LeverageScorePress.
// compute_leverage_scores): centre the rows of X [S, d] on their mean, sketch them from the right
// with phi [d, k] (Y = X phi, S x k), and return the ridge leverage of Y's rows,
//   lev[t] = y_t^T (Y^T Y + jitter I)^-1 y_t, clamped at 0,
// through a Cholesky factor of the symmetrised Gram matrix; where the factorisation fails the
// jitter grows tenfold, at most 5 tries (chol_with_jitter), then it throws. This is its own
// estimator, not exact leverage plus noise: with k >= rank(X) it is the exact leverage shrunk by
// the ridge; with k < rank(X) it is the leverage inside a random k-dimensional subspace of the
// key space (the scores sum to at most k). Computed in double.
Eigen::VectorXd sketched_leverage(Eigen::MatrixXd x, const Eigen::MatrixXd& phi, double jitter);

// The reference draws phi with torch.randn (d x k) * 1/sqrt(k), fresh at every call. kvsim draws
// it from a key instead, so that it is reproducible: entry (i, j) is the (i k + j)-th
// KeyedRng(key).normal() (splitmix64 + Box-Muller, util/rng.h), divided by sqrt(k). The
// Python reference (tests/reference/test_compactor_reference.py) regenerates it bit for bit.
Eigen::MatrixXd gaussian_sketch(std::uint64_t key, Eigen::Index rows_d, Eigen::Index cols_k);

// The key of one sketch: hash_key(seed, layer, kv_head, pass_end, fnv1a64(request_id)), one fresh
// matrix per request, layer, KV head and eviction point (the pass that ends at pass_end).
std::uint64_t sketch_key(std::uint64_t seed, std::string_view request_id, int layer, int kv_head,
                         std::int64_t pass_end);
std::uint64_t fnv1a64(std::string_view text);

// Compactor's attention term for one KV head: the entries are cut into consecutive chunks of
// `chunk` (the last may be shorter); inside a chunk every query attends to every key of the chunk
// (non-causal, unscaled logits q·k as the reference), and each key's score is the attention it
// receives summed over the chunk's queries, averaged over the query heads of the group.
// With zero_pad_last, a short last chunk is padded to `chunk` as kvpress's
// NonCausalAttnPress.non_causal_chunked_attn does: its pad keys (zero vectors, logits filled
// with -1e-9, i.e. 0, not -inf) take softmax mass from the real queries, and each pad query (all
// logits 0: uniform) gives 1/chunk to every key of the chunk.
// keys: [S, d] post-RoPE; queries: per query head, [S, d] rows aligned with `keys`. float32.
Eigen::VectorXf noncausal_chunk_attention(const HeadMatrix& keys, std::span<const HeadMatrix> queries,
                                          std::int64_t chunk, bool zero_pad_last = false);

// Rows `positions` of `m`.
HeadMatrix gather_rows(const HeadMatrix& m, std::span<const std::int32_t> positions);

// Mean and unbiased standard deviation (torch.std, N-1) of all values, summed in the given order
// (so the result does not depend on how the values were produced in parallel).
struct ZStats {
  double mean = 0.0;
  double std = 1.0;
};
ZStats z_stats(std::span<const Eigen::VectorXd> parts);

}  // namespace kvsim

#pragma once
// Shared pieces of the query-free geometric scorers l2norm, compactor and curdkv: protected-ends
// selection, exact statistical leverage, and Compactor's non-causal chunked attention.
#include <Eigen/Core>
#include <cstdint>
#include <span>
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

// Compactor's attention term for one KV head: the entries are cut into consecutive chunks of
// `chunk` (the last may be shorter); inside a chunk every query attends to every key of the chunk
// (non-causal, unscaled logits q·k as the reference), and each key's score is the attention it
// receives summed over the chunk's queries, averaged over the query heads of the group.
// keys: [S, d] post-RoPE; queries: per query head, [S, d] rows aligned with `keys`. float32.
Eigen::VectorXf noncausal_chunk_attention(const HeadMatrix& keys, std::span<const HeadMatrix> queries,
                                          std::int64_t chunk);

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

#include "policies/window_attention.h"

#include <algorithm>
#include <cmath>

#include "policies/scratch.h"

namespace kvsim {

namespace {

// The window queries of a GQA group stacked head-major ([group x window, d]) and scaled by
// 1/sqrt(d), ready for one GEMM against the keys.
HeadMatrix scaled_window_queries(const WindowQueries& queries, Eigen::Index head_dim) {
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const auto window = static_cast<Eigen::Index>(queries.rows.size());
  HeadMatrix q(group * window, head_dim);
  for (Eigen::Index g = 0; g < group; ++g) {
    for (Eigen::Index i = 0; i < window; ++i) q.row(g * window + i) = queries.heads[g]->row(queries.rows[i]);
  }
  q *= 1.0f / std::sqrt(static_cast<float>(head_dim));
  return q;
}

// The window's attention: softmax rows of q k^T / sqrt(d) (window query i sees the prefix plus
// window entries 0..i), each row handed to `row(probabilities, visible, inv_total)` unnormalised
// (exp(x - max), the caller scales by inv_total) so a caller accumulates what it needs.
template <typename RowFn>
void for_each_attention_row(const HeadMatrix& keys, std::span<const std::int32_t> resident, std::int64_t window,
                            const WindowQueries& queries, RowFn&& row_fn) {
  const auto r = static_cast<Eigen::Index>(resident.size());
  const Eigen::Index d = keys.cols();
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const Eigen::Index prefix = r - window;

  const HeadMatrix q = scaled_window_queries(queries, d);
  // [group x window, r]: 64 MiB at 128K keys, so not a fresh allocation per call (policies/scratch.h).
  Eigen::Map<HeadMatrix> logits = thread_scratch_matrix(group * window, r);
  // Before any eviction the resident entries are a contiguous run of positions: multiply by those
  // rows in place instead of gathering a copy (at 128K keys the copy is 64 MiB per head).
  const bool contiguous = r > 0 && resident[r - 1] - resident[0] == r - 1;
  // The GEMM runs in column blocks of 4096 keys: Eigen's skinny GEMM is ~25% faster per FLOP at
  // that width than over 128K columns at once (bench/scoring_bench.cpp).
  constexpr Eigen::Index kBlock = 4096;
  HeadMatrix cached;
  if (!contiguous) {
    cached.resize(std::min(r, kBlock), d);
  }
  for (Eigen::Index begin = 0; begin < r; begin += kBlock) {
    const Eigen::Index len = std::min(kBlock, r - begin);
    if (contiguous) {
      logits.middleCols(begin, len).noalias() = q * keys.middleRows(resident[0] + begin, len).transpose();
    } else {
      for (Eigen::Index j = 0; j < len; ++j) cached.row(j) = keys.row(resident[begin + j]);
      logits.middleCols(begin, len).noalias() = q * cached.topRows(len).transpose();
    }
  }
  for (Eigen::Index row = 0; row < group * window; ++row) {
    const Eigen::Index visible = prefix + (row % window) + 1;
    auto x = logits.row(row).head(visible).array();
    const float max = x.maxCoeff();
    x = (x - max).exp();
    row_fn(x, visible, 1.0f / x.sum());
  }
}

}  // namespace

std::vector<float> window_attention_scores(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                           std::int64_t window, const WindowQueries& queries) {
  const auto prefix = static_cast<Eigen::Index>(resident.size()) - window;
  Eigen::ArrayXf sum = Eigen::ArrayXf::Zero(prefix);
  for_each_attention_row(keys, resident, window, queries, [&](const auto& x, Eigen::Index, float inv_total) {
    sum += x.head(prefix).transpose() * inv_total;
  });
  sum /= static_cast<float>(queries.heads.size());
  return std::vector<float>(sum.data(), sum.data() + prefix);
}

WindowAttention window_attention_with_squares(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                              std::int64_t window, const WindowQueries& queries) {
  const auto r = static_cast<Eigen::Index>(resident.size());
  const Eigen::Index prefix = r - window;
  Eigen::ArrayXf sum = Eigen::ArrayXf::Zero(prefix);
  // In double: DBudgetKV compares prefix sums of these against a fraction of their total.
  Eigen::ArrayXd squares = Eigen::ArrayXd::Zero(r);
  for_each_attention_row(keys, resident, window, queries, [&](const auto& x, Eigen::Index visible, float inv_total) {
    sum += x.head(prefix).transpose() * inv_total;
    squares.head(visible) += (x * inv_total).square().transpose().template cast<double>();
  });
  sum /= static_cast<float>(queries.heads.size());
  return {std::vector<float>(sum.data(), sum.data() + prefix), std::vector<double>(squares.data(), squares.data() + r)};
}

}  // namespace kvsim

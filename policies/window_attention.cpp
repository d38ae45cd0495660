#include "policies/window_attention.h"

#include <algorithm>
#include <cmath>

#include "policies/scratch.h"

namespace kvsim {

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

std::vector<float> window_attention_scores(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                           std::int64_t window, const WindowQueries& queries) {
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

  Eigen::ArrayXf sum = Eigen::ArrayXf::Zero(prefix);
  for (Eigen::Index row = 0; row < group * window; ++row) {
    // Window query i sees the prefix plus window entries 0..i (causal).
    const Eigen::Index visible = prefix + (row % window) + 1;
    auto x = logits.row(row).head(visible).array();
    const float max = x.maxCoeff();
    x = (x - max).exp();
    const float inv_total = 1.0f / x.sum();
    sum += x.head(prefix).transpose() * inv_total;
  }
  sum /= static_cast<float>(group);
  return std::vector<float>(sum.data(), sum.data() + prefix);
}

}  // namespace kvsim

#include "policies/h2o_attention.h"

#include <algorithm>
#include <cmath>

namespace kvsim {

void add_pass_attention(const HeadMatrix& keys, std::span<const std::int32_t> visible, std::int64_t cached,
                        std::int64_t pass_begin, const PassQueries& queries, std::span<double> score) {
  const auto v = static_cast<Eigen::Index>(visible.size());
  const Eigen::Index d = keys.cols();
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const auto count = static_cast<Eigen::Index>(queries.positions.size());
  if (count == 0 || v == 0) return;

  HeadMatrix k(v, d);
  for (Eigen::Index j = 0; j < v; ++j) k.row(j) = keys.row(visible[static_cast<std::size_t>(j)]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const double inv_group = 1.0 / static_cast<double>(group);
  auto visible_to = [&](Eigen::Index i) {
    return static_cast<Eigen::Index>(cached + (queries.positions[static_cast<std::size_t>(i)] - pass_begin) + 1);
  };

  // Blocks of queries bound the logits' memory (block x visible) and skip most of the causal
  // triangle's masked half in long prefill passes. The blocking depends only on the inputs, so
  // results do not depend on the thread count.
  constexpr Eigen::Index kBlock = 64;
  HeadMatrix q;
  HeadMatrix logits;
  Eigen::ArrayXf block_sum;
  for (Eigen::Index b0 = 0; b0 < count; b0 += kBlock) {
    const Eigen::Index bn = std::min(kBlock, count - b0);
    const Eigen::Index cols = visible_to(b0 + bn - 1);
    q.resize(group * bn, d);
    for (Eigen::Index g = 0; g < group; ++g) {
      for (Eigen::Index i = 0; i < bn; ++i) {
        q.row(g * bn + i) = queries.heads[static_cast<std::size_t>(g)]->row(queries.rows[static_cast<std::size_t>(b0 + i)]);
      }
    }
    logits.resize(group * bn, cols);
    logits.noalias() = (q * scale) * k.topRows(cols).transpose();
    block_sum.setZero(cols);
    for (Eigen::Index row = 0; row < group * bn; ++row) {
      const Eigen::Index seen = visible_to(b0 + row % bn);
      auto x = logits.row(row).head(seen).array();
      const float max = x.maxCoeff();
      x = (x - max).exp();
      const float inv_total = 1.0f / x.sum();
      block_sum.head(seen) += x.transpose() * inv_total;
    }
    for (Eigen::Index j = 0; j < cols; ++j) score[static_cast<std::size_t>(j)] += static_cast<double>(block_sum[j]) * inv_group;
  }
}

}  // namespace kvsim

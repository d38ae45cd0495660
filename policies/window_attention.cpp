#include "policies/window_attention.h"

#include <cmath>

namespace kvsim {

std::vector<float> window_attention_scores(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                           std::int64_t window, const WindowQueries& queries) {
  const auto r = static_cast<Eigen::Index>(resident.size());
  const Eigen::Index d = keys.cols();
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const Eigen::Index prefix = r - window;

  HeadMatrix cached(r, d);
  for (Eigen::Index j = 0; j < r; ++j) cached.row(j) = keys.row(resident[j]);
  HeadMatrix q(group * window, d);
  for (Eigen::Index g = 0; g < group; ++g) {
    for (Eigen::Index i = 0; i < window; ++i) q.row(g * window + i) = queries.heads[g]->row(queries.rows[i]);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  HeadMatrix logits(group * window, r);
  logits.noalias() = (q * scale) * cached.transpose();

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

#include "policies/attention_squares.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "policies/snapkv_select.h"

namespace kvsim {

std::vector<double> window_attention_squares(const HeadMatrix& keys, std::span<const std::int32_t> resident,
                                             std::int64_t window, const WindowQueries& queries) {
  const auto r = static_cast<Eigen::Index>(resident.size());
  const Eigen::Index d = keys.cols();
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const Eigen::Index prefix = r - window;

  const HeadMatrix q = scaled_window_queries(queries, d);
  // The window is small (tens of queries): gather the resident keys once, one GEMM.
  HeadMatrix cached(r, d);
  for (Eigen::Index j = 0; j < r; ++j) cached.row(j) = keys.row(resident[static_cast<std::size_t>(j)]);
  HeadMatrix logits = q * cached.transpose();

  // Accumulated in double: DBudgetKV compares prefix sums of these against a fraction of their total.
  Eigen::ArrayXd sum = Eigen::ArrayXd::Zero(r);
  for (Eigen::Index row = 0; row < group * window; ++row) {
    const Eigen::Index visible = prefix + (row % window) + 1;  // window query i sees entries up to its own
    auto x = logits.row(row).head(visible).array();
    const float max = x.maxCoeff();
    x = (x - max).exp();
    const float inv_total = 1.0f / x.sum();
    sum.head(visible) += (x * inv_total).square().transpose().cast<double>();
  }
  return std::vector<double>(sum.data(), sum.data() + r);
}

std::vector<double> head_attention_squares(const EvictionContext& ctx, const Policy& policy, int kv_head,
                                           std::span<const std::int32_t> resident, std::int64_t window_count) {
  const std::vector<const HeadMatrix*> heads = group_query_heads(ctx, kv_head);
  const std::vector<std::int64_t> rows = window_query_rows(ctx, policy, resident, window_count);
  return window_attention_squares(ctx.trace->keys[kv_head], resident, window_count, {heads, rows});
}

}  // namespace kvsim

#include "policies/head_mask_proxy.h"

#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>

#include "policies/scratch.h"
#include "util/error.h"

namespace kvsim {

std::vector<double> streaming_loss_scores(const LayerTrace& trace, const ModelShape& model,
                                          std::span<const std::int64_t> observed, std::int64_t sinks,
                                          std::int64_t window) {
  const int group = model.group_size();
  const auto obs = static_cast<Eigen::Index>(observed.size());
  std::vector<std::int64_t> rows;
  for (const std::int64_t t : observed) {
    const std::int64_t row = trace.query_row(t);
    if (row < 0) {
      throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                       std::to_string(t) + ", which the head-mask proxy scores with");
    }
    rows.push_back(row);
  }
  std::vector<double> scores(static_cast<std::size_t>(model.num_kv_heads), 0.0);
  if (observed.empty()) return scores;
  const std::int64_t last = *std::max_element(observed.begin(), observed.end());
  tbb::parallel_for(0, model.num_kv_heads, [&](int h) {
    const HeadMatrix& keys = trace.keys[static_cast<std::size_t>(h)];
    const Eigen::Index d = keys.cols();
    const Eigen::Index n = last + 1;
    HeadMatrix q(group * obs, d);
    for (int g = 0; g < group; ++g) {
      const HeadMatrix& queries =
          trace.queries[static_cast<std::size_t>(h) * static_cast<std::size_t>(group) + static_cast<std::size_t>(g)];
      for (Eigen::Index i = 0; i < obs; ++i) q.row(g * obs + i) = queries.row(rows[static_cast<std::size_t>(i)]);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    Eigen::Map<HeadMatrix> logits = thread_scratch_matrix(group * obs, n);  // 64 MiB at 128K: policies/scratch.h
    logits.noalias() = (q * scale) * keys.topRows(n).transpose();
    double total = 0.0;
    for (Eigen::Index r = 0; r < logits.rows(); ++r) {
      const std::int64_t t = observed[static_cast<std::size_t>(r % obs)];
      auto x = logits.row(r).head(t + 1).array();
      x = (x - x.maxCoeff()).exp();
      // Lost: positions in [sinks, t - window], neither sink nor among the `window` most recent.
      const std::int64_t lost_begin = std::min(sinks, t + 1);
      const std::int64_t lost_end = std::max(lost_begin, t - window + 1);
      total += static_cast<double>(x.segment(lost_begin, lost_end - lost_begin).sum()) / static_cast<double>(x.sum());
    }
    scores[static_cast<std::size_t>(h)] = total / static_cast<double>(logits.rows());
  });
  return scores;
}

}  // namespace kvsim

#include "sim/fidelity.h"

#include <cmath>

namespace kvsim {

void measure_head_fidelity(const ModelShape& model, const LayerTrace& trace, int kv_head,
                           std::span<const std::int64_t> eval_positions,
                           std::span<const LayerReplay* const> replays, std::vector<FidelitySamples>& out) {
  const int group = model.group_size();
  const auto evals = static_cast<Eigen::Index>(eval_positions.size());
  const HeadMatrix& keys = trace.keys[kv_head];
  const HeadMatrix& values = trace.values[kv_head];
  const Eigen::Index span = eval_positions.empty() ? 0 : eval_positions.back() + 1;  // keys any query sees
  const Eigen::Index d = keys.cols();

  // Rows ordered (query head in group, evaluation query).
  HeadMatrix q(group * evals, d);
  for (int g = 0; g < group; ++g) {
    const HeadMatrix& queries = trace.queries[kv_head * group + g];
    for (Eigen::Index e = 0; e < evals; ++e) q.row(g * evals + e) = queries.row(trace.query_row(eval_positions[e]));
  }
  HeadMatrix probs(group * evals, span);
  probs.noalias() = (q * (1.0f / std::sqrt(static_cast<float>(d)))) * keys.topRows(span).transpose();
  for (Eigen::Index row = 0; row < probs.rows(); ++row) {
    const Eigen::Index visible = eval_positions[row % evals] + 1;
    auto x = probs.row(row).head(visible).array();
    x = (x - x.maxCoeff()).exp();
    x /= x.sum();
    probs.row(row).tail(span - visible).setZero();
  }
  const HeadMatrix full_out = probs * values.topRows(span);

  HeadMatrix masked(probs.rows(), span);
  for (std::size_t p = 0; p < replays.size(); ++p) {
    masked.setZero();
    for (Eigen::Index e = 0; e < evals; ++e) {
      const VisibleSet& vis = replays[p]->visible[static_cast<std::size_t>(e)];
      const auto& kept = (*vis.snapshot)[static_cast<std::size_t>(kv_head)];
      for (int g = 0; g < group; ++g) {
        const Eigen::Index row = g * evals + e;
        for (std::int32_t pos : kept) masked(row, pos) = probs(row, pos);
        for (std::int64_t pos = vis.append_begin; pos <= vis.position; ++pos) masked(row, pos) = probs(row, pos);
      }
    }
    const HeadMatrix kept_out = masked * values.topRows(span);
    for (Eigen::Index row = 0; row < probs.rows(); ++row) {
      const double recall = masked.row(row).cast<double>().sum();
      const double ref_norm = full_out.row(row).norm();
      const double err = (kept_out.row(row).cast<double>() / recall - full_out.row(row).cast<double>()).norm();
      out[p].recall.push_back(recall);
      out[p].output_error.push_back(ref_norm > 0 ? err / ref_norm : 0.0);
    }
  }
}

}  // namespace kvsim

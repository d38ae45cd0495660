#include "sim/replay/fidelity.h"

#include <cmath>

#include "sim/replay/fidelity_compressed.h"

namespace kvsim {

void measure_head_fidelity(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                           const LayerTrace& trace,
                           int kv_head, std::span<const std::int64_t> eval_positions,
                           std::span<const Policy* const> policies, std::span<const LayerReplay* const> replays,
                           std::vector<FidelitySamples>& out) {
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
  // (recall, output error) per row, in row order so the sample order is the same for every policy.
  std::vector<std::vector<std::pair<double, double>>> samples(replays.size(),
                                                              std::vector<std::pair<double, double>>(probs.rows()));

  // Per policy, evaluation queries that share a cache snapshot are measured together: gather the
  // snapshot's probabilities and values once, one GEMM, then add the entries appended since.
  for (std::size_t p = 0; p < replays.size(); ++p) {
    if (policies[p]->compresses()) {
      measure_compressed_fidelity(model, request, prefill, trace, kv_head, eval_positions, *policies[p], *replays[p], q, probs,
                                  full_out, out[p]);
      continue;
    }
    const auto& visible = replays[p]->visible;
    Eigen::Index first = 0;
    while (first < evals) {
      const LayerResidency* snapshot = visible[static_cast<std::size_t>(first)].snapshot;
      Eigen::Index last = first + 1;
      while (last < evals && visible[static_cast<std::size_t>(last)].snapshot == snapshot) ++last;
      const auto& kept = (*snapshot)[static_cast<std::size_t>(kv_head)];
      const auto count = static_cast<Eigen::Index>(kept.size());
      const Eigen::Index rows = group * (last - first);
      HeadMatrix kept_probs(rows, count);
      HeadMatrix kept_values(count, d);
      for (Eigen::Index j = 0; j < count; ++j) kept_values.row(j) = values.row(kept[j]);
      for (int g = 0; g < group; ++g) {
        for (Eigen::Index e = first; e < last; ++e) {
          const Eigen::Index src = g * evals + e;
          const Eigen::Index dst = g * (last - first) + (e - first);
          for (Eigen::Index j = 0; j < count; ++j) kept_probs(dst, j) = probs(src, kept[j]);
        }
      }
      HeadMatrix kept_out(rows, d);
      kept_out.noalias() = kept_probs * kept_values;
      for (int g = 0; g < group; ++g) {
        for (Eigen::Index e = first; e < last; ++e) {
          const Eigen::Index src = g * evals + e;
          const Eigen::Index dst = g * (last - first) + (e - first);
          const VisibleSet& vis = visible[static_cast<std::size_t>(e)];
          double recall = kept_probs.row(dst).cast<double>().sum();
          Eigen::RowVectorXd kept_sum = kept_out.row(dst).cast<double>();
          for (std::int64_t pos = vis.append_begin; pos <= vis.position; ++pos) {
            recall += probs(src, pos);
            kept_sum += static_cast<double>(probs(src, pos)) * values.row(pos).cast<double>();
          }
          const Eigen::RowVectorXd reference = full_out.row(src).cast<double>();
          const double ref_norm = reference.norm();
          samples[p][static_cast<std::size_t>(src)] = {recall, ref_norm > 0 ? (kept_sum / recall - reference).norm() / ref_norm : 0.0};
        }
      }
      first = last;
    }
    for (const auto& [recall, error] : samples[p]) {
      out[p].recall.push_back(recall);
      out[p].output_error.push_back(error);
    }
  }
}

}  // namespace kvsim

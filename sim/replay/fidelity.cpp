#include "sim/replay/fidelity.h"

#include <algorithm>
#include <cmath>

#include "sim/replay/fidelity_compressed.h"
#include "util/error.h"

namespace kvsim {

namespace {

// Below this visible mass the float probabilities carry too few significant digits (or have
// underflowed to 0) to renormalise over the visible entries: the visible set's own softmax is
// then recomputed from its logits, in double.
constexpr double kTinyRecall = 1e-30;

struct RestrictedAttention {
  double recall = 0;          // full-cache probability mass on the visible entries
  Eigen::RowVectorXd output;  // attention output over the visible entries alone
};

// The attention of query row `row` of `q` restricted to `visible`, max-subtracted over the
// visible logits. `full_max` and `full_sum` are the row's full-cache softmax max and sum.
RestrictedAttention restricted_attention(const HeadMatrix& q, Eigen::Index row, const HeadMatrix& keys,
                                         const HeadMatrix& values, const std::vector<std::int64_t>& visible,
                                         float scale, float full_max, double full_sum) {
  Eigen::VectorXd logits(static_cast<Eigen::Index>(visible.size()));
  for (std::size_t j = 0; j < visible.size(); ++j) {
    logits(static_cast<Eigen::Index>(j)) = (q.row(row) * scale).dot(keys.row(visible[j]));
  }
  const double max = logits.maxCoeff();
  RestrictedAttention out;
  out.output = Eigen::RowVectorXd::Zero(values.cols());
  double sum = 0;
  for (std::size_t j = 0; j < visible.size(); ++j) {
    const double w = std::exp(logits(static_cast<Eigen::Index>(j)) - max);
    sum += w;
    out.output += w * values.row(visible[j]).cast<double>();
  }
  out.output /= sum;
  out.recall = std::exp(max - full_max) * sum / full_sum;
  return out;
}

}  // namespace

[[noreturn]] void fail_non_finite(const LayerTrace& trace, int kv_head, const std::string& what) {
  fail_input(trace.where(), "KV head " + std::to_string(kv_head) + ": " + what +
                                " is not finite (float32 overflow); expected keys, values and queries of a size "
                                "that real attention produces (|q.k|/sqrt(d) and |v| well below 1e38)");
}

void measure_head_fidelity(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                           const LayerTrace& trace, int kv_head, std::span<const std::int64_t> eval_positions,
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
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  HeadMatrix probs(group * evals, span);
  probs.noalias() = (q * scale) * keys.topRows(span).transpose();
  // Softmax per row, max-subtracted (exp never overflows and the largest term is exactly 1, so the
  // sum, taken in double, is >= 1). The max and sum are kept for restricted_attention.
  std::vector<float> row_max(static_cast<std::size_t>(probs.rows()));
  std::vector<double> row_sum(static_cast<std::size_t>(probs.rows()));
  for (Eigen::Index row = 0; row < probs.rows(); ++row) {
    const Eigen::Index visible = eval_positions[row % evals] + 1;
    auto x = probs.row(row).head(visible).array();
    if (!x.allFinite()) fail_non_finite(trace, kv_head, "an attention logit q.k/sqrt(d)");
    const float max = x.maxCoeff();
    x = (x - max).exp();
    const double sum = x.template cast<double>().sum();
    x = (x.template cast<double>() / sum).template cast<float>();
    probs.row(row).tail(span - visible).setZero();
    row_max[static_cast<std::size_t>(row)] = max;
    row_sum[static_cast<std::size_t>(row)] = sum;
  }
  const HeadMatrix full_out = probs * values.topRows(span);
  if (!full_out.allFinite()) fail_non_finite(trace, kv_head, "the attention output (probabilities x values)");
  // (recall, output error) per row, in row order so the sample order is the same for every policy.
  std::vector<std::vector<std::pair<double, double>>> samples(replays.size(),
                                                              std::vector<std::pair<double, double>>(probs.rows()));

  // Per policy, evaluation queries that share a cache snapshot are measured together: gather the
  // snapshot's probabilities and values once, one GEMM, then add the entries appended since.
  for (std::size_t p = 0; p < replays.size(); ++p) {
    if (policies[p]->compresses()) {
      measure_compressed_fidelity(model, request, prefill, trace, kv_head, eval_positions, *policies[p], *replays[p], q,
                                  probs, full_out, out[p]);
      continue;
    }
    const auto& visible = replays[p]->visible;
    const ResidencySets copies(*policies[p], model);
    const int heads_per_set = copies.heads_per_set;
    Eigen::Index first = 0;
    while (first < evals) {
      const LayerResidency* snapshot = visible[static_cast<std::size_t>(first)].snapshot;
      Eigen::Index last = first + 1;
      while (last < evals && visible[static_cast<std::size_t>(last)].snapshot == snapshot) ++last;
      for (int set = 0; set < copies.sets; ++set) {
        const int g_begin = set * heads_per_set;
        const int g_end = g_begin + heads_per_set;
        const auto& kept = (*snapshot)[copies.index(kv_head, set)];
        const auto count = static_cast<Eigen::Index>(kept.size());
        const Eigen::Index rows = heads_per_set * (last - first);
        HeadMatrix kept_probs(rows, count);
        HeadMatrix kept_values(count, d);
        for (Eigen::Index j = 0; j < count; ++j) kept_values.row(j) = values.row(kept[j]);
        for (int g = g_begin; g < g_end; ++g) {
          for (Eigen::Index e = first; e < last; ++e) {
            const Eigen::Index src = g * evals + e;
            const Eigen::Index dst = (g - g_begin) * (last - first) + (e - first);
            for (Eigen::Index j = 0; j < count; ++j) kept_probs(dst, j) = probs(src, kept[j]);
          }
        }
        HeadMatrix kept_out(rows, d);
        kept_out.noalias() = kept_probs * kept_values;
        for (int g = g_begin; g < g_end; ++g) {
          for (Eigen::Index e = first; e < last; ++e) {
            const Eigen::Index src = g * evals + e;
            const Eigen::Index dst = (g - g_begin) * (last - first) + (e - first);
            const VisibleSet& vis = visible[static_cast<std::size_t>(e)];
            double recall = kept_probs.row(dst).cast<double>().sum();
            Eigen::RowVectorXd kept_sum = kept_out.row(dst).cast<double>();
            for (std::int64_t pos = vis.append_begin; pos <= vis.position; ++pos) {
              recall += probs(src, pos);
              kept_sum += static_cast<double>(probs(src, pos)) * values.row(pos).cast<double>();
            }
            Eigen::RowVectorXd output = kept_sum / recall;
            if (!(recall >= kTinyRecall)) {
              std::vector<std::int64_t> positions(kept.begin(), kept.end());
              for (std::int64_t pos = vis.append_begin; pos <= vis.position; ++pos) positions.push_back(pos);
              const RestrictedAttention r =
                  restricted_attention(q, src, keys, values, positions, scale, row_max[static_cast<std::size_t>(src)],
                                       row_sum[static_cast<std::size_t>(src)]);
              recall = r.recall;
              output = r.output;
            }
            const Eigen::RowVectorXd reference = full_out.row(src).cast<double>();
            const double ref_norm = reference.norm();
            // A probability mass: float rounding may leave the full cache's a hair above 1.
            recall = std::clamp(recall, 0.0, 1.0);
            samples[p][static_cast<std::size_t>(src)] = {recall,
                                                         ref_norm > 0 ? (output - reference).norm() / ref_norm : 0.0};
          }
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

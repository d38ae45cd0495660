#include "sim/replay/fidelity_compressed.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvsim {

void measure_compressed_fidelity(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                                 const LayerTrace& trace, int kv_head, std::span<const std::int64_t> eval_positions,
                                 const Policy& policy, const LayerReplay& replay, const HeadMatrix& queries,
                                 const HeadMatrix& probs, const HeadMatrix& full_out, FidelitySamples& out) {
  const auto evals = static_cast<Eigen::Index>(eval_positions.size());
  const auto h = static_cast<std::size_t>(kv_head);
  const HeadMatrix& keys = trace.keys[h];
  const HeadMatrix& values = trace.values[h];
  const Eigen::Index d = keys.cols();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // Under gqa=expand each query head's copy is also compressed its own way.
  const ResidencySets copies(policy, model);
  const int heads_per_set = copies.heads_per_set;

  std::vector<std::pair<double, double>> samples(static_cast<std::size_t>(probs.rows()));
  std::vector<std::int64_t> visible;
  for (int set = 0; set < copies.sets; ++set) {
    const std::size_t index = copies.index(kv_head, set);
    const CompressedHead stored_kv = policy.compressed_head(model, request, prefill, trace, static_cast<int>(index));
    const int g_begin = set * heads_per_set;
    for (Eigen::Index e = 0; e < evals; ++e) {
      const VisibleSet& vis = replay.visible[static_cast<std::size_t>(e)];
      const auto& kept = (*vis.snapshot)[index];
      visible.assign(kept.begin(), kept.end());
      for (std::int64_t pos = vis.append_begin; pos <= vis.position; ++pos) visible.push_back(pos);
      const auto count = static_cast<Eigen::Index>(visible.size());
      // Everything but the query's own entry is stored; Policy::stored says which of it is compressed.
      const StoredEntries split = policy.stored(model, request, prefill, count - 1);
      HeadMatrix k(count, d), v(count, d);
      for (Eigen::Index j = 0; j < count; ++j) {
        const auto pos = static_cast<Eigen::Index>(visible[static_cast<std::size_t>(j)]);
        k.row(j) = j < split.key_compressed ? stored_kv.keys.row(pos) : keys.row(pos);
        v.row(j) = j < split.value_compressed ? stored_kv.values.row(pos) : values.row(pos);
      }
      HeadMatrix q(heads_per_set, d);
      for (int g = 0; g < heads_per_set; ++g) q.row(g) = queries.row((g_begin + g) * evals + e);
      HeadMatrix logits(heads_per_set, count);
      logits.noalias() = (q * scale) * k.transpose();
      if (!logits.allFinite()) fail_non_finite(trace, kv_head, "an attention logit over the stored (compressed) keys");
      for (int g = 0; g < heads_per_set; ++g) {
        const Eigen::Index row = (g_begin + g) * evals + e;
        // Max-subtracted in double: the largest term is exactly 1, so the sum is >= 1.
        Eigen::RowVectorXd p = logits.row(g).cast<double>();
        p = (p.array() - p.maxCoeff()).exp().matrix();
        p /= p.sum();
        const Eigen::RowVectorXd o = p * v.cast<double>();
        if (!o.allFinite()) fail_non_finite(trace, kv_head, "the attention output over the stored (compressed) values");
        double recall = 0.0;
        for (std::int64_t pos : visible) recall += probs(row, static_cast<Eigen::Index>(pos));
        recall = std::clamp(recall, 0.0, 1.0);  // a probability mass; float rounding may exceed 1
        const Eigen::RowVectorXd reference = full_out.row(row).cast<double>();
        const double ref_norm = reference.norm();
        samples[static_cast<std::size_t>(row)] = {recall, ref_norm > 0 ? (o - reference).norm() / ref_norm : 0.0};
      }
    }
  }
  for (const auto& [recall, error] : samples) {
    out.recall.push_back(recall);
    out.output_error.push_back(error);
  }
}

}  // namespace kvsim

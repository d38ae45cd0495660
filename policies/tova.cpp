// tova: TOVA, Token Omission Via Attention (Oren et al. 2024, arXiv 2401.06104; reference
// schwartz-lab-NLP/TOVA src/tova_cache.py, TOVACache.reduce). At each eviction point the current
// query -- the last position of the pass just processed -- scores every cached entry by its
// attention, averaged over ALL query heads of the layer, and the cache keeps the top `budget`
// entries. The set is one per layer: every KV head keeps the same positions. As in the reference,
// the current token is scored like any other entry (it is not protected) and the budget is a
// fixed cache size; kvpress's post-prefill port (kvpress/presses/tova_press.py) differs only in
// forcing the last token in.
#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "util/error.h"

namespace kvsim {

namespace {

class TovaPolicy final : public Policy {
 public:
  TovaPolicy(std::string spec, Budget budget, EvictionPoints points)
      : spec_(std::move(spec)), budget_(budget), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  // The current query of every eviction point: the last position of each pass that evicts.
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    if (points_.prefill == PrefillEviction::kChunk) {
      for (const Pass& p : prefill) positions->push_back(p.end - 1);
    } else if (points_.prefill == PrefillEviction::kPostFill) {
      positions->push_back(request.prompt_tokens - 1);
    }
    if (points_.decode_every > 0) {
      for (std::int64_t t = request.prompt_tokens; t < request.total_tokens(); ++t) positions->push_back(t);
    }
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t cap = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, 0);
    const auto size = static_cast<std::int64_t>(residency.front().size());
    if (size <= cap) return;
    for (const auto& head : residency) {
      if (head != residency.front()) throw std::logic_error("tova: KV heads of a layer hold different positions");
    }
    if (ctx.trace == nullptr) {
      for (auto& head : residency) head.erase(head.begin(), head.end() - cap);
      return;
    }
    const std::vector<float> scores = head_mean_attention(ctx, residency);
    std::vector<std::int32_t> kept;
    kept.reserve(static_cast<std::size_t>(cap));
    for (std::int32_t index : top_k_indices(scores, cap))
      kept.push_back(residency.front()[static_cast<std::size_t>(index)]);
    for (auto& head : residency) head = kept;
  }

 private:
  // Attention of the query at the pass's last position to each resident entry (it sees them all:
  // they are at or before it), averaged over every query head of the layer.
  std::vector<float> head_mean_attention(const EvictionContext& ctx, const LayerResidency& residency) const {
    const LayerTrace& trace = *ctx.trace;
    const std::int64_t position = ctx.pass.end - 1;
    const std::int64_t row = trace.query_row(position);
    if (row < 0) {
      throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                       std::to_string(position) + ", which " + spec() + " scores with");
    }
    const std::vector<std::int32_t>& resident = residency.front();
    const auto r = static_cast<Eigen::Index>(resident.size());
    const int num_q = ctx.model.num_q_heads;
    const int group = ctx.model.group_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(ctx.model.head_dim));
    std::vector<Eigen::ArrayXf> probs(static_cast<std::size_t>(num_q));
    tbb::parallel_for(0, num_q, [&](int g) {
      const HeadMatrix& keys = trace.keys[static_cast<std::size_t>(g / group)];
      Eigen::RowVectorXf q = trace.queries[static_cast<std::size_t>(g)].row(row) * scale;
      Eigen::ArrayXf x(r);
      for (Eigen::Index j = 0; j < r; ++j) x[j] = q.dot(keys.row(resident[static_cast<std::size_t>(j)]));
      x = (x - x.maxCoeff()).exp();
      probs[static_cast<std::size_t>(g)] = x / x.sum();
    });
    // Summed in head order, so the result does not depend on the thread count.
    Eigen::ArrayXf mean = Eigen::ArrayXf::Zero(r);
    for (const auto& p : probs) mean += p;
    mean /= static_cast<float>(num_q);
    return std::vector<float>(mean.data(), mean.data() + r);
  }

  std::string spec_;
  Budget budget_;
  EvictionPoints points_;
};

}  // namespace

void register_tova(PolicyRegistry& registry) {
  registry.add({"tova",
                "TOVA: the current query's attention, averaged over all query heads of the layer, keeps the top "
                "entries; one fixed-size set per layer",
                "Oren et al. 2024, Transformers are Multi-State RNNs (arXiv 2401.06104); schwartz-lab-NLP/TOVA "
                "src/tova_cache.py; NVIDIA/kvpress kvpress/presses/tova_press.py",
                {{"budget", "0.2", "fraction (<1) of the prompt, or a token count (>=1): the fixed cache size"},
                 {"prefill", "post_fill",
                  "post_fill (once after the prompt, scored by its last query) | chunk (after "
                  "every prefill chunk, by the chunk's last query) | none"},
                 {"decode", "step", "none|step|every:K|length:K (the cache size stays the one reached at the end of prefill)"}},
                [](PolicyArgs& args) -> std::unique_ptr<Policy> {
                  const Budget budget = Budget::read(args, "budget");
                  const auto points = read_eviction_points(args);
                  return std::make_unique<TovaPolicy>(args.canonical(), budget, points);
                }});
}

}  // namespace kvsim

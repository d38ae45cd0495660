// morphkv: MorphKV, a constant-size cache refreshed at every decode step (Ghadia et al. 2025, "Dialogue
// without Limits: Constant-Sized KV Caches for Extended Responses in LLMs"; reference
// ghadiaravi13/MorphKV morphkv/models/patch_llama.py, LlamaAttentionMorph.morphkv_mask and forward).
// At each eviction point the current token and the `window` tokens before it are kept, and their
// window queries pick the rest: per query the softmax of q.k/sqrt(d) over the other resident entries
// (GQA: the group's logits SUMMED before the softmax, as the reference), aggregated over the window
// queries by max (morph_type max) or sum (sum); the top entries fill the fixed capacity. The
// reference's fused variants (non-selected entries averaged into one) are not modelled: kvsim
// counts entries, and a fused entry would keep one slot.
//
// Like the original (forward: `if hidden_states.shape[1]==1`, i.e. decode only), the default
// evicts at every decode step and never during prefill (prefill=none): the first eviction is at the
// first decode step, scored by the last `window` prompt queries. prefill=post_fill|chunk are kvsim
// extensions. The reference default of morph_type is not fixed in code (it is a run option); its
// LongBench runs use window sizes 8..256; the defaults here are window=32, aggregate=max.
// Against the reference (docs/policy-sources.md "MorphKV"): `budget` counts every kept entry, window
// and current token included, so budget=B is the reference's max_capacity = B - 1; the reference's
// eviction already masks the attention of the token that triggers it, kvsim's takes effect after
// that pass (DESIGN.md §2); with GQA the reference's cached window-attention rows are pruned per
// query head while its KV cache is pruned per KV head (see the docs for what that changes).
#include <cmath>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"
#include "util/error.h"

namespace kvsim {

namespace {

class MorphKvPolicy final : public Policy {
 public:
  MorphKvPolicy(std::string spec, Budget budget, std::int64_t window, bool max_aggregate, EvictionPoints points)
      : spec_(std::move(spec)), budget_(budget), window_(window), max_aggregate_(max_aggregate), points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  // The window queries precede the current token: the last window + 1 positions of each pass cover them.
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_ + 1, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t protect = window_ + 1;  // the window and the current token
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, protect);
    const std::int64_t window_begin = snapkv_window_begin(ctx, protect, points_.prefill);
    evict_heads_keeping_window(ctx, residency, capacity, window_begin, /*sinks=*/0,
                               [&](int h, std::span<const std::int32_t> resident, std::int64_t recent) {
                                 return head_scores(ctx, h, resident, recent);
                               });
  }

 private:
  // Scores of the entries before the last `recent`, from the queries of those recent entries
  // except the newest (the current token).
  std::vector<float> head_scores(const EvictionContext& ctx, int h, std::span<const std::int32_t> resident,
                                 std::int64_t recent) const {
    const LayerTrace& trace = *ctx.trace;
    const auto prefix = static_cast<Eigen::Index>(resident.size()) - recent;
    const Eigen::Index nq = recent - 1;
    std::vector<float> out(static_cast<std::size_t>(prefix), 0.0f);
    if (nq <= 0 || prefix <= 0) return out;
    const HeadMatrix keys =
        gather_rows(trace.keys[static_cast<std::size_t>(h)], resident.first(static_cast<std::size_t>(prefix)));
    const int group = ctx.model.group_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(ctx.model.head_dim));
    Eigen::MatrixXf logits = Eigen::MatrixXf::Zero(nq, prefix);
    for (int g = h * group; g < (h + 1) * group; ++g) {
      HeadMatrix q(nq, keys.cols());
      for (Eigen::Index i = 0; i < nq; ++i) {
        const std::int64_t t = resident[static_cast<std::size_t>(prefix + i)];
        const std::int64_t row = trace.query_row(t);
        if (row < 0)
          throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                           std::to_string(t) + ", which " + spec() + " scores with");
        q.row(i) = trace.queries[static_cast<std::size_t>(g)].row(row) * scale;
      }
      logits.noalias() += q * keys.transpose();  // summed over the group, in head order
    }
    Eigen::ArrayXd agg = Eigen::ArrayXd::Constant(prefix, max_aggregate_ ? -1.0 : 0.0);
    for (Eigen::Index i = 0; i < nq; ++i) {
      Eigen::ArrayXd x = logits.row(i).transpose().cast<double>().array();
      x = (x - x.maxCoeff()).exp();
      x /= x.sum();
      if (max_aggregate_) {
        agg = agg.max(x);
      } else {
        agg += x;
      }
    }
    for (Eigen::Index j = 0; j < prefix; ++j) out[static_cast<std::size_t>(j)] = static_cast<float>(agg[j]);
    return out;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t window_;
  bool max_aggregate_;
  EvictionPoints points_;
};

}  // namespace

void register_morphkv(PolicyRegistry& registry) {
  registry.add(
      {"morphkv",
       "MorphKV: constant-size cache; the recent window's queries keep the entries they attend to most, "
       "refreshed at every decode step",
       "Ghadia et al. 2025, Dialogue without Limits: Constant-Sized KV Caches for Extended Responses in LLMs "
       "; ghadiaravi13/MorphKV morphkv/models/patch_llama.py (morphkv_mask)",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the window and current token, or a token count "
         "(>=1) incl. them (max_capacity)"},
        {"window", "32",
         "recent tokens (before the current one) always kept; their queries score the rest (window_size)"},
        {"aggregate", "max", "max|sum over the window queries of their attention (morph_type)"},
        {"prefill", "none", "none (decode only, as the original) | post_fill | chunk (after every prefill chunk)"},
        {"decode", "step", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t window = args.get_int("window");
         const bool max_aggregate = args.get_choice("aggregate", {"max", "sum"}) == "max";
         const auto points = read_eviction_points(args);
         if (window < 1) args.fail("window", "must be >= 1");
         if (!budget.is_fraction && budget.tokens <= window + 1) {
           args.fail("budget", "a token budget must exceed the window plus the current token (" +
                                   std::to_string(window + 1) + ")");
         }
         return std::make_unique<MorphKvPolicy>(args.canonical(), budget, window, max_aggregate, points);
       }});
}

}  // namespace kvsim

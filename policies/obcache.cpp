// obcache: OBCache, optimal-brain-damage saliency of cached entries (2025; the paper was not read here;
// code read: its functionality-equivalent derivative MalachiAjayi/kv-cache-pruner @fc1779f,
// kv_cache_pruner/cache_utils.py KVScoreTracker v_update / k_update with p = 2, and
// kv_cache_pruner/monkey_patch/llama.py llama_flashattention2_forward). The perturbation window -- the
// last `window` queries, whose entries are kept -- attends causally to the resident entries with
// probabilities A[i,j], logits l[i,j] = q.k/sqrt(d) and outputs o_i = sum_j A[i,j] v_j; the output
// change from pruning entry j is scored as
//   value: sum_i A[i,j]^2 * ||v_j||^2                                (obcV, use_vnorm)
//   key:   sum_i (A[i,j] l[i,j])^2 * ||v_j - o_i||^2                 (obcK)
//   both:  value + key + sum_i 2 A[i,j]^2 l[i,j] (||v_j||^2 - v_j.o_i)   (obcVK, use_cross)
// GQA (gqa=expand, the default): llama.py repeats K and V per query head (repeat_kv) BEFORE
// past_key_value.update, so the cache holds one copy of each KV head per query head and the score
// tracker and top-k run per query head: each query head keeps its own sinks, window and
// highest-saliency others, and the cache holds G x the entries of a per-KV-head cache
// (Policy::kv_copies). gqa=mean|max: one cache per KV head, saliency averaged / maximised over the
// group (kvsim's earlier variant is mean). Scores come from the window at each eviction point (the
// reference's prefill scoring, ptb_window = num_recent); its accumulation of decode-step scores is
// not modelled.
#include <cmath>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

enum class Saliency { kValue, kKey, kBoth };

class ObCachePolicy final : public Policy {
 public:
  ObCachePolicy(std::string spec, Budget budget, std::int64_t window, std::int64_t sinks, Saliency saliency, bool vnorm,
                GqaMode gqa, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        window_(window),
        sinks_(sinks),
        saliency_(saliency),
        vnorm_(vnorm),
        gqa_(gqa),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  int kv_copies(const ModelShape& model) const override { return gqa_copies(gqa_, model); }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_ + sinks_);
    const std::int64_t window_begin = snapkv_window_begin(ctx, window_, points_.prefill);
    evict_heads_keeping_window(ctx, residency, capacity, window_begin, sinks_,
                               [&](int h, std::span<const std::int32_t> resident, std::int64_t window) {
                                 return head_scores(ctx, h, resident, window);
                               });
  }

 private:
  // Saliency of residency vector `index`'s entries before the window (size resident.size() - window):
  // its query head's under gqa=expand, the group's mean or maximum otherwise.
  std::vector<float> head_scores(const EvictionContext& ctx, int index, std::span<const std::int32_t> resident,
                                 std::int64_t window) const {
    const GqaScoredHeads heads = gqa_scored_heads(gqa_, ctx.model, index);
    const LayerTrace& trace = *ctx.trace;
    const auto prefix = static_cast<Eigen::Index>(resident.size()) - window;
    const HeadMatrix keys = gather_rows(trace.keys[static_cast<std::size_t>(heads.kv_head)], resident);
    const Eigen::MatrixXd values =
        gather_rows(trace.values[static_cast<std::size_t>(heads.kv_head)], resident).cast<double>();
    const std::vector<std::int64_t> rows = window_query_rows(ctx, *this, resident, window);
    std::vector<double> total;
    for (int k = 0; k < heads.query_heads; ++k) {
      const Eigen::ArrayXd s = query_head_saliency(window_queries(ctx, heads.first_query_head + k, rows, 1.0f), keys,
                                                   values, prefix, ctx.model.head_dim);
      gqa_combine(gqa_, std::span<const double>(s.data(), static_cast<std::size_t>(s.size())), k == 0,
                  k + 1 == heads.query_heads, heads.query_heads, total);
    }
    return std::vector<float>(total.begin(), total.end());
  }

  // One query head's saliency of the first `prefix` gathered entries, its window queries `q` being
  // the last rows of the gathered keys' positions.
  Eigen::ArrayXd query_head_saliency(const HeadMatrix& q, const HeadMatrix& keys, const Eigen::MatrixXd& values,
                                     Eigen::Index prefix, int head_dim) const {
    const Eigen::Index window = q.rows();
    const Eigen::Index r = keys.rows();
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    // All window queries at once, as GEMMs: A [window x r] (causal: query i sees the prefix and
    // window entries up to i), O = A V, and v_j.o_i for the prefix entries.
    const Eigen::MatrixXd logits = (q * keys.transpose()).cast<double>() * scale;
    Eigen::MatrixXd attention = Eigen::MatrixXd::Zero(window, r);
    for (Eigen::Index i = 0; i < window; ++i) {
      const Eigen::Index visible = prefix + i + 1;
      const auto l = logits.row(i).head(visible).array();
      auto a = attention.row(i).head(visible).array();
      a = (l - l.maxCoeff()).exp();
      a /= a.sum();
    }
    const Eigen::MatrixXd outputs = attention * values;                                 // [window x d]
    const Eigen::ArrayXXd vo = (outputs * values.topRows(prefix).transpose()).array();  // [window x prefix]
    const Eigen::ArrayXXd ap = attention.leftCols(prefix).array();
    const Eigen::ArrayXXd lp = logits.leftCols(prefix).array();
    const Eigen::ArrayXXd a2 = ap.square();
    const Eigen::RowVectorXd vv = values.topRows(prefix).rowwise().squaredNorm().transpose();
    Eigen::ArrayXd total = Eigen::ArrayXd::Zero(prefix);
    if (saliency_ != Saliency::kKey) {
      const Eigen::ArrayXd a2_sum = a2.colwise().sum().transpose();
      total += vnorm_ ? Eigen::ArrayXd(a2_sum * vv.transpose().array()) : a2_sum;
    }
    if (saliency_ != Saliency::kValue) {
      // ||v_j - o_i||^2 = ||v_j||^2 + ||o_i||^2 - 2 v_j.o_i
      Eigen::ArrayXXd distance = -2.0 * vo;
      distance.rowwise() += vv.array();
      distance.colwise() += outputs.rowwise().squaredNorm().array();
      total += ((ap * lp).square() * distance).colwise().sum().transpose();
    }
    if (saliency_ == Saliency::kBoth) {
      Eigen::ArrayXXd cross = -vo;
      cross.rowwise() += vv.array();
      total += (2.0 * a2 * lp * cross).colwise().sum().transpose();
    }
    return total;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t window_;
  std::int64_t sinks_;
  Saliency saliency_;
  bool vnorm_;
  GqaMode gqa_;
  EvictionPoints points_;
};

}  // namespace

void register_obcache(PolicyRegistry& registry) {
  registry.add(
      {"obcache",
       "OBCache: keep the entries whose removal would perturb the window's attention outputs most "
       "(optimal-brain-damage saliency of values, keys or both). GQA: the authors' code selects per query head "
       "(gqa=expand, the default: G copies of each KV head)",
       "OBCache (2025; paper not read here); MalachiAjayi/kv-cache-pruner @fc1779f (a functionality-equivalent "
       "derivative of the OBCache repository): kv_cache_pruner/cache_utils.py (KVScoreTracker), "
       "kv_cache_pruner/monkey_patch/llama.py (repeat_kv before the cache update)",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the window and sinks, or a token count (>=1) incl. them"},
        {"window", "32", "perturbation window: the most recent entries, always kept; their queries score the rest"},
        {"sinks", "0", "first entries always kept (num_sink)"},
        {"saliency", "both", "value (obcV) | key (obcK) | both (obcVK, with the cross term)"},
        {"vnorm", "yes", "yes|no: weigh the value saliency by ||v||^2 (use_vnorm)"},
        {"gqa", "expand",
         "expand (the authors' code: K/V repeated per query head before caching, each query head keeps its own "
         "selection; G x the entries in footprint and bytes) | mean | max (one cache per KV head, saliency "
         "averaged / maximised over the group)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t window = args.get_int("window");
         const std::int64_t sinks = args.get_int("sinks");
         const std::string saliency = args.get_choice("saliency", {"value", "key", "both"});
         const bool vnorm = args.get_choice("vnorm", {"yes", "no"}) == "yes";
         const GqaMode gqa = read_gqa(args);
         const auto points = read_eviction_points(args);
         if (window < 1) args.fail("window", "must be >= 1");
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (!budget.is_fraction && budget.tokens <= window + sinks) {
           args.fail("budget",
                     "a token budget must exceed the window plus the sinks (" + std::to_string(window + sinks) + ")");
         }
         const Saliency s = saliency == "value" ? Saliency::kValue
                            : saliency == "key" ? Saliency::kKey
                                                : Saliency::kBoth;
         return std::make_unique<ObCachePolicy>(args.canonical(), budget, window, sinks, s, vnorm, gqa, points);
       }});
}

}  // namespace kvsim

// rkv: R-KV, redundancy-aware KV compression for long decodes (Cai et al. 2025; the paper id was not
// verified here; reference Zefan-Cai/R-KV
// rkv/compression/r1_kv.py (R1KV) and rkv/utils.py (compute_attention_scores, cal_similarity)).
// Each KV head keeps its last `window` entries plus the top of the others by
//   final = mix_lambda * importance - (1 - mix_lambda) * redundancy
//   importance: the window queries' logits q.k/sqrt(d), pooled over the GQA group (max, the
//     reference default; or mean) BEFORE the softmax, softmax over the non-window keys only, mean
//     over the window queries, then max_pool1d(kernel);
//   redundancy: cosine similarities C = kn kn^T of the unit keys (k / (||k|| + 1e-8)) of all resident
//     entries with the diagonal zeroed; in every row t the LAST column j with C[t,j] > threshold is
//     zeroed (the newest near-duplicate is spared), or column 0 if there is none (as the reference's
//     max over where(mask, j, 0)); then the column means over the rows, softmax over the entries.
// R1KV (run_math.py defaults: divide_method=step_length, divide_length=128) compacts after the
// prompt and in every decode step whose token lands at a position that is a multiple of 128
// (rkv/modeling.py: `self.length % divide_length == 0` sets the next step's compression flag), so
// the default here is decode=length:128: the first decode compaction comes within 128 steps of the
// prompt's end, wherever that falls, and the cache oscillates between the capacity and
// capacity + 127. decode=every:128 counts steps from the prompt's end instead (kvsim's earlier
// default; the same when the prompt is a multiple of 128 but for one step). Its
// retain_direction=first is degenerate (always column 0) and is not offered.
//
// Cost: the column means need only sum_t kn_t (a rank-one identity) and the spared entry of each
// row; finding that entry scans C from the newest column backwards in blocks and stops at the first
// hit, so near-duplicate keys are cheap and a head without any costs the full O(L^2 d).
#include <tbb/parallel_for.h>
#include <cmath>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class RkvPolicy final : public Policy {
 public:
  RkvPolicy(std::string spec, Budget budget, std::int64_t window, int kernel, double mix_lambda, double threshold,
            bool max_group, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        window_(window),
        kernel_(kernel),
        mix_lambda_(mix_lambda),
        threshold_(threshold),
        max_group_(max_group),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_);
    const std::int64_t window_begin = snapkv_window_begin(ctx, window_, points_.prefill);
    evict_heads_keeping_window(ctx, residency, capacity, window_begin, /*sinks=*/0,
                               [&](int h, std::span<const std::int32_t> resident, std::int64_t window) {
                                 return head_scores(ctx, h, resident, window);
                               });
  }

 private:
  std::vector<float> head_scores(const EvictionContext& ctx, int h, std::span<const std::int32_t> resident,
                                 std::int64_t window) const {
    const HeadMatrix keys = gather_rows(ctx.trace->keys[static_cast<std::size_t>(h)], resident);
    const Eigen::ArrayXd importance = pooled_importance(ctx, h, resident, keys, window);
    const Eigen::ArrayXd redundancy = redundancy_scores(keys);
    const Eigen::Index prefix = importance.size();
    std::vector<float> out(static_cast<std::size_t>(prefix));
    for (Eigen::Index j = 0; j < prefix; ++j) {
      out[static_cast<std::size_t>(j)] =
          static_cast<float>(mix_lambda_ * importance[j] - (1.0 - mix_lambda_) * redundancy[j]);
    }
    return out;
  }

  // Softmax over the non-window keys of the group-pooled window logits, mean over the window, max-pooled.
  Eigen::ArrayXd pooled_importance(const EvictionContext& ctx, int h, std::span<const std::int32_t> resident,
                                   const HeadMatrix& keys, std::int64_t window) const {
    const auto prefix = static_cast<Eigen::Index>(resident.size()) - window;
    const int group = ctx.model.group_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(ctx.model.head_dim));
    const auto nonwindow = keys.topRows(prefix);
    const std::vector<std::int64_t> rows = window_query_rows(ctx, *this, resident, window);
    Eigen::MatrixXf pooled;
    for (int g = h * group; g < (h + 1) * group; ++g) {
      const Eigen::MatrixXf logits = window_queries(ctx, g, rows, scale) * nonwindow.transpose();
      if (g == h * group) {
        pooled = logits;
      } else if (max_group_) {
        pooled = pooled.cwiseMax(logits);
      } else {
        pooled += logits;
      }
    }
    if (!max_group_) pooled /= static_cast<float>(group);
    Eigen::ArrayXd mean = Eigen::ArrayXd::Zero(prefix);
    for (Eigen::Index i = 0; i < window; ++i) {
      Eigen::ArrayXd x = pooled.row(i).transpose().cast<double>().array();
      x = (x - x.maxCoeff()).exp();
      mean += x / x.sum();
    }
    mean /= static_cast<double>(window);
    const std::vector<float> a(mean.begin(), mean.end());
    const std::vector<float> p = max_pool(a, kernel_);
    Eigen::ArrayXd out(prefix);
    for (Eigen::Index j = 0; j < prefix; ++j) out[j] = p[static_cast<std::size_t>(j)];
    return out;
  }

  // cal_similarity of the reference for the resident keys: softmax over entries of the column
  // means of C with its diagonal and each row's spared entry zeroed.
  Eigen::ArrayXd redundancy_scores(const HeadMatrix& keys) const {
    const Eigen::Index n = keys.rows();
    HeadMatrix kn(n, keys.cols());
    for (Eigen::Index t = 0; t < n; ++t) kn.row(t) = keys.row(t) / (keys.row(t).norm() + 1e-8f);
    // Spared column of every row and C there, rows in blocks, columns scanned newest first.
    std::vector<Eigen::Index> spared(static_cast<std::size_t>(n), 0);
    std::vector<float> spared_value(static_cast<std::size_t>(n), 0.0f);
    constexpr Eigen::Index kRows = 256, kCols = 1024;
    const Eigen::Index row_blocks = (n + kRows - 1) / kRows;
    tbb::parallel_for(Eigen::Index{0}, row_blocks, [&](Eigen::Index b) {
      const Eigen::Index r0 = b * kRows, r1 = std::min(n, r0 + kRows);
      std::vector<Eigen::Index> open;
      for (Eigen::Index t = r0; t < r1; ++t) open.push_back(t);
      for (Eigen::Index c1 = n; c1 > 0 && !open.empty(); c1 -= kCols) {
        const Eigen::Index c0 = std::max<Eigen::Index>(0, c1 - kCols);
        HeadMatrix rows(static_cast<Eigen::Index>(open.size()), kn.cols());
        for (std::size_t i = 0; i < open.size(); ++i) rows.row(static_cast<Eigen::Index>(i)) = kn.row(open[i]);
        const Eigen::MatrixXf c = rows * kn.middleRows(c0, c1 - c0).transpose();
        std::vector<Eigen::Index> still;
        for (std::size_t i = 0; i < open.size(); ++i) {
          const Eigen::Index t = open[i];
          bool found = false;
          for (Eigen::Index j = c1 - 1; j >= c0; --j) {
            if (j != t && c(static_cast<Eigen::Index>(i), j - c0) > threshold_) {
              spared[static_cast<std::size_t>(t)] = j;
              spared_value[static_cast<std::size_t>(t)] = c(static_cast<Eigen::Index>(i), j - c0);
              found = true;
              break;
            }
          }
          if (!found) still.push_back(t);
        }
        open = std::move(still);
      }
      // No near-duplicate: the reference zeroes column 0 of the row (0 already on the diagonal).
      for (Eigen::Index t : open) {
        spared[static_cast<std::size_t>(t)] = 0;
        spared_value[static_cast<std::size_t>(t)] = t == 0 ? 0.0f : kn.row(t).dot(kn.row(0));
      }
    });
    // Column sums: (sum_t kn_t).kn_j minus the diagonal minus the spared entries (summed in row order).
    const Eigen::RowVectorXd total = kn.cast<double>().colwise().sum();
    Eigen::ArrayXd column(n);
    for (Eigen::Index j = 0; j < n; ++j) {
      const Eigen::RowVectorXd kj = kn.row(j).cast<double>();
      column[j] = total.dot(kj) - kj.squaredNorm();
    }
    for (Eigen::Index t = 0; t < n; ++t)
      column[spared[static_cast<std::size_t>(t)]] -= spared_value[static_cast<std::size_t>(t)];
    column /= static_cast<double>(n);
    Eigen::ArrayXd e = (column - column.maxCoeff()).exp();
    return e / e.sum();
  }

  std::string spec_;
  Budget budget_;
  std::int64_t window_;
  int kernel_;
  double mix_lambda_;
  double threshold_;
  bool max_group_;
  EvictionPoints points_;
};

}  // namespace

void register_rkv(PolicyRegistry& registry) {
  registry.add(
      {"rkv",
       "R-KV: keep the window plus the entries with the best mix of window attention and low key redundancy "
       "(cosine similarity to the other keys); made for long decodes",
       "R-KV: redundancy-aware KV cache compression for reasoning models (Cai et al. 2025); "
       "Zefan-Cai/R-KV rkv/compression/r1_kv.py (R1KV), rkv/utils.py (cal_similarity)",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"window", "8", "most recent entries always kept; their queries score the others (window_size)"},
        {"kernel", "7", "max-pooling kernel along positions (odd; kernel_size)"},
        {"mix_lambda", "0.07", "weight of the attention importance; 1 - mix_lambda weighs the redundancy"},
        {"threshold", "0.5", "cosine similarity above which a key counts as a near-duplicate of another"},
        {"group_pooling", "max", "max|mean: how the GQA group's logits are pooled before the softmax"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "length:128",
         "none|step|every:K|length:K: R1KV compacts in the decode step whose token lands at a multiple "
         "of divide_length = 128 (length:128; every:K counts decode steps instead); each compaction "
         "returns the cache to the capacity reached at the end of prefill"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t window = args.get_int("window");
         const int kernel = read_pool_kernel(args, "kernel");
         const double mix_lambda = args.get_double("mix_lambda");
         const double threshold = args.get_double("threshold");
         const bool max_group = args.get_choice("group_pooling", {"max", "mean"}) == "max";
         const auto points = read_eviction_points(args);
         if (window < 1) args.fail("window", "must be >= 1");
         if (!(mix_lambda >= 0.0 && mix_lambda <= 1.0)) args.fail("mix_lambda", "must be in [0, 1]");
         if (!(threshold >= -1.0 && threshold <= 1.0)) args.fail("threshold", "must be a cosine in [-1, 1]");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<RkvPolicy>(args.canonical(), budget, window, kernel, mix_lambda, threshold, max_group,
                                            points);
       }});
}

}  // namespace kvsim

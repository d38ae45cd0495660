// expected_attention: ExpectedAttention (NVIDIA/kvpress kvpress/presses/expected_attention_press.py,
// ExpectedAttentionPress; policy-notes.md "ExpectedAttention"). Scores each cached entry by the
// attention that FUTURE queries are expected to pay it: the pre-RoPE queries of the pass(es) just
// processed are summarised by their mean mu and (biased) covariance Sigma per query head, the RoPE
// rotation is averaged over the next `future` positions (Rbar), and with the rotated statistics
// mu' = Rbar mu, Sigma' = Rbar Sigma Rbar^T a key k gets
//   z = mu'.k / sqrt(d) + k^T Sigma' k / (2 d)        (the log of E[exp(q.k/sqrt d)] for Gaussian q)
//   e = softmax over the scored keys, mean over the GQA group, times ||v|| (use_vnorm).
// The first `sinks` entries are kept (kvpress pads them with the maximum score).
//
// Which queries: the reference takes the hidden states of the forward it compresses after (all of
// the prompt after prefill, one chunk in chunked prefill, the buffered steps of DecodingPress), so
// kvsim takes the queries of the passes since the previous eviction point: the prompt (post_fill),
// the chunk (chunk), the last K steps (decode=every:K). Trace queries are post-RoPE, so they are
// rotated back by their own position with the model's own frequencies (rope_theta and rope_scaling,
// traces/rope.h; kvpress uses the model's rotary_emb), which Rbar uses too. kvpress drops the first n_sink hidden
// states of every forward; kvsim drops the queries at positions < sinks (the sequence's sinks), which is the same after
// the prompt. The future positions start at the pass end (kvpress: at q_len, the same after the prompt).
// stats_queries=N uses only the last N of those queries (a cheaper trace; default: all, exact).
//
// Cost per eviction and KV head: the statistics O(N d^2) per query head, the scores one
// [resident x d] x [d x d] GEMM per query head. Float32 GEMMs, double statistics.
#include <tbb/parallel_for.h>
#include <charconv>
#include <cmath>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "traces/rope.h"
#include "util/error.h"

namespace kvsim {

namespace {

struct QueryStats {
  Eigen::VectorXd mean;        // pre-RoPE query mean, [d]
  Eigen::MatrixXd covariance;  // biased (1/N), [d, d]; zero with covariance=no
};

class ExpectedAttentionPolicy final : public Policy {
 public:
  ExpectedAttentionPolicy(std::string spec, Budget budget, std::int64_t sinks, std::int64_t future, bool covariance,
                          bool vnorm, double epsilon, std::int64_t stats_queries, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        sinks_(sinks),
        future_(future),
        covariance_(covariance),
        vnorm_(vnorm),
        epsilon_(epsilon),
        stats_queries_(stats_queries),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    auto add = [&](std::int64_t begin, std::int64_t end) {
      const auto [a, b] = stats_range(begin, end);
      for (std::int64_t t = a; t < b; ++t) positions->push_back(t);
    };
    if (points_.prefill == PrefillEviction::kChunk) {
      for (const Pass& p : prefill) add(p.begin, p.end);
    } else if (points_.prefill == PrefillEviction::kPostFill) {
      add(0, request.prompt_tokens);
    }
    if (points_.decode_every > 0) {
      // Every decode step's query (each eviction uses the last decode_every of them).
      for (std::int64_t t = request.prompt_tokens; t < request.total_tokens(); ++t) positions->push_back(t);
    }
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, sinks_);
    if (ctx.trace == nullptr) {
      keep_newest(residency, capacity);  // untraced layer: only the count matters
      return;
    }
    const auto [first, last] = eviction_range(ctx);
    // Plain variables, not a structured binding: the lambda below captures them (clang 14 refuses
    // to capture structured bindings).
    const auto stats = stats_range(first, last);
    const auto a = std::get<0>(stats);
    const auto b = std::get<1>(stats);
    const Rotation rot = average_rotation(ctx.model, ctx.pass.end);
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      if (size <= capacity) return;
      const ProtectedEnds ends = ProtectedEnds{sinks_, 0}.clipped(size);
      const std::vector<float> scores = head_scores(ctx, static_cast<int>(h), resident, ends.sinks, a, b, rot);
      resident = keep_ends_and_top(resident, scores, ends, capacity);
    });
  }

 private:
  // Mean over the future positions of cos and sin of each RoPE pair's angle.
  struct Rotation {
    Eigen::VectorXd cos, sin;  // [d/2]
  };

  // Closed form of (1/F) sum_{p=a}^{a+F-1} e^{i f p} = e^{i f (a + (F-1)/2)} sin(f F / 2) / (F sin(f / 2)):
  // O(1) in F (a loop over F = 10^12 positions hung), and no rounding error growing with F.
  Rotation average_rotation(const ModelShape& model, std::int64_t first_future) const {
    const std::vector<double> inv_freq = rope_inv_freq(model);  // the model's own (scaled) RoPE
    const auto pairs = static_cast<Eigen::Index>(inv_freq.size());
    const auto count = static_cast<double>(future_);
    const double centre = static_cast<double>(first_future) + (count - 1.0) / 2.0;
    Rotation r{Eigen::VectorXd::Zero(pairs), Eigen::VectorXd::Zero(pairs)};
    for (Eigen::Index i = 0; i < pairs; ++i) {
      const double f = inv_freq[static_cast<std::size_t>(i)];
      const double half = std::sin(f / 2.0);
      // f < 2 pi for RoPE, so sin(f/2) vanishes only as f -> 0, where every term is 1.
      const double dirichlet = std::abs(half) < 1e-12 ? 1.0 : std::sin(f * count / 2.0) / (count * half);
      r.cos[i] = std::cos(f * centre) * dirichlet;
      r.sin[i] = std::sin(f * centre) * dirichlet;
    }
    return r;
  }

  // The passes since the previous eviction point: [first, last) positions.
  std::pair<std::int64_t, std::int64_t> eviction_range(const EvictionContext& ctx) const {
    if (!ctx.pass.prefill)
      return {std::max<std::int64_t>(ctx.request.prompt_tokens, ctx.pass.end - points_.decode_every), ctx.pass.end};
    if (points_.prefill == PrefillEviction::kChunk) return {ctx.pass.begin, ctx.pass.end};
    return {0, ctx.pass.end};
  }
  // Of [begin, end): the query positions the statistics use (no sinks; the last stats_queries).
  std::pair<std::int64_t, std::int64_t> stats_range(std::int64_t begin, std::int64_t end) const {
    std::int64_t a = std::max(begin, sinks_);
    if (stats_queries_ > 0) a = std::max(a, end - stats_queries_);
    return {std::min(a, end), end};
  }

  QueryStats query_stats(const EvictionContext& ctx, int g, std::int64_t a, std::int64_t b) const {
    const LayerTrace& trace = *ctx.trace;
    const int d = ctx.model.head_dim;
    const std::vector<double> inv_freq = rope_inv_freq(ctx.model);  // the model's own (scaled) RoPE
    Eigen::MatrixXd q(b - a, d);
    for (std::int64_t t = a; t < b; ++t) {
      const std::int64_t row = trace.query_row(t);
      if (row < 0)
        throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                         std::to_string(t) + ", which " + spec() + " takes statistics of");
      Eigen::RowVectorXf x = trace.queries[static_cast<std::size_t>(g)].row(row);
      apply_rope(x.data(), d, -t, inv_freq);  // back to pre-RoPE
      q.row(t - a) = x.cast<double>();
    }
    QueryStats s{Eigen::VectorXd::Zero(d), Eigen::MatrixXd::Zero(d, d)};
    if (q.rows() == 0) return s;
    s.mean = q.colwise().mean().transpose();
    if (covariance_) {
      q.rowwise() -= s.mean.transpose();
      s.covariance = (q.transpose() * q) / static_cast<double>(q.rows());
    }
    return s;
  }

  // Scores of resident[sinks..]: expected attention averaged over the group, times ||v||.
  std::vector<float> head_scores(const EvictionContext& ctx, int h, std::span<const std::int32_t> resident,
                                 std::int64_t sinks, std::int64_t a, std::int64_t b, const Rotation& rot) const {
    const LayerTrace& trace = *ctx.trace;
    const int d = ctx.model.head_dim;
    const int half = d / 2;
    const auto n = static_cast<Eigen::Index>(resident.size()) - sinks;
    if (n <= 0) return {};  // every resident entry is a protected sink: nothing to score
    // u = Rbar^T k, so that mu'.k = mu.u and k^T Sigma' k = u^T Sigma u.
    Eigen::MatrixXf u(n, d);
    for (Eigen::Index j = 0; j < n; ++j) {
      const auto k = trace.keys[static_cast<std::size_t>(h)].row(resident[static_cast<std::size_t>(sinks + j)]);
      for (int i = 0; i < half; ++i) {
        const double c = rot.cos[i], s = rot.sin[i];
        u(j, i) = static_cast<float>(c * k[i] + s * k[i + half]);
        u(j, i + half) = static_cast<float>(-s * k[i] + c * k[i + half]);
      }
    }
    const int group = ctx.model.group_size();
    Eigen::ArrayXd mean_prob = Eigen::ArrayXd::Zero(n);
    for (int g = h * group; g < (h + 1) * group; ++g) {
      const QueryStats st = query_stats(ctx, g, a, b);
      Eigen::ArrayXd z = (u * st.mean.cast<float>()).cast<double>().array() / std::sqrt(static_cast<double>(d));
      if (covariance_) {
        const Eigen::MatrixXf us = u * st.covariance.cast<float>();
        z += us.cwiseProduct(u).rowwise().sum().cast<double>().array() / (2.0 * d);
      }
      Eigen::ArrayXd e = (z - z.maxCoeff()).exp();
      mean_prob += e / e.sum();
    }
    mean_prob /= static_cast<double>(group);
    std::vector<float> scores(static_cast<std::size_t>(n));
    for (Eigen::Index j = 0; j < n; ++j) {
      double s = mean_prob[j];
      if (vnorm_) {
        s = (s + epsilon_) * trace.values[static_cast<std::size_t>(h)]
                                 .row(resident[static_cast<std::size_t>(sinks + j)])
                                 .cast<double>()
                                 .norm();
      }
      scores[static_cast<std::size_t>(j)] = static_cast<float>(s);
    }
    return scores;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t sinks_;
  std::int64_t future_;
  bool covariance_;
  bool vnorm_;
  double epsilon_;
  std::int64_t stats_queries_;  // 0: all
  EvictionPoints points_;
};

bool read_yes_no(PolicyArgs& args, const std::string& key) { return args.get_choice(key, {"yes", "no"}) == "yes"; }

}  // namespace

void register_expected_attention(PolicyRegistry& registry) {
  registry.add(
      {"expected_attention",
       "ExpectedAttention: keep the entries that future queries, modelled as a Gaussian fitted to the recent "
       "pre-RoPE queries and rotated over the next positions, are expected to attend to most (times ||v||)",
       "Expected Attention (NVIDIA kvpress, 2025; paper id not verified here); NVIDIA/kvpress "
       "kvpress/presses/expected_attention_press.py (ExpectedAttentionPress)",
       {{"budget", "0.2", "fraction (<1) of the prompt kept besides the sinks, or a token count (>=1) incl. them"},
        {"sinks", "4", "first entries always kept and left out of the query statistics (n_sink)"},
        {"future", "512", "future positions the RoPE rotation is averaged over (n_future_positions), tokens"},
        {"covariance", "yes", "yes|no: add the query covariance term k^T Sigma' k / (2d) (use_covariance)"},
        {"vnorm", "yes", "yes|no: multiply by the value norm (use_vnorm)"},
        {"epsilon", "0", "added to the score before the value-norm scaling"},
        {"stats_queries", "all", "queries the statistics use: all since the last eviction point (exact) or the last N"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none",
         "none|step|every:K|length:K (statistics of the last K steps' queries; keeps the capacity reached at "
         "the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t sinks = args.get_int("sinks");
         const std::int64_t future = args.get_int("future");
         const bool covariance = read_yes_no(args, "covariance");
         const bool vnorm = read_yes_no(args, "vnorm");
         const double epsilon = args.get_double("epsilon");
         const std::string queries = args.get_string("stats_queries");
         const auto points = read_eviction_points(args);
         if (sinks < 0) args.fail("sinks", "must be >= 0");
         if (future < 1) args.fail("future", "must be >= 1 (positions)");
         if (!(epsilon >= 0.0)) args.fail("epsilon", "must be >= 0");
         if (!budget.is_fraction && budget.tokens <= sinks) {
           args.fail("budget", "a token budget must exceed the sinks (" + std::to_string(sinks) + ")");
         }
         std::int64_t stats_queries = 0;
         if (queries != "all") {
           const auto [ptr, ec] = std::from_chars(queries.data(), queries.data() + queries.size(), stats_queries);
           if (ec != std::errc() || ptr != queries.data() + queries.size() || stats_queries < 1) {
             args.fail("stats_queries", "expected all or an integer >= 1, got '" + queries + "'");
           }
         }
         args.set_canonical("stats_queries", stats_queries > 0 ? std::to_string(stats_queries) : "all");
         return std::make_unique<ExpectedAttentionPolicy>(args.canonical(), budget, sinks, future, covariance, vnorm,
                                                          epsilon, stats_queries, points);
       }});
}

}  // namespace kvsim

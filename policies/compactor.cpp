// compactor: Compactor (Chari & Van Durme 2025, "Compactor: Calibrated Query-Agnostic KV Cache
// Compression with Approximate Leverage Scores", arXiv 2507.08143; reference NVIDIA/kvpress
// kvpress/presses/compactor_press.py with leverage_press.py and non_causal_attention_press.py).
// Score = blending * z(leverage of the centred pre-RoPE keys) + z(non-causal chunked attention
// received * ||v||, avg-pooled over 3), z-scores over all heads of the layer; the first and last
// few resident entries are protected.
// leverage=sketch (default) is the reference's estimator (kvpress @8bb29b9,
// LeverageScorePress.compute_leverage_scores): the keys are sketched from the right by a d x 48
// Gaussian matrix and scored by the ridge leverage (jitter 1e-2) of the sketched rows. That is an
// estimator of its own, not exact leverage with noise: with head_dim > 48 it measures a row's
// leverage inside a random 48-dimensional subspace of the key space. kvsim draws the matrix from
// a seed (one per request, layer, KV head and eviction point) instead of torch.randn, so a spec
// and a trace give the same kept sets on any run and thread count. leverage=exact is the
// hat-matrix diagonal of the full-rank keys (pseudo-inverse), what kvsim computed before.
// pad=zeros models the reference's zero-padded last attention chunk (see noncausal_chunk_attention).
#include <tbb/parallel_for.h>
#include <cstdlib>

#include "policies/leverage.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "traces/rope.h"
#include "util/error.h"

namespace kvsim {

namespace {

// The ridge that compute_leverage_scores passes to chol_with_jitter (jitter=1e-2): added to the
// sketched Gram matrix before the first Cholesky try, whatever the scale of the keys.
constexpr double kSketchJitter = 1e-2;
constexpr std::int64_t kMaxSketchDimension = 4096;  // beyond any head_dim: larger only costs memory

struct CompactorParams {  // every field read from the spec (defaults: the parameter table)
  Budget budget;
  ProtectedEnds ends;
  std::int64_t chunk = 0;
  double blending = -1.0;  // < 0: the fraction evicted at this eviction (kvpress: compression_ratio)
  bool zero_pad_last_chunk = true;
  bool attention = true;
  bool sketch = true;  // leverage=sketch; false: exact
  std::int64_t sketch_dimension = 0;
  std::uint64_t seed = 0;
  bool pre_rope = true;
  EvictionPoints points;
};

class CompactorPolicy final : public Policy {
 public:
  CompactorPolicy(std::string spec, CompactorParams p) : spec_(std::move(spec)), p_(p) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return p_.points; }

  // The attention term needs the query of every entry it scores: every prompt position, and every
  // decode position when decoding evicts too.
  void add_required_queries(const RequestInfo& request, std::span<const Pass> /*prefill*/,
                            std::vector<std::int64_t>* positions) const override {
    if (!p_.attention) return;
    const std::int64_t end = p_.points.decode_every > 0                    ? request.total_tokens()
                             : p_.points.prefill != PrefillEviction::kNone ? request.prompt_tokens
                                                                           : 0;
    for (std::int64_t t = 0; t < end; ++t) positions->push_back(t);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = p_.budget.capacity(ctx.pass, ctx.prefill, p_.points.prefill, p_.ends.total());
    const std::size_t heads = residency.size();
    std::vector<Eigen::VectorXd> lev(heads), attn(heads);
    std::vector<std::size_t> evicting;
    for (std::size_t h = 0; h < heads; ++h) {
      if (static_cast<std::int64_t>(residency[h].size()) > capacity) evicting.push_back(h);
    }
    if (ctx.trace != nullptr) {
      tbb::parallel_for(std::size_t{0}, evicting.size(), [&](std::size_t i) {
        const std::size_t h = evicting[i];
        const auto& resident = residency[h];
        const ProtectedEnds ends = p_.ends.clipped(static_cast<std::int64_t>(resident.size()));
        const auto middle = std::span(resident).subspan(static_cast<std::size_t>(ends.sinks),
                                                        resident.size() - static_cast<std::size_t>(ends.total()));
        lev[h] = leverage(ctx, static_cast<int>(h), middle);
        if (p_.attention) attn[h] = attention(ctx, static_cast<int>(h), middle);
      });
    }
    // z-scores over every evicting head of the layer, as the reference normalises the whole tensor.
    std::vector<Eigen::VectorXd> lev_parts, attn_parts;
    for (std::size_t h : evicting) {
      lev_parts.push_back(lev[h]);
      if (p_.attention) attn_parts.push_back(attn[h]);
    }
    const ZStats zl = z_stats(lev_parts);
    const ZStats za = z_stats(attn_parts);
    tbb::parallel_for(std::size_t{0}, evicting.size(), [&](std::size_t i) {
      const std::size_t h = evicting[i];
      auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      const ProtectedEnds ends = p_.ends.clipped(size);
      std::vector<float> scores(static_cast<std::size_t>(size - ends.total()), 0.0f);
      if (ctx.trace != nullptr) {
        const double blend =
            p_.blending >= 0 ? p_.blending : static_cast<double>(size - capacity) / static_cast<double>(size);
        for (std::size_t t = 0; t < scores.size(); ++t) {
          const auto j = static_cast<Eigen::Index>(t);
          const double z_lev = (lev[h][j] - zl.mean) / zl.std;
          scores[t] = static_cast<float>(p_.attention ? blend * z_lev + (attn[h][j] - za.mean) / za.std : z_lev);
        }
      }
      resident = keep_ends_and_top(resident, scores, ends, capacity);
    });
  }

 private:
  Eigen::VectorXd leverage(const EvictionContext& ctx, int h, std::span<const std::int32_t> middle) const {
    HeadMatrix keys = gather_rows(ctx.trace->keys[h], middle);
    if (p_.pre_rope) {
      // The reference recomputes pre-RoPE keys from hidden states; undoing the rotation is the same.
      const std::vector<double> inv_freq = rope_inv_freq(ctx.model);
      for (Eigen::Index i = 0; i < keys.rows(); ++i) {
        apply_rope(keys.row(i).data(), ctx.model.head_dim,
                   -static_cast<std::int64_t>(middle[static_cast<std::size_t>(i)]), inv_freq);
      }
    }
    if (!p_.sketch) return centered_leverage(keys.cast<double>());
    const std::uint64_t key = sketch_key(p_.seed, ctx.request.id, ctx.layer, h, ctx.pass.end);
    return sketched_leverage(keys.cast<double>(), gaussian_sketch(key, keys.cols(), p_.sketch_dimension),
                             kSketchJitter);
  }

  Eigen::VectorXd attention(const EvictionContext& ctx, int h, std::span<const std::int32_t> middle) const {
    const LayerTrace& trace = *ctx.trace;
    std::vector<std::int32_t> rows;
    for (std::int32_t t : middle) {
      const std::int64_t row = trace.query_row(t);
      if (row < 0) {
        throw InputError("trace layer " + std::to_string(trace.layer) + ": no stored query at position " +
                         std::to_string(t) + ", which " + spec() + " scores with (or use attention=off)");
      }
      rows.push_back(static_cast<std::int32_t>(row));
    }
    const int group = ctx.model.group_size();
    std::vector<HeadMatrix> queries;
    for (int g = h * group; g < (h + 1) * group; ++g) queries.push_back(gather_rows(trace.queries[g], rows));
    const Eigen::VectorXf a =
        noncausal_chunk_attention(gather_rows(trace.keys[h], middle), queries, p_.chunk, p_.zero_pad_last_chunk);
    std::vector<float> s(static_cast<std::size_t>(a.size()));
    for (std::size_t i = 0; i < s.size(); ++i) {
      s[i] = a[static_cast<Eigen::Index>(i)] * trace.values[h].row(middle[i]).norm();
    }
    const std::vector<float> pooled = avg_pool(s, 3);
    return Eigen::Map<const Eigen::VectorXf>(pooled.data(), static_cast<Eigen::Index>(pooled.size())).cast<double>();
  }

  std::string spec_;
  CompactorParams p_;
};

// leverage=sketch|exact, and the sketch's dimension and seed, which an exact spec leaves out.
void read_leverage(PolicyArgs& args, CompactorParams& p) {
  p.sketch = args.get_choice("leverage", {"sketch", "exact"}) == "sketch";
  p.sketch_dimension = args.get_int("sketch_dimension");
  const std::int64_t seed = args.get_int("seed");
  if (p.sketch_dimension < 1 || p.sketch_dimension > kMaxSketchDimension) {
    args.fail("sketch_dimension", "must be an integer in [1, " + std::to_string(kMaxSketchDimension) + "]");
  }
  if (seed < 0) args.fail("seed", "must be an integer >= 0");
  p.seed = static_cast<std::uint64_t>(seed);
  if (!p.sketch) {
    args.set_canonical("sketch_dimension", "");
    args.set_canonical("seed", "");
  }
}

}  // namespace

void register_compactor(PolicyRegistry& registry) {
  registry.add(
      {"compactor",
       "Compactor: blend of sketched key leverage and non-causal chunked attention (z-scored); keeps the top ones",
       "Chari & Van Durme 2025, Compactor: Calibrated Query-Agnostic KV Cache Compression with Approximate "
       "Leverage Scores (arXiv 2507.08143); NVIDIA/kvpress kvpress/presses/compactor_press.py",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the protected ends, or a token count (>=1) incl. them"},
        {"sink_start", "8", "first resident entries always kept"},
        {"sink_end", "4", "most recent resident entries always kept"},
        {"chunk", "256", "chunk of the non-causal attention term"},
        {"pad", "zeros",
         "zeros (kvpress: a short last chunk is zero-padded to `chunk`; pad keys and queries add attention) | none"},
        {"blending", "auto", "weight of the leverage z-score; auto: the fraction evicted (kvpress: compression_ratio)"},
        {"attention", "on", "on|off: add the attention term (needs the query of every scored position)"},
        {"leverage", "sketch",
         "sketch (kvpress: ridge-1e-2 leverage of the keys times a d x k Gaussian) | exact (hat-matrix diagonal)"},
        {"sketch_dimension", "48", "k, columns of the Gaussian sketch (leverage=sketch)"},
        {"seed", "0", "seed of the sketch, drawn per request, layer, KV head and eviction point (leverage=sketch)"},
        {"keys", "pre_rope", "pre_rope (undo RoPE with the model's rope_theta, as the reference) | post_rope"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         CompactorParams p;
         p.budget = Budget::read(args, "budget");
         p.ends = {args.get_int("sink_start"), args.get_int("sink_end")};
         p.chunk = args.get_int("chunk");
         p.zero_pad_last_chunk = args.get_choice("pad", {"zeros", "none"}) == "zeros";
         const std::string blending = args.get_string("blending");
         p.attention = args.get_choice("attention", {"on", "off"}) == "on";
         read_leverage(args, p);
         p.pre_rope = args.get_choice("keys", {"pre_rope", "post_rope"}) == "pre_rope";
         p.points = read_eviction_points(args);
         if (p.ends.sinks < 0) args.fail("sink_start", "must be >= 0");
         if (p.ends.recent < 0) args.fail("sink_end", "must be >= 0");
         if (p.chunk < 1) args.fail("chunk", "must be >= 1");
         if (blending != "auto") {
           char* end = nullptr;
           p.blending = std::strtod(blending.c_str(), &end);
           if (blending.empty() || *end != '\0' || !(p.blending >= 0.0))
             args.fail("blending", "expected auto or a number >= 0");
           args.set_canonical("blending", format_printf_g(p.blending));  // as its spec has always printed it
         }
         if (!p.budget.is_fraction && p.budget.tokens < p.ends.total()) {
           args.fail("budget", "a token budget must hold the protected ends (" + std::to_string(p.ends.total()) + ")");
         }
         return std::make_unique<CompactorPolicy>(args.canonical(), p);
       }});
}

}  // namespace kvsim

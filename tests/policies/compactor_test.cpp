// compactor (arXiv 2507.08143; kvpress compactor_press.py + leverage_press.py +
// non_causal_attention_press.py): exact and sketched leverage, the seeded Gaussian sketch, the
// non-causal chunked attention term with kvpress's zero-padded last chunk, their z-scored blend,
// protection, pre-RoPE keys, parameter errors and kept counts.
#include <gtest/gtest.h>

#include <tbb/global_control.h>
#include <cmath>
#include <set>

#include "policies/leverage.h"
#include "tests/policies/leverage_test_util.h"
#include "tests/policies/policy_test_util.h"
#include "traces/rope.h"
#include "util/error.h"

namespace kvsim {
namespace {

using leverage_test::evict_once;
using leverage_test::make_layer;
using Positions = std::vector<std::int32_t>;
using Rows = std::vector<std::vector<float>>;

const ModelShape kOneHead{"hand", 1, 1, 1, 2, 16, 10000.0};

TEST(CompactorLeverage, SumsToRankAndIgnoresDuplicateChannels) {
  // Centred points on the axes: lev = x^2 / sum x^2 per axis = [9,4,1]/14 and [1,9,16]/26.
  Eigen::MatrixXd x(6, 2);
  x << 3, 0, -2, 0, -1, 0, 0, 1, 0, 3, 0, -4;
  Eigen::VectorXd lev = centered_leverage(x);
  const double want[] = {9 / 14.0, 4 / 14.0, 1 / 14.0, 1 / 26.0, 9 / 26.0, 16 / 26.0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(lev[i], want[i], 1e-12) << i;
  EXPECT_NEAR(lev.sum(), 2.0, 1e-12);
  // A third channel equal to the first: rank stays 2, the pseudo-inverse keeps the sum at 2.
  Eigen::MatrixXd y(6, 3);
  y << x, x.col(0);
  EXPECT_NEAR(centered_leverage(y).sum(), 2.0, 1e-9);
  // Two points in 3-D: after centring they span one direction; each carries half of it.
  Eigen::MatrixXd z(2, 3);
  z << 1, 2, 3, 5, -1, 0;
  lev = centered_leverage(z);
  EXPECT_NEAR(lev[0], 0.5, 1e-12);
  EXPECT_NEAR(lev[1], 0.5, 1e-12);
  EXPECT_NEAR(centered_leverage(Eigen::MatrixXd::Ones(3, 2)).sum(), 0.0, 1e-15);  // constant rows
}

LayerTrace leverage_layer() {
  const Rows k{{3, 0}, {-2, 0}, {-1, 0}, {0, 1}, {0, 3}, {0, -4}};
  return make_layer({k}, {k}, {k});
}

TEST(Compactor, LeverageOnlyHandCheck) {
  // Leverage order (see above): t0 .643 > t5 .615 > t4 .346 > t1 .286 > t2 .071 > t3 .038.
  const LayerTrace layer = leverage_layer();
  const std::string base = "compactor(sink_start=0, sink_end=0, attention=off, leverage=exact, keys=post_rope, budget=";
  EXPECT_EQ(evict_once(base + "3)", kOneHead, &layer, 6)[0], (Positions{0, 4, 5}));
  EXPECT_EQ(evict_once(base + "4)", kOneHead, &layer, 6)[0], (Positions{0, 1, 4, 5}));
  // Protect t0 and t5; the middle t1..t4 is re-centred on its own mean (-.75, 1):
  // lev = [.617, .217, .45, .717] -> B=3 keeps t4, B=4 keeps t4 and t1.
  const std::string ends = "compactor(sink_start=1, sink_end=1, attention=off, leverage=exact, keys=post_rope, budget=";
  EXPECT_EQ(evict_once(ends + "3)", kOneHead, &layer, 6)[0], (Positions{0, 4, 5}));
  EXPECT_EQ(evict_once(ends + "4)", kOneHead, &layer, 6)[0], (Positions{0, 1, 4, 5}));
}

TEST(Compactor, PreRopeUndoesTheRotation) {
  // The same keys stored rotated to their positions: keys=pre_rope recovers the hand ranking.
  const Rows k{{3, 0}, {-2, 0}, {-1, 0}, {0, 1}, {0, 3}, {0, -4}};
  Rows rotated = k;
  const auto inv_freq = rope_inv_freq(2, kOneHead.rope_theta);
  for (std::size_t t = 0; t < rotated.size(); ++t)
    apply_rope(rotated[t].data(), 2, static_cast<std::int64_t>(t), inv_freq);
  const LayerTrace layer = make_layer({rotated}, {rotated}, {rotated});
  EXPECT_EQ(evict_once("compactor(sink_start=0, sink_end=0, attention=off, leverage=exact, budget=3)", kOneHead, &layer,
                       6)[0],
            (Positions{0, 4, 5}));
}

// Attention term: one query head, q = (1, 0) everywhere, keys (ln e_t, y_t), so within a chunk
// query i gives key j the weight e_j / sum(e) (unscaled logits, no causal mask).
//   e = [1,1,3,5,1,4], ||v|| = [3,3,3,1,2,3], y = [1,-2,0,2,0,-1].
// chunk 3: A = 3 e / sum over its chunk = [.6,.6,1.8 | 1.5,.3,1.2]; A*||v|| = [1.8,1.8,5.4,1.5,.6,3.6];
//          avg-pooled (3, zero pad) = [1.2, 3.0, 2.9, 2.5, 1.9, 1.4]  -> top 3: t1, t2, t3.
// chunk 6: A = 6 e / 15; A*||v|| = [1.2,1.2,3.6,2,.8,4.8]; pooled = [.8,2,2.27,2.13,2.53,1.87] -> t2, t3, t4.
// Leverage of the keys (x = ln e, y): [.389,.439,.067,.521,.180,.404]; z-scores (unbiased std):
//   z_lev  = [ .325,  .609, -1.543, 1.089, -.889,  .409]
//   z_attn = [-1.240, 1.109,  .979,  .457, -.326, -.979]
// blending 2: score = [-.591, 2.328, -2.107, 2.634, -2.104, -.161] -> top 3: t3, t1, t5.
// auto at B=2 of 6: blending 4/6 -> t1 1.515, t3 1.183, t2 -.050, ... -> {t1, t3}; with 0: {t1, t2}.
LayerTrace attention_layer() {
  const float e[] = {1, 1, 3, 5, 1, 4}, v[] = {3, 3, 3, 1, 2, 3}, y[] = {1, -2, 0, 2, 0, -1};
  Rows k, vals, q;
  for (int t = 0; t < 6; ++t) {
    k.push_back({std::log(e[t]), y[t]});
    vals.push_back({0, v[t]});
    q.push_back({1, 0});
  }
  return make_layer({k}, {vals}, {q});
}

TEST(Compactor, AttentionTermAndBlendHandCheck) {
  const LayerTrace layer = attention_layer();
  const std::string base = "compactor(sink_start=0, sink_end=0, keys=post_rope, leverage=exact, ";
  EXPECT_EQ(evict_once(base + "chunk=3, blending=0, budget=3)", kOneHead, &layer, 6)[0], (Positions{1, 2, 3}));
  EXPECT_EQ(evict_once(base + "chunk=6, blending=0, budget=3)", kOneHead, &layer, 6)[0], (Positions{2, 3, 4}));
  EXPECT_EQ(evict_once(base + "chunk=3, blending=2, budget=3)", kOneHead, &layer, 6)[0], (Positions{1, 3, 5}));
  EXPECT_EQ(evict_once(base + "chunk=3, budget=2)", kOneHead, &layer, 6)[0], (Positions{1, 3}));
  EXPECT_EQ(evict_once(base + "chunk=3, blending=0, budget=2)", kOneHead, &layer, 6)[0], (Positions{1, 2}));
}

// kvpress zero-pads a short last chunk to `chunk`. chunk 4 on the layer above: [t0..t3] is full,
// A = 4 e / 10 = [.4, .4, 1.2, 2]; [t4, t5] gets 2 zero keys and 2 zero queries. Pad keys have
// logit ~0 (-1e-9), so t4's and t5's queries give e_j / (1 + 4 + 1 + 1): 2/7 and 8/7 over the two
// queries; each pad query is uniform over the 4 slots: + 2 x 1/4. Without padding: 2/5, 8/5.
TEST(Compactor, ZeroPaddedLastChunkHandCheck) {
  const LayerTrace layer = attention_layer();
  const std::vector<HeadMatrix> queries{layer.queries[0]};
  const Eigen::VectorXf padded = noncausal_chunk_attention(layer.keys[0], queries, 4, true);
  const Eigen::VectorXf plain = noncausal_chunk_attention(layer.keys[0], queries, 4, false);
  const double want_padded[] = {.4, .4, 1.2, 2, 2 / 7.0 + .5, 8 / 7.0 + .5};
  const double want_plain[] = {.4, .4, 1.2, 2, .4, 1.6};
  for (int t = 0; t < 6; ++t) {
    EXPECT_NEAR(padded[t], want_padded[t], 1e-6) << t;
    EXPECT_NEAR(plain[t], want_plain[t], 1e-6) << t;
  }
  // A*||v|| avg-pooled: padded t4 2.833, t3 2.390, t2 2.267; plain t4 2.533, t2 2.267, t3 2.133.
  const std::string spec =
      "compactor(sink_start=0, sink_end=0, keys=post_rope, leverage=exact, chunk=4, blending=0, budget=2";
  EXPECT_EQ(evict_once(spec + ")", kOneHead, &layer, 6)[0], (Positions{3, 4}));
  EXPECT_EQ(evict_once(spec + ", pad=none)", kOneHead, &layer, 6)[0], (Positions{2, 4}));
}

// Sketched leverage on centred rows [1,0], [-1,0], [0,2], [0,-2] (Gram diag(2, 8)):
//   phi = I2:        y = x, lev = [1/2.01, 1/2.01, 4/8.01, 4/8.01] (the 1e-2 ridge shrinks each);
//   phi = [1; 0]:    the sketch keeps the first axis only: lev = [1/2.01, 1/2.01, 0, 0];
//   phi = I2, no jitter: exact leverage [.5, .5, .5, .5].
TEST(CompactorSketch, RidgeLeverageOfTheSketchedRowsHandCheck) {
  Eigen::MatrixXd x(4, 2);
  x << 1, 0, -1, 0, 0, 2, 0, -2;
  Eigen::MatrixXd axis(2, 1);
  axis << 1, 0;
  const Eigen::VectorXd both = sketched_leverage(x, Eigen::MatrixXd::Identity(2, 2), 1e-2);
  const Eigen::VectorXd first = sketched_leverage(x, axis, 1e-2);
  const Eigen::VectorXd exact = sketched_leverage(x, Eigen::MatrixXd::Identity(2, 2), 0.0);
  const double want_both[] = {1 / 2.01, 1 / 2.01, 4 / 8.01, 4 / 8.01};
  const double want_first[] = {1 / 2.01, 1 / 2.01, 0, 0};
  for (int t = 0; t < 4; ++t) {
    EXPECT_NEAR(both[t], want_both[t], 1e-12) << t;
    EXPECT_NEAR(first[t], want_first[t], 1e-12) << t;
    EXPECT_NEAR(exact[t], centered_leverage(x)[t], 1e-12) << t;
  }
}

TEST(CompactorSketch, SingularGramRetriesWithLargerJitter) {
  // Rows on one axis with phi = I2 and no jitter: Gram diag(2, 0) is singular, the first Cholesky
  // fails and chol_with_jitter retries with 1e-2: lev = 1 / 2.01 each.
  Eigen::MatrixXd x(2, 2);
  x << 1, 0, -1, 0;
  const Eigen::VectorXd lev = sketched_leverage(x, Eigen::MatrixXd::Identity(2, 2), 0.0);
  EXPECT_NEAR(lev[0], 1 / 2.01, 1e-12);
  EXPECT_NEAR(lev[1], 1 / 2.01, 1e-12);
}

TEST(CompactorSketch, GaussianMatrixIsKeyedAndScaled) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);  // FNV-1a 64 test vectors
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  const std::uint64_t key = sketch_key(0, "0", 0, 0, 400);
  const Eigen::MatrixXd phi = gaussian_sketch(key, 128, 48);
  EXPECT_EQ(phi, gaussian_sketch(key, 128, 48));
  // Entries ~ N(0, 1/k): over 6144 draws the mean is within 4 sigma of 0, the variance within 10 %.
  const double mean = phi.mean();
  const double var = (phi.array() - mean).square().sum() / static_cast<double>(phi.size() - 1);
  EXPECT_LT(std::abs(mean), 4.0 / std::sqrt(48.0 * static_cast<double>(phi.size())));
  EXPECT_NEAR(var * 48.0, 1.0, 0.1);
  // Every coordinate of the key gives a different matrix.
  const std::set<std::uint64_t> keys{key,
                                     sketch_key(1, "0", 0, 0, 400),
                                     sketch_key(0, "1", 0, 0, 400),
                                     sketch_key(0, "0", 1, 0, 400),
                                     sketch_key(0, "0", 0, 1, 400),
                                     sketch_key(0, "0", 0, 0, 401)};
  EXPECT_EQ(keys.size(), 6u);
  EXPECT_NE(phi, gaussian_sketch(sketch_key(0, "0", 0, 0, 401), 128, 48));
}

// Kept positions per head as a set of (head, position).
std::set<std::pair<std::size_t, std::int32_t>> kept_pairs(const LayerResidency& r) {
  std::set<std::pair<std::size_t, std::int32_t>> out;
  for (std::size_t h = 0; h < r.size(); ++h) {
    for (std::int32_t t : r[h]) out.insert({h, t});
  }
  return out;
}

double jaccard(const std::set<std::pair<std::size_t, std::int32_t>>& a,
               const std::set<std::pair<std::size_t, std::int32_t>>& b) {
  std::size_t common = 0;
  for (const auto& x : a) common += b.count(x);
  return static_cast<double>(common) / static_cast<double>(a.size() + b.size() - common);
}

TEST(CompactorSketch, SketchNarrowerThanTheHeadIsItsOwnEstimator) {
  // head_dim 128: a 48-column sketch scores leverage in a random 48-dimensional subspace, so its
  // kept set differs from exact leverage's and from another seed's; a 128-column sketch spans the
  // whole key space and keeps nearly exact's set.
  const ModelShape model{"wide", 1, 2, 2, 128, 16, 10000.0};
  auto source = testing_support::random_trace(model, 300, 0, {0}, 5);
  const LayerTrace layer = source.load_layer("0", 0);
  const std::string base = "compactor(budget=0.2, attention=off, ";
  const auto exact = kept_pairs(evict_once(base + "leverage=exact)", model, &layer, 300));
  const auto sketch = kept_pairs(evict_once(base + "leverage=sketch)", model, &layer, 300));
  const auto reseeded = kept_pairs(evict_once(base + "seed=7)", model, &layer, 300));
  const auto full_width = kept_pairs(evict_once(base + "sketch_dimension=128)", model, &layer, 300));
  // Measured (isotropic random keys, where exact leverage has little spread): 0.36 and 0.29.
  EXPECT_LT(jaccard(sketch, exact), 0.6);
  EXPECT_LT(jaccard(sketch, reseeded), 0.6);
  // Measured 0.96: a square Gaussian phi shrinks some directions by ~1/d, where the 1e-2 ridge
  // then outweighs them, so even a full-width sketch is not exactly the hat matrix.
  EXPECT_GT(jaccard(full_width, exact), 0.9);
}

TEST(Compactor, MissingQueriesNameThePolicy) {
  LayerTrace layer = attention_layer();
  layer.query_positions = {0, 1, 2, 3, 4, 7};  // position 5 not stored
  EXPECT_THROW(evict_once("compactor(sink_start=0, sink_end=0, budget=3)", kOneHead, &layer, 6), InputError);
  // Without the attention term no query is needed.
  EXPECT_NO_THROW(evict_once("compactor(sink_start=0, sink_end=0, budget=3, attention=off)", kOneHead, &layer, 6));
  const auto p = PolicyRegistry::builtin().create("compactor(budget=0.5, prefill=post_fill)");
  RequestInfo r;
  r.prompt_tokens = 5;
  r.generated_tokens = 2;
  std::vector<std::int64_t> positions;
  p->add_required_queries(r, {}, &positions);
  EXPECT_EQ(positions, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
}

TEST(Compactor, SameKeptSetsAtAnyThreadCount) {
  // The z-scores pool all heads; their sums run in head order, so threads cannot change them.
  const ModelShape model{"tiny", 1, 8, 4, 16, 16, 10000.0};
  auto source = testing_support::random_trace(model, 300, 0, {0}, 3);
  const LayerTrace layer = source.load_layer("0", 0);
  const std::string spec = "compactor(budget=0.2, chunk=64)";
  const LayerResidency parallel = evict_once(spec, model, &layer, 300);
  tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
  EXPECT_EQ(evict_once(spec, model, &layer, 300), parallel);
}

TEST(Compactor, SpecAndErrors) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("compactor")->spec(),
            "compactor(budget=0.2, sink_start=8, sink_end=4, chunk=256, pad=zeros, blending=auto, attention=on, "
            "leverage=sketch, sketch_dimension=48, seed=0, keys=pre_rope, prefill=post_fill, decode=none)");
  EXPECT_EQ(reg.create("compactor(blending=0.35)")->spec().find("blending=0.35") != std::string::npos, true);
  // The sketch's parameters do not apply to exact leverage: its spec leaves them out.
  EXPECT_EQ(reg.create("compactor(leverage=exact, seed=3)")->spec(),
            "compactor(budget=0.2, sink_start=8, sink_end=4, chunk=256, pad=zeros, blending=auto, attention=on, "
            "leverage=exact, keys=pre_rope, prefill=post_fill, decode=none)");
  policy_test::expect_rejected({"compactor(sink_start=-1)", "compactor(sink_end=-1)", "compactor(chunk=0)",
                                "compactor(blending=-1)", "compactor(blending=x)", "compactor(attention=maybe)",
                                "compactor(keys=rope)", "compactor(budget=11)", "compactor(leverage=approx)",
                                "compactor(sketch_dimension=0)", "compactor(sketch_dimension=4097)",
                                "compactor(seed=-1)", "compactor(seed=x)", "compactor(pad=ones)"});
}

TEST(Compactor, KeptCountFollowsCapacityRule) {
  using leverage_test::expect_capacity_rule;
  expect_capacity_rule("compactor(budget=0.25)", 0.25, 12, 60, 4, 60, false, 0);
  expect_capacity_rule("compactor(budget=0.3, sink_start=2, sink_end=1, chunk=8)", 0.3, 3, 57, 3, 16, false, 0);
  expect_capacity_rule("compactor(budget=0.3, sink_start=2, sink_end=2, chunk=5, prefill=chunk)", 0.3, 4, 57, 3, 16,
                       true, 0);
  expect_capacity_rule("compactor(budget=0.5, sink_start=1, sink_end=1, prefill=chunk, decode=step)", 0.5, 2, 41, 5, 8,
                       true, 1);
  expect_capacity_rule("compactor(budget=0.2, attention=off, decode=every:2)", 0.2, 12, 60, 6, 60, false, 2);
}

}  // namespace
}  // namespace kvsim

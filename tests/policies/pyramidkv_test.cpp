// pyramidkv: the layer budget formula (KVCache-Factory's) by hand, hand-checked kept sets, and
// the kept counts of traced and untraced layers at every eviction.
#include <gtest/gtest.h>

#include "policies/pyramid_budget.h"
#include "policies/registry.h"
#include "sim/replay/engine.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"
#include "tests/test_support.h"

namespace kvsim {
namespace {

std::int64_t sum_over_layers(std::int64_t t, std::int64_t u, std::int64_t w, std::int64_t beta, int layers) {
  std::int64_t sum = 0;
  for (int l = 0; l < layers; ++l) sum += pyramid_layer_budget(t, u, w, beta, l, layers);
  return sum;
}

// KVCache-Factory's PyramidKVCluster.update_kv by hand, w=64, beta=20, L=32.
TEST(PyramidKvBudget, KvCacheFactoryExamples) {
  // T=10000, C=2112: B=2048, T >= 2B: min=102, max=3994 (< T-w), steps=3892//31=125.
  EXPECT_EQ(pyramid_layer_budget(10000, 2112, 64, 20, 0, 32), 3994 + 64);
  EXPECT_EQ(pyramid_layer_budget(10000, 2112, 64, 20, 1, 32), 3869 + 64);
  EXPECT_EQ(pyramid_layer_budget(10000, 2112, 64, 20, 31, 32), 3994 - 31 * 125 + 64);  // 183
  // T=10000, C=576: B=512: min=25, max=999, steps=974//31=31 -> 1063 ... 102 (a pyramid even though
  // min < w, which kvpress's port would turn into a uniform budget).
  EXPECT_EQ(pyramid_layer_budget(10000, 576, 64, 20, 0, 32), 1063);
  EXPECT_EQ(pyramid_layer_budget(10000, 576, 64, 20, 31, 32), 102);
  // T=1000, C=564: B=500, T = 2B: max=975 clipped to T-w=936, min=1000-936=64, steps=872//31=28.
  EXPECT_EQ(pyramid_layer_budget(1000, 564, 64, 20, 0, 32), 1000);
  EXPECT_EQ(pyramid_layer_budget(1000, 564, 64, 20, 1, 32), 972);
  EXPECT_EQ(pyramid_layer_budget(1000, 564, 64, 20, 31, 32), 132);
  // T < 2B: the reference's uniform branch; T <= C: nothing to evict; one layer: no slope.
  for (int l : {0, 1, 17, 31}) EXPECT_EQ(pyramid_layer_budget(3000, 2112, 64, 20, l, 32), 2112);
  EXPECT_EQ(pyramid_layer_budget(500, 500, 64, 20, 0, 32), 500);
  EXPECT_EQ(pyramid_layer_budget(10000, 2112, 64, 20, 0, 1), 2112);
}

TEST(PyramidKvBudget, MeanOverLayersIsTheUniformBudgetUpToTheFlooredStep) {
  // min + max = 2B, so with exact steps the mean is B + w = U; flooring the step leaves the last
  // layer above min, the mean at most (L - 1)/2 above U.
  for (std::int64_t t : {300, 1000, 4096, 12345}) {
    for (std::int64_t u : {t / 10, t / 4, t / 2, (3 * t) / 4}) {
      for (int layers : {2, 7, 32, 80}) {
        for (std::int64_t beta : {1, 2, 20}) {
          const std::int64_t excess = sum_over_layers(t, u, 16, beta, layers) - layers * u;
          EXPECT_GE(excess, 0) << "T=" << t << " U=" << u << " L=" << layers << " beta=" << beta;
          EXPECT_LT(2 * excess, layers * (layers - 1)) << "T=" << t << " U=" << u << " L=" << layers;
          for (int l = 1; l < layers; ++l) {  // non-increasing from layer 0, never beyond the cache
            EXPECT_LE(pyramid_layer_budget(t, u, 16, beta, l, layers),
                      pyramid_layer_budget(t, u, 16, beta, l - 1, layers));
          }
          EXPECT_LE(pyramid_layer_budget(t, u, 16, beta, 0, layers), t);
        }
      }
    }
  }
}

// Untraced layer replay: one representative head, counts only.
std::int64_t untraced_count(const std::string& spec, int layer, int layers, std::int64_t n, std::int64_t m,
                            std::int64_t chunk) {
  const ModelShape model{"tiny", layers, 4, 2, 8};
  RequestInfo request{"0", n, m, {}};
  const PassPlan plan = make_pass_plan(n, m, chunk);
  const auto policy = PolicyRegistry::builtin().create(spec);
  const LayerReplay r = replay_layer({model, request, plan, layer, nullptr, {}}, *policy);
  EXPECT_EQ(r.final_residency.size(), 1u);
  return static_cast<std::int64_t>(r.final_residency[0].size()) - m;
}

TEST(PyramidKv, UntracedLayersKeepTheirOwnLayersBudget) {
  // Through the policy: a 564-token budget (window included) or the fraction 0.5 (round(500) + 64)
  // over a 1000-token prompt, 32 layers: B = 500, max clipped to 936, min 64, steps 28, so layer l
  // keeps 1000 - 28 l, 18112 in all (64 above 32 x 564: the floored step).
  for (const char* spec : {"pyramidkv(budget=564)", "pyramidkv(budget=0.5, window=64, beta=20)"}) {
    std::int64_t sum = 0;
    for (int l = 0; l < 32; ++l) {
      const std::int64_t kept = untraced_count(spec, l, 32, 1000, 3, 1000);
      EXPECT_EQ(kept, 1000 - 28 * l) << spec << " layer " << l;
      sum += kept;
    }
    EXPECT_EQ(sum, 18112) << spec;
  }
  // Fraction 0.0936 at T = 10000: U = round(936) + 64 = 1000, B = 936: min 46, max 1826, steps
  // 1780//31 = 57 -> 1890 ... 123.
  EXPECT_EQ(untraced_count("pyramidkv(budget=0.0936)", 0, 32, 10000, 0, 10000), 1890);
  EXPECT_EQ(untraced_count("pyramidkv(budget=0.0936)", 31, 32, 10000, 0, 10000), 123);
}

TEST(PyramidKv, ChunkModeScalesEachChunksShare) {
  // Chunks 400, 400, 200 with b=0.5, w=16, beta=2, 4 layers: per chunk U = min(round(b c) + 16, c).
  // Chunk 400: U=216, B=200: min=100, max=300, steps=66 -> 316, 250, 184, 118.
  // Chunk 200: U=116, B=100: min=50, max=150, steps=33 -> 166, 133, 100, 67.
  const std::string spec = "pyramidkv(budget=0.5, window=16, beta=2, prefill=chunk)";
  const std::int64_t want[4] = {2 * 316 + 166, 2 * 250 + 133, 2 * 184 + 100, 2 * 118 + 67};
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(pyramid_layer_budget(400, 216, 16, 2, l, 4) * 2 + pyramid_layer_budget(200, 116, 16, 2, l, 4), want[l]);
    EXPECT_EQ(untraced_count(spec, l, 4, 1000, 2, 400), want[l]) << "layer " << l;
  }
  EXPECT_GT(untraced_count(spec, 0, 4, 1000, 2, 400), untraced_count(spec, 3, 4, 1000, 2, 400));
}

TEST(PyramidKv, HandKeptSetsPerLayer) {
  // T=8, window {7}, kernel 1, B=4, beta=2, L=2: min=2, max=6 (< T-w=7), steps=4 -> layer 0 keeps 6,
  // layer 1 keeps 2. Scores ~ x of positions 0..6 = [3,1,4,1.5,5,9,2]: ranking 5,4,2,0,6,3,1.
  // Layer 0: window + top 5 = {0,2,4,5,6,7}; layer 1: window + top 1 = {5,7}.
  const std::vector<double> x{3, 1, 4, 1.5, 5, 9, 2, 6};
  const ModelShape model{"hand", 2, 1, 1, 1};
  RequestInfo request{"0", 8, 0, {}};
  const PassPlan plan = make_pass_plan(8, 0, 8);
  const auto policy = PolicyRegistry::builtin().create("pyramidkv(budget=4, window=1, kernel=1, beta=2)");
  const LayerTrace l0 = policy_test::log_weight_layer({x}, 0), l1 = policy_test::log_weight_layer({x}, 1);
  EXPECT_EQ(replay_layer({model, request, plan, 0, &l0, {}}, *policy).final_residency,
            (LayerResidency{{0, 2, 4, 5, 6, 7}}));
  EXPECT_EQ(replay_layer({model, request, plan, 1, &l1, {}}, *policy).final_residency, (LayerResidency{{5, 7}}));
}

TEST(PyramidKv, FootprintPerLayerMatchesClosedForm) {
  // Post-fill: each head pays A(n) in prefill, then cap_l per decode step plus the decoded tokens.
  const ModelShape model{"tiny", 4, 4, 2, 8, 16, 10000.0};
  const std::int64_t n = 300, m = 5;
  auto source = testing_support::random_trace(model, n, m, {1, 2}, 9);
  const auto policy = PolicyRegistry::builtin().create("pyramidkv(budget=0.25, window=8, kernel=3, beta=3)");
  const Policy* ptr = policy.get();
  ReplayOptions options;
  options.chunk_tokens = 64;
  const PolicyResult r = replay_request(source, source.header().requests[0], {&ptr, 1}, options).front();
  std::int64_t want = 0;
  const std::int64_t uniform = 75 + 8;
  for (int l = 0; l < 4; ++l) {
    const std::int64_t cap = pyramid_layer_budget(n, uniform, 8, 3, l, 4);
    want += 2 * (n * (n + 1) / 2 + cap * m + m * (m + 1) / 2);
  }
  EXPECT_EQ(r.footprint_entry_steps, want);
}

TEST(PyramidKv, ChunkedFootprintPerLayerMatchesClosedForm) {
  // prefill=chunk: per layer the footprint paper's global_mask_stats with the layer's own capacities
  // (chunks 64 x 4 + 44), traced layers 1, 2 and untraced 0, 3 alike.
  const ModelShape model{"tiny", 4, 4, 2, 8, 16, 10000.0};
  const std::int64_t n = 300, m = 4;
  auto source = testing_support::random_trace(model, n, m, {1, 2}, 10);
  const std::string spec = "pyramidkv(budget=0.3, window=4, kernel=3, beta=2, prefill=chunk)";
  const auto policy = PolicyRegistry::builtin().create(spec);
  const Policy* ptr = policy.get();
  ReplayOptions options;
  options.chunk_tokens = 64;
  const PolicyResult r = replay_request(source, source.header().requests[0], {&ptr, 1}, options).front();
  const PassPlan plan = make_pass_plan(n, m, 64);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const Budget budget{true, 0.3, 0};
  std::int64_t want = 0;
  for (int l = 0; l < 4; ++l) {
    std::int64_t past = 0;
    for (const Pass& pass : prefill) {
      const std::int64_t c = pass.tokens();
      want += 2 * (c * (c + 1) / 2 + past * c);
      past = std::min(past + c, pyramid_capacity(budget, pass, prefill, PrefillEviction::kChunk, 4, 2, l, 4));
    }
    want += 2 * (m * (m + 1) / 2 + past * m);
  }
  EXPECT_EQ(r.footprint_entry_steps, want);
  // Sanity of the capacities themselves: chunk 64 -> U = round(19.2) + 4 = 23, B = 19: min 9, max
  // 29, steps 20//3 = 6: layer 0 keeps 29 + 4 = 33 of each full chunk, layer 3 29 - 18 + 4 = 15.
  EXPECT_EQ(pyramid_layer_budget(64, 23, 4, 2, 0, 4), 33);
  EXPECT_EQ(pyramid_layer_budget(64, 23, 4, 2, 3, 4), 15);
}

TEST(PyramidKv, RejectsBadParameters) {
  policy_test::expect_rejected({"pyramidkv(beta=0)", "pyramidkv(kernel=4)", "pyramidkv(window=0)",
                                "pyramidkv(budget=64)", "pyramidkv(budget=-1)"});
  EXPECT_EQ(
      PolicyRegistry::builtin().create("pyramidkv")->spec(),
      "pyramidkv(budget=0.2, window=64, kernel=5, pooling=avg, gqa=mean, beta=20, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

// pyramidkv: the layer budget formula on policy-notes.md's examples, hand-checked kept sets, and
// the kept counts of traced and untraced layers at every eviction.
#include <gtest/gtest.h>

#include <cstdlib>

#include "policies/pyramid_budget.h"
#include "policies/registry.h"
#include "sim/engine.h"
#include "sim/layer_replay.h"
#include "tests/policies/policy_test_util.h"
#include "tests/test_support.h"

namespace kvsim {
namespace {

std::int64_t sum_over_layers(std::int64_t t, std::int64_t u, std::int64_t w, double beta, int layers) {
  std::int64_t sum = 0;
  for (int l = 0; l < layers; ++l) sum += pyramid_layer_budget(t, u, w, beta, l, layers);
  return sum;
}

TEST(PyramidKvBudget, PolicyNotesExamples) {
  // w=64, beta=20, L=32. T=1000, r=0.5 (U=500): max clipped to T-w=936, min=2U-936=64.
  EXPECT_EQ(pyramid_layer_budget(1000, 500, 64, 20, 0, 32), 936);
  EXPECT_EQ(pyramid_layer_budget(1000, 500, 64, 20, 1, 32), 908);  // round(936 - 872/31) = round(907.87)
  EXPECT_EQ(pyramid_layer_budget(1000, 500, 64, 20, 31, 32), 64);
  EXPECT_EQ(sum_over_layers(1000, 500, 64, 20, 32), 32 * 500);
  // T=10000, r=0.5: min=250, max=9750, steps=306.45.
  EXPECT_EQ(pyramid_layer_budget(10000, 5000, 64, 20, 0, 32), 9750);
  EXPECT_EQ(pyramid_layer_budget(10000, 5000, 64, 20, 1, 32), 9444);
  EXPECT_EQ(pyramid_layer_budget(10000, 5000, 64, 20, 31, 32), 250);
  EXPECT_EQ(sum_over_layers(10000, 5000, 64, 20, 32), 32 * 5000);
  // T=10000, r=0.9: min=50 < w -> uniform fallback.
  for (int l : {0, 1, 17, 31}) EXPECT_EQ(pyramid_layer_budget(10000, 1000, 64, 20, l, 32), 1000);
  // One layer: no slope.
  EXPECT_EQ(pyramid_layer_budget(1000, 500, 64, 20, 0, 1), 500);
}

TEST(PyramidKvBudget, MeanOverLayersIsTheUniformBudget) {
  // Exact before rounding (an arithmetic series around U); half-to-even rounding of float
  // artefacts can move the sum by a few entries at most.
  for (std::int64_t t : {300, 1000, 4096, 12345}) {
    for (std::int64_t u : {t / 10, t / 4, t / 2, (3 * t) / 4}) {
      for (int layers : {2, 7, 32, 80}) {
        for (double beta : {1.0, 2.0, 20.0}) {
          EXPECT_LE(std::llabs(sum_over_layers(t, u, 16, beta, layers) - layers * u), 3)
              << "T=" << t << " U=" << u << " L=" << layers << " beta=" << beta;
          for (int l = 1; l < layers; ++l) {  // non-increasing from layer 0
            EXPECT_LE(pyramid_layer_budget(t, u, 16, beta, l, layers), pyramid_layer_budget(t, u, 16, beta, l - 1, layers));
          }
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
  // The policy-notes example through the policy: a 500-token budget (window included) or the
  // fraction 0.436 (round(436) + 64 = 500) over a 1000-token prompt, 32 layers.
  for (const char* spec : {"pyramidkv(budget=500)", "pyramidkv(budget=0.436, window=64, beta=20)"}) {
    std::int64_t sum = 0;
    for (int l = 0; l < 32; ++l) {
      const std::int64_t kept = untraced_count(spec, l, 32, 1000, 3, 1000);
      EXPECT_EQ(kept, pyramid_layer_budget(1000, 500, 64, 20, l, 32)) << spec << " layer " << l;
      sum += kept;
    }
    EXPECT_EQ(sum, 32 * 500) << spec;
    EXPECT_EQ(untraced_count(spec, 0, 32, 1000, 0, 1000), 936);
    EXPECT_EQ(untraced_count(spec, 1, 32, 1000, 0, 1000), 908);
    EXPECT_EQ(untraced_count(spec, 31, 32, 1000, 0, 1000), 64);
  }
  // r = 0.9 at T = 10000: uniform 1000 (fraction 0.0936 -> round(936) + 64).
  EXPECT_EQ(untraced_count("pyramidkv(budget=0.0936)", 0, 32, 10000, 0, 10000), 1000);
  EXPECT_EQ(untraced_count("pyramidkv(budget=0.0936)", 31, 32, 10000, 0, 10000), 1000);
}

TEST(PyramidKv, ChunkModeScalesEachChunksShare) {
  // Chunks 400, 400, 200 with b=0.5, w=16, beta=2, 4 layers: per chunk U = min(round(b c) + 16, c).
  const std::string spec = "pyramidkv(budget=0.5, window=16, beta=2, prefill=chunk)";
  std::int64_t total = 0;
  for (int l = 0; l < 4; ++l) {
    const std::int64_t want = 2 * pyramid_layer_budget(400, 216, 16, 2, l, 4) + pyramid_layer_budget(200, 116, 16, 2, l, 4);
    const std::int64_t got = untraced_count(spec, l, 4, 1000, 2, 400);
    EXPECT_EQ(got, want) << "layer " << l;
    total += got;
  }
  EXPECT_EQ(total, 4 * (216 + 216 + 116));
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
  // Sanity of the capacities themselves: chunk 64 -> U = round(19.2) + 4 = 23, min 11.5, max 34.5:
  // layer 0 keeps round(34.5) = 34 (half to even) of each full chunk, layer 3 round(11.5) = 12.
  EXPECT_EQ(pyramid_layer_budget(64, 23, 4, 2, 0, 4), 34);
  EXPECT_EQ(pyramid_layer_budget(64, 23, 4, 2, 3, 4), 12);
}

TEST(PyramidKv, RejectsBadParameters) {
  policy_test::expect_rejected({"pyramidkv(beta=0)", "pyramidkv(kernel=4)", "pyramidkv(window=0)", "pyramidkv(budget=64)",
                                "pyramidkv(budget=-1)"});
  EXPECT_EQ(PolicyRegistry::builtin().create("pyramidkv")->spec(),
            "pyramidkv(budget=0.2, window=64, kernel=5, pooling=avg, beta=20, prefill=post_fill, decode=none)");
}

}  // namespace
}  // namespace kvsim

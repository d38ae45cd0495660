// The synthesiser's heads must *have* their archetype's attention pattern when attention is
// computed from the stored post-RoPE Q and K, at 2K and 16K tokens.
#include "traces/synth.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>

#include "tests/traces/synth_test_util.h"

namespace kvsim {
namespace {

ModelShape small_model(int head_dim = 64) {
  ModelShape m;
  m.name = "tiny";
  m.num_layers = 4;
  m.num_q_heads = 8;
  m.num_kv_heads = 4;
  m.head_dim = head_dim;
  m.rope_theta = 500000.0;
  return m;
}

SynthParams small_params(std::int64_t prompt = 2048, std::int64_t generated = 16) {
  SynthParams p;
  p.model = small_model();
  p.prompt_tokens = prompt;
  p.generated_tokens = generated;
  p.seed = 7;
  p.query_window_tokens = 32;
  return p;
}

// Checks every query head of `layers` against its KV head's archetype (decode queries only) and
// returns how many heads of each archetype were seen.
std::map<std::string, int> check_patterns(const SynthParams& params, const std::vector<int>& layers) {
  auto source = make_synthetic_source(params);
  const auto& needles = source->header().requests.at(0).needles;
  std::map<std::string, int> seen;
  const int group = params.model.group_size();
  for (int layer : layers) {
    const LayerTrace trace = source->load_layer("0", layer);
    for (int g = 0; g < params.model.num_q_heads; ++g) {
      const std::string& kind = trace.head_archetypes.at(g / group);
      const test::AttentionStats a = test::mean_stats(trace, g, params.prompt_tokens, needles);
      std::printf("  T=%lld layer %d q%d %-12s sink %.3f needle %.3f local %.3f top2%% %.3f entropy %.3f\n",
                  static_cast<long long>(params.prompt_tokens), layer, g, kind.c_str(), a.sink, a.needle, a.local,
                  a.top2, a.entropy);
      ++seen[kind];
      const std::string head = kind + " head " + std::to_string(g) + " of layer " + std::to_string(layer);
      if (kind == "retrieval") {
        EXPECT_GT(a.needle, 0.5) << head;
      } else {
        EXPECT_LT(a.needle, 0.1) << head;
      }
      if (kind == "sink") {
        EXPECT_GT(a.sink, 0.5) << head;
      } else if (kind == "local") {
        EXPECT_GT(a.local, 0.5) << head;
      } else if (kind == "heavy_hitter") {
        EXPECT_GT(a.top2, 0.5) << head;
      } else if (kind == "diffuse") {
        EXPECT_GT(a.entropy, 0.7) << head;
      }
    }
  }
  return seen;
}

TEST(SynthPatterns, EveryArchetypeHasItsPatternAt2K) {
  const SynthParams params = small_params();
  const auto seen = check_patterns(params, {0, 1, 2, 3});
  for (const char* kind : {"sink", "local", "retrieval", "heavy_hitter", "diffuse"}) {
    EXPECT_GT(seen.count(kind), 0u) << "no " << kind << " head in any layer";
  }
}

TEST(SynthPatterns, PatternsSurviveLongContext) {
  SynthParams params = small_params(16384, 4);
  params.model.head_dim = 128;
  std::map<std::string, int> seen;
  for (int layer = 0; layer < params.model.num_layers; ++layer) {
    for (const auto& [kind, count] : check_patterns(params, {layer})) seen[kind] += count;
  }
  EXPECT_GT(seen["retrieval"], 0);
  EXPECT_GT(seen["sink"], 0);
}

TEST(SynthPatterns, RetrievalQueriesOutsideTheQuestionIgnoreNeedles) {
  SynthParams params = small_params();
  params.extra_query_positions = {1500};  // after the needles, before the question
  auto source = make_synthetic_source(params);
  const auto& needles = source->header().requests.at(0).needles;
  for (int layer = 0; layer < params.model.num_layers; ++layer) {
    const LayerTrace trace = source->load_layer("0", layer);
    const std::int64_t row = trace.query_row(1500);
    ASSERT_GE(row, 0);
    for (int h : trace.needle_heads) {
      const auto a = test::attention_stats(test::causal_attention(trace, h * params.model.group_size(), row), needles);
      EXPECT_LT(a.needle, 0.1) << "layer " << layer << " kv head " << h;
    }
  }
}

}  // namespace
}  // namespace kvsim

// Reconstruction-pass queries of synthetic traces (recon_queries, for kvzip): generated only on
// request, leaving everything else bit-identical, aimed at the prompt position each step re-reads,
// and grouped into KVzip's 2000-token passes with their own keys (format 1.1).
#include <gtest/gtest.h>

#include <cmath>

#include "traces/synth.h"

namespace kvsim {
namespace {

SynthParams params(std::int64_t recon) {
  SynthParams p;
  p.model = ModelShape{"tiny", 4, 8, 4, 64, 16, 500000.0};
  p.prompt_tokens = 2048;
  p.generated_tokens = 4;
  p.seed = 5;
  p.recon_query_tokens = recon;
  return p;
}

bool same(const std::vector<HeadMatrix>& a, const std::vector<HeadMatrix>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].rows() != b[i].rows() || a[i].cols() != b[i].cols() || a[i] != b[i]) return false;
  }
  return true;
}

// Softmax of reconstruction query (g, row) over every prompt key (no causal mask).
std::vector<double> recon_attention(const LayerTrace& t, int g, std::int64_t row, std::int64_t prompt) {
  const int group = static_cast<int>(t.recon_queries.size() / t.keys.size());
  const HeadMatrix& keys = t.keys[static_cast<std::size_t>(g / group)];
  const auto q = t.recon_queries[static_cast<std::size_t>(g)].row(row).cast<double>();
  std::vector<double> p(static_cast<std::size_t>(prompt));
  double top = -1e300, sum = 0.0;
  for (std::int64_t s = 0; s < prompt; ++s) {
    p[s] = keys.row(s).cast<double>().dot(q) / std::sqrt(static_cast<double>(keys.cols()));
    top = std::max(top, p[s]);
  }
  for (double& x : p) sum += (x = std::exp(x - top));
  for (double& x : p) x /= sum;
  return p;
}

TEST(SynthRecon, TargetPositionsAreCentredStrides) {
  EXPECT_EQ(recon_target_positions(10, 4), (std::vector<std::int64_t>{1, 3, 6, 8}));
  EXPECT_EQ(recon_target_positions(5, 10), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));  // capped at the prompt
  EXPECT_TRUE(recon_target_positions(5, 0).empty());
  EXPECT_EQ(recon_target_positions(32768, kDefaultReconQueryTokens)[1], 24);  // every 16th position
  EXPECT_EQ(recon_target_positions(10, 4, 4), (std::vector<std::int64_t>{5, 7, 10, 12}));
}

// Prompt 2048, question 32: the context [4, 2016) is re-read in passes [4, 2004) (16 repeat-prompt
// tokens + 2000 copies: rows [0, 2016)) and [2004, 2016) (16 + the previous chunk's last 8 ids +
// 12 copies: rows [2016, 2052)). A stored query is its target's copy: in pass 0 row 16 + (t - 4).
TEST(SynthRecon, PassesFollowKvzipsChunks) {
  const SynthReconPlan plan = synth_recon_plan(params(300));
  EXPECT_EQ(plan.passes, (std::vector<ReconPass>{{4, 2004, 0, 2016}, {2004, 2016, 2016, 2052}}));
  ASSERT_EQ(plan.key_positions.size(), 2052u);
  EXPECT_EQ(plan.key_positions[15], 4);  // repeat prompt: at its pass's first context position
  EXPECT_EQ(plan.key_positions[16], 4);  // the copy of position 4
  EXPECT_EQ(plan.key_positions[2015], 2003);
  EXPECT_EQ(plan.key_positions[2032], 1996);  // pass 1 repeats ids 1996..2003 first
  EXPECT_EQ(plan.key_positions[2040], 2004);
  ASSERT_EQ(plan.targets.size(), 300u);
  EXPECT_EQ(plan.targets[0], 4 + 2012 / 600);
  EXPECT_EQ(plan.query_rows[0], 16 + 2012 / 600);
  for (std::size_t i = 0; i < plan.targets.size(); ++i) {
    EXPECT_EQ(plan.key_positions[static_cast<std::size_t>(plan.query_rows[i])], plan.targets[i]) << i;
  }
  const auto source = make_synthetic_source(params(300));
  EXPECT_EQ(source->header().recon_pass_layers.at("0"), (std::vector<int>{0, 1, 2, 3}));
  const LayerTrace t = source->load_layer("0", 1);
  EXPECT_EQ(t.recon_passes, plan.passes);
  EXPECT_EQ(t.recon_query_rows, plan.query_rows);
  ASSERT_EQ(t.recon_keys.size(), 4u);
  EXPECT_EQ(t.recon_keys[3].rows(), 2052);
  EXPECT_TRUE(t.recon_keys[3].allFinite());
  EXPECT_TRUE(make_synthetic_source(params(0))->header().recon_pass_layers.empty());
}

TEST(SynthRecon, OnlyWhenRequestedAndEverythingElseUnchanged) {
  const auto plain = make_synthetic_source(params(0));
  const auto recon = make_synthetic_source(params(300));
  EXPECT_EQ(plain->header().generator.count("recon_query_tokens"), 0u);
  EXPECT_TRUE(plain->header().recon_query_layers.empty());
  EXPECT_EQ(recon->header().generator.at("recon_query_tokens"), "300");
  EXPECT_EQ(recon->header().recon_query_layers.at("0"), (std::vector<int>{0, 1, 2, 3}));
  for (const int layer : {0, 2}) {
    const LayerTrace a = plain->load_layer("0", layer);
    const LayerTrace b = recon->load_layer("0", layer);
    EXPECT_TRUE(a.recon_queries.empty());
    EXPECT_TRUE(same(a.keys, b.keys));
    EXPECT_TRUE(same(a.values, b.values));
    EXPECT_TRUE(same(a.queries, b.queries));
    ASSERT_EQ(b.recon_queries.size(), 8u);
    for (const HeadMatrix& q : b.recon_queries) {
      EXPECT_EQ(q.rows(), 300);
      EXPECT_EQ(q.cols(), 64);
      EXPECT_TRUE(q.allFinite());
    }
  }
}

// Local heads attend around the position each step re-reads; a retrieval head attends to a
// needle exactly while the pass re-reads it.
TEST(SynthRecon, QueriesAimAtTheReReadPosition) {
  const SynthParams p = params(256);
  const auto source = make_synthetic_source(p);
  const std::vector<std::int64_t> targets = synth_recon_plan(p).targets;
  const NeedleSpan needle = source->header().requests[0].needles.at(0);
  int checked_local = 0, checked_needle = 0;
  for (int layer = 0; layer < p.model.num_layers; ++layer) {
    const LayerTrace t = source->load_layer("0", layer);
    for (int g = 0; g < p.model.num_q_heads; ++g) {
      const std::string& archetype = t.head_archetypes[static_cast<std::size_t>(g / p.model.group_size())];
      if (archetype == "local") {
        double near = 0.0;
        for (std::int64_t row = 40; row < 240; row += 20) {
          const std::vector<double> a = recon_attention(t, g, row, p.prompt_tokens);
          for (std::int64_t s = targets[row] - 8; s <= targets[row] + 8; ++s) near += a[s];
        }
        EXPECT_GT(near / 10, 0.3) << "layer " << layer << " head " << g;
        ++checked_local;
      }
      if (archetype != "retrieval") continue;
      for (std::size_t row = 0; row < targets.size(); ++row) {
        const bool inside = targets[row] >= needle.begin && targets[row] < needle.end;
        if (!inside && row % 16 != 0) continue;
        const std::vector<double> a = recon_attention(t, g, static_cast<std::int64_t>(row), p.prompt_tokens);
        double on_needle = 0.0;
        for (std::int64_t s = needle.begin; s < needle.end; ++s) on_needle += a[s];
        if (inside) {
          EXPECT_GT(on_needle, 0.5) << "layer " << layer << " head " << g << " row " << row;
          ++checked_needle;
        } else {
          EXPECT_LT(on_needle, 0.05) << "layer " << layer << " head " << g << " row " << row;
        }
      }
    }
  }
  EXPECT_GT(checked_local, 1);
  EXPECT_GT(checked_needle, 0);
}

}  // namespace
}  // namespace kvsim

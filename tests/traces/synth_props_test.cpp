// Structural properties of synthetic traces: determinism, GQA shapes, header, query selection,
// RoPE consistency and parameter validation.
#include <gtest/gtest.h>

#include <tbb/global_control.h>

#include <set>

#include "traces/rope.h"
#include "traces/synth.h"
#include "util/error.h"

namespace kvsim {
namespace {

SynthParams tiny_params() {
  SynthParams p;
  p.model.name = "tiny";
  p.model.num_layers = 4;
  p.model.num_q_heads = 8;
  p.model.num_kv_heads = 4;
  p.model.head_dim = 64;
  p.model.rope_theta = 500000.0;
  p.prompt_tokens = 1024;
  p.generated_tokens = 8;
  p.seed = 11;
  return p;
}

bool same(const std::vector<HeadMatrix>& a, const std::vector<HeadMatrix>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].rows() != b[i].rows() || a[i].cols() != b[i].cols() || a[i] != b[i]) return false;
  }
  return true;
}

TEST(SynthDeterminism, SameSeedGivesBitIdenticalLayers) {
  const auto a = make_synthetic_source(tiny_params());
  const auto b = make_synthetic_source(tiny_params());
  for (int layer : {3, 0}) {  // order must not matter
    const LayerTrace x = a->load_layer("0", layer);
    const LayerTrace y = b->load_layer("0", layer);
    EXPECT_TRUE(same(x.keys, y.keys));
    EXPECT_TRUE(same(x.values, y.values));
    EXPECT_TRUE(same(x.queries, y.queries));
    EXPECT_EQ(x.head_archetypes, y.head_archetypes);
    EXPECT_EQ(x.needle_heads, y.needle_heads);
  }
}

TEST(SynthDeterminism, IndependentOfThreadCount) {
  const auto source = make_synthetic_source(tiny_params());
  const LayerTrace parallel = source->load_layer("0", 2);
  const tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
  const LayerTrace serial = source->load_layer("0", 2);
  EXPECT_TRUE(same(parallel.keys, serial.keys));
  EXPECT_TRUE(same(parallel.values, serial.values));
  EXPECT_TRUE(same(parallel.queries, serial.queries));
}

TEST(SynthDeterminism, DifferentSeedsDiffer) {
  SynthParams other = tiny_params();
  other.seed = 12;
  const LayerTrace x = make_synthetic_source(tiny_params())->load_layer("0", 1);
  const LayerTrace y = make_synthetic_source(other)->load_layer("0", 1);
  EXPECT_FALSE(same(x.keys, y.keys));
  EXPECT_FALSE(same(x.values, y.values));
  EXPECT_FALSE(same(x.queries, y.queries));
}

TEST(SynthDeterminism, QueryGeneratedAloneEqualsQueryInALargerSet) {
  SynthParams alone = tiny_params();
  alone.query_window_tokens = 0;
  alone.generated_tokens = 8;
  alone.extra_query_positions = {700};
  SynthParams many = tiny_params();
  many.extra_query_positions = {5, 700, 900, 700};
  const LayerTrace x = make_synthetic_source(alone)->load_layer("0", 2);
  const LayerTrace y = make_synthetic_source(many)->load_layer("0", 2);
  const std::int64_t rx = x.query_row(700), ry = y.query_row(700);
  ASSERT_GE(rx, 0);
  ASSERT_GE(ry, 0);
  for (std::size_t g = 0; g < x.queries.size(); ++g) EXPECT_TRUE(x.queries[g].row(rx) == y.queries[g].row(ry));
  EXPECT_TRUE(same(x.keys, y.keys));
}

TEST(SynthShape, GqaQueryPositionsAndArchetypes) {
  SynthParams p = tiny_params();
  p.query_window_tokens = 16;
  p.extra_query_positions = {3, 1020};
  const auto source = make_synthetic_source(p);
  const LayerTrace t = source->load_layer("0", 2);
  ASSERT_EQ(t.keys.size(), 4u);
  ASSERT_EQ(t.values.size(), 4u);
  ASSERT_EQ(t.queries.size(), 8u);
  EXPECT_EQ(t.keys[0].rows(), 1032);
  EXPECT_EQ(t.keys[0].cols(), 64);
  std::vector<std::int64_t> expected{3};
  for (std::int64_t pos = 1008; pos < 1032; ++pos) expected.push_back(pos);
  EXPECT_EQ(t.query_positions, expected);
  EXPECT_EQ(t.queries[7].rows(), static_cast<Eigen::Index>(expected.size()));
  const std::set<std::string> names{"sink", "local", "retrieval", "heavy_hitter", "diffuse"};
  ASSERT_EQ(t.head_archetypes.size(), 4u);
  for (const auto& a : t.head_archetypes) EXPECT_TRUE(names.count(a)) << a;
  for (int h : t.needle_heads) EXPECT_EQ(t.head_archetypes[h], "retrieval");
  for (int layer = 0; layer < 4; ++layer) {
    EXPECT_FALSE(source->load_layer("0", layer).needle_heads.empty()) << "layer " << layer << " lacks a retrieval head";
  }
}

TEST(SynthShape, HeaderDescribesTheRequest) {
  SynthParams p = tiny_params();
  p.traced_layers = {3, 1};
  p.num_needles = 3;
  p.needle_tokens = 20;
  const auto source = make_synthetic_source(p);
  const TraceHeader& h = source->header();
  EXPECT_EQ(h.source, "synthetic");
  EXPECT_EQ(h.traced_layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(h.seed, 11u);
  EXPECT_EQ(h.generator.at("generator"), "kvsim-synth-v1");
  EXPECT_EQ(h.generator.at("needle_tokens"), "20");
  ASSERT_EQ(h.requests.size(), 1u);
  const RequestInfo& r = h.requests[0];
  EXPECT_EQ(r.id, "0");
  EXPECT_EQ(r.total_tokens(), 1032);
  ASSERT_EQ(r.needles.size(), 3u);
  for (std::size_t j = 0; j < r.needles.size(); ++j) {
    EXPECT_EQ(r.needles[j].end - r.needles[j].begin, 20);
    EXPECT_GE(r.needles[j].begin, 1024 / 10);
    EXPECT_LE(r.needles[j].end, 1024 * 8 / 10);
    if (j > 0) {
      EXPECT_GE(r.needles[j].begin, r.needles[j - 1].end);
    }
  }
  EXPECT_EQ(make_synthetic_source(tiny_params())->header().traced_layers, (std::vector<int>{0, 1, 2, 3}));
}

TEST(SynthShape, StoredKeysArePostRope) {
  // Undoing the rotation must recover the pre-RoPE layout: the sink marker (slowest pair) is set
  // on the first four keys only.
  const SynthParams p = tiny_params();
  const LayerTrace t = make_synthetic_source(p)->load_layer("0", 0);
  const auto inv_freq = rope_inv_freq(64, p.model.rope_theta);
  for (std::int64_t pos : {0, 3, 4, 500, 1031}) {
    std::vector<float> k(t.keys[1].row(pos).data(), t.keys[1].row(pos).data() + 64);
    apply_rope(k.data(), 64, -pos, inv_freq);
    if (pos < 4) {
      EXPECT_NEAR(k[31], 8.0, 0.6) << pos;
    } else {
      EXPECT_NEAR(k[31], 0.0, 0.6) << pos;
    }
  }
}

void expect_input_error(SynthParams p, const std::string& fragment) {
  try {
    validate_synth_params(p, "synth.ini");
    ADD_FAILURE() << "expected an InputError mentioning " << fragment;
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("synth.ini"), std::string::npos) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

TEST(SynthValidate, RejectsImpossibleParameters) {
  EXPECT_NO_THROW(validate_synth_params(tiny_params(), "x"));
  SynthParams p = tiny_params();
  p.prompt_tokens = 0;
  expect_input_error(p, "prompt_tokens");
  p = tiny_params();
  p.generated_tokens = -1;
  expect_input_error(p, "generated_tokens");
  p = tiny_params();
  p.traced_layers = {4};
  expect_input_error(p, "layer 4");
  p = tiny_params();
  p.num_needles = 8;
  p.needle_tokens = 100;
  expect_input_error(p, "num_needles");
  p = tiny_params();
  p.extra_query_positions = {1032};
  expect_input_error(p, "query position");
  p = tiny_params();
  p.model.num_kv_heads = 3;
  expect_input_error(p, "num_kv_heads");
  EXPECT_THROW(make_synthetic_source(p), InputError);
}

}  // namespace
}  // namespace kvsim

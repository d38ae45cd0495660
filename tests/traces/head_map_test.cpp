// Head maps (traces/head_map.h): the parser, and a synthesised llama-3.1-8b trace whose per-head
// archetypes follow the measured DuoAttention map bundled for that preset.
#include "traces/head_map.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "tests/traces/synth_test_util.h"
#include "traces/model_presets.h"
#include "traces/synth.h"
#include "util/error.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

std::string write_map(const std::string& name, const std::string& text) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kvsim_head_map_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HeadMap, ReadsNamesWeightsAndCommentsAndClipsGateOvershoot) {
  const std::string path = write_map("ok.tsv", "# a comment\n\nsink\t0.25 retrieval\n-0.0002\t1.0002  diffuse\r\n");
  const HeadMap map = read_head_map(path);
  ASSERT_EQ(map.layers, 2);
  ASSERT_EQ(map.kv_heads, 3);
  EXPECT_EQ(map.at(0, 0).archetype, "sink");
  EXPECT_EQ(map.at(0, 1).archetype, "");
  EXPECT_EQ(map.at(0, 1).weight, 0.25);
  EXPECT_EQ(map.at(0, 2).archetype, "retrieval");
  EXPECT_EQ(map.at(1, 0).weight, 0.0);  // np.clip, as DuoAttention's load_attn_pattern
  EXPECT_EQ(map.at(1, 1).weight, 1.0);
  EXPECT_EQ(map.at(1, 2).archetype, "diffuse");
  EXPECT_EQ(map.label.rfind("ok.tsv fnv1a64:", 0), 0u) << map.label;
  EXPECT_EQ(map.label.size(), std::string("ok.tsv fnv1a64:").size() + 16);
  // The label follows the bytes: a changed value is a different map.
  EXPECT_NE(read_head_map(write_map("ok.tsv", "sink\t0.26 retrieval\n-0.0002\t1.0002  diffuse\n")).label, map.label);
}

TEST(HeadMap, RefusesBadInputNamingFileLineAndForm) {
  struct Case {
    const char* text;
    const char* where;
    const char* what;
  };
  const Case cases[] = {
      {"0.5 0.5\n0.5\n", "bad.tsv: line 2", "has 1 cells, the lines before 2"},
      {"0.5 streem\n", "bad.tsv: line 1", "'streem' is neither an archetype nor a number"},
      {"0.5,0.5\n", "bad.tsv: line 1", "'0.5,0.5' is neither"},
      {"0.5 1.5\n", "bad.tsv: line 1", "'1.5' is outside [0, 1]"},
      {"-0.02 1\n", "bad.tsv: line 1", "'-0.02' is outside [0, 1]"},
      {"nan 0\n", "bad.tsv: line 1", "'nan' is neither"},
      {"# nothing\n\n", "bad.tsv", "has no rows"},
  };
  for (const Case& c : cases) {
    const std::string path = write_map("bad.tsv", c.text);
    const std::string error = error_of([&] { read_head_map(path); });
    EXPECT_NE(error.find(c.where), std::string::npos) << c.text << " -> " << error;
    EXPECT_NE(error.find(c.what), std::string::npos) << c.text << " -> " << error;
    EXPECT_NE(error.find("; expected one "), std::string::npos) << error;  // the expected form, every time
  }
  EXPECT_NE(error_of([] { read_head_map("/nonexistent/map.tsv"); }).find("/nonexistent/map.tsv: cannot open"),
            std::string::npos);
}

TEST(HeadMap, RefusesAModelOfAnotherShape) {
  const HeadMap map = read_head_map(write_map("shape.tsv", "sink local\nretrieval 1\n"));
  ModelShape model{"m", 2, 4, 2, 16};
  EXPECT_NO_THROW(map.check_shape(model));
  model.num_kv_heads = 4;
  EXPECT_NE(error_of([&] {
              map.check_shape(model);
            }).find("shape.tsv: head map has 2 layers of 2 KV heads, but model m has 2 layers of 4"),
            std::string::npos);
  model = ModelShape{"m", 3, 4, 2, 16};
  EXPECT_NE(error_of([&] { map.check_shape(model); }).find("model m has 3 layers"), std::string::npos);
}

TEST(HeadMap, PresetsWithAMeasuredMapUseItByDefault) {
  EXPECT_TRUE(preset_head_map_path("llama-3.1-8b").has_value());
  EXPECT_TRUE(preset_head_map_path("mistral-7b-v0.3").has_value());
  EXPECT_FALSE(preset_head_map_path("qwen2.5-7b").has_value());
  EXPECT_FALSE(preset_head_map_path("llama-3.1-70b").has_value());
  const ModelShape llama = load_model_preset("llama-3.1-8b");
  EXPECT_NE(select_head_map("", llama), nullptr);
  EXPECT_EQ(select_head_map("none", llama), nullptr);
  EXPECT_EQ(select_head_map("", load_model_preset("qwen2.5-7b")), nullptr);
  // The 70B preset has 80 layers: the 8B map must be refused for it.
  const std::string map_8b = *preset_head_map_path("llama-3.1-8b");
  EXPECT_NE(error_of([&] { select_head_map(map_8b, load_model_preset("llama-3.1-70b")); }).find("80 layers"),
            std::string::npos);
}

// Every traced head of the synthesised llama-3.1-8b trace has the archetype its measured gate value
// gives it: DuoAttention's sparsity-0.5 rule keeps N - ceil((N - 1) / 2) = 128 of the 256 heads full,
// so a gate above the 128th-largest value must be a retrieval head and one below it a streaming
// (sink or local) head; only heads tied with that value are left to the tie-breaking noise.
TEST(HeadMapSynth, Llama31TraceFollowsTheMeasuredMap) {
  SynthParams params;
  params.model = load_model_preset("llama-3.1-8b");
  params.head_map = select_head_map("", params.model);
  ASSERT_NE(params.head_map, nullptr);
  params.prompt_tokens = 1024;
  params.generated_tokens = 8;
  params.seed = 3;
  const HeadMap& map = *params.head_map;
  std::vector<double> gates;
  for (const HeadMapCell& cell : map.cells) gates.push_back(cell.weight);
  std::sort(gates.begin(), gates.end(), std::greater<>());
  const double boundary = gates[127];

  const auto source = make_synthetic_source(params);
  EXPECT_EQ(source->header().generator.at("head_map"), map.label);
  const std::vector<NeedleSpan>& needles = source->header().requests[0].needles;
  int retrieval = 0;
  double min_retrieval_needle = 1.0, max_streaming_needle = 0.0;
  for (int layer = 0; layer < params.model.num_layers; ++layer) {
    const LayerTrace trace = source->load_layer("0", layer);
    ASSERT_EQ(trace.head_archetypes.size(), 8u);
    for (int h = 0; h < 8; ++h) {
      const std::string& archetype = trace.head_archetypes[static_cast<std::size_t>(h)];
      const double gate = map.at(layer, h).weight;
      const bool is_retrieval = archetype == "retrieval";
      retrieval += is_retrieval;
      if (gate > boundary) {
        EXPECT_TRUE(is_retrieval) << "layer " << layer << " head " << h << " gate " << gate;
      }
      if (gate < boundary) {
        EXPECT_TRUE(archetype == "sink" || archetype == "local")
            << "layer " << layer << " head " << h << ": " << archetype;
      }
      // And the head behaves so: decode queries of retrieval heads find the needles.
      if (layer % 8 == 3) {
        for (int g = h * 4; g < h * 4 + 4; ++g) {
          const double needle = test::mean_stats(trace, g, params.prompt_tokens, needles).needle;
          if (is_retrieval) {
            min_retrieval_needle = std::min(min_retrieval_needle, needle);
          } else {
            max_streaming_needle = std::max(max_streaming_needle, needle);
          }
        }
      }
    }
  }
  EXPECT_EQ(retrieval, 128);
  EXPECT_GT(min_retrieval_needle, 0.3);
  EXPECT_LT(max_streaming_needle, 0.05);
}

TEST(HeadMapSynth, NamedCellsAreTakenAsWrittenAndTheTraceRecordsNoMapWithoutOne) {
  SynthParams params;
  params.model = ModelShape{"tiny", 2, 4, 2, 32};
  params.prompt_tokens = 256;
  params.head_map =
      std::make_shared<HeadMap>(read_head_map(write_map("named.tsv", "diffuse heavy_hitter\nretrieval sink\n")));
  const auto source = make_synthetic_source(params);
  EXPECT_EQ(source->load_layer("0", 0).head_archetypes, (std::vector<std::string>{"diffuse", "heavy_hitter"}));
  EXPECT_EQ(source->load_layer("0", 1).head_archetypes, (std::vector<std::string>{"retrieval", "sink"}));
  params.head_map = nullptr;
  EXPECT_EQ(make_synthetic_source(params)->header().generator.count("head_map"), 0u);
}

}  // namespace
}  // namespace kvsim

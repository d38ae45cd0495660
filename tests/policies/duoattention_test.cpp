// duoattention: hand-checked head masks from a mask file and from the trace proxy, streaming heads'
// sinks + window at every chunk and decode step, untraced layers' per-head counts (footprint =
// f x full + (1 - f) x streaming), the mask file format and spec errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "policies/head_mask_file.h"
#include "policies/head_mask_proxy.h"
#include "policies/registry.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"
#include "util/error.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

// A mask file in a fresh temporary folder; removed with the fixture.
class HeadMaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path(::testing::TempDir()) / ("kvsim_headmask_" + std::to_string(::getpid()) + "_" + test);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  fs::path dir_;
};

// Two MHA heads of dimension 1 (keys ln x, every query 1: attention proportional to x), 8 tokens.
//   head 0: x = [1, 1, 8, 1, 1, 1, 1, 1] -- looks far back (a retrieval head)
//   head 1: x = [4, 1, 1, 1, 1, 1, 4, 4] -- sink and recent tokens (a streaming head)
// Proxy with sinks 1, window 2, the last query (t = 7): a streaming head keeps {0} and {6, 7}, so
// it loses [1, 5]: head 0 12/15 = .8, head 1 5/17 = .294.
policy_test::HandLayer hand_layer() {
  return policy_test::HandLayer({{1, 1, 8, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 1, 4, 4}});
}

TEST(DuoAttention, ProxyScoresByHand) {
  const auto hand = hand_layer();
  const std::vector<std::int64_t> last = {7};
  const std::vector<double> s = streaming_loss_scores(hand.layer, hand.model, last, 1, 2);
  EXPECT_NEAR(s[0], 12.0 / 15.0, 1e-6);
  EXPECT_NEAR(s[1], 5.0 / 17.0, 1e-6);
  // Two observation queries average: t = 6 keeps {0} and {5, 6}, loses [1, 4]: head 0 11/14.
  const std::vector<std::int64_t> two = {6, 7};
  EXPECT_NEAR(streaming_loss_scores(hand.layer, hand.model, two, 1, 2)[0], (11.0 / 14.0 + 12.0 / 15.0) / 2, 1e-6);
}

TEST(DuoAttention, HandProxyMask) {
  const auto hand = hand_layer();
  // sparsity 0.5 of 2 heads: 2 - round(1) = 1 full head, head 0 (the higher proxy score); head 1
  // keeps the sink and the 2 most recent.
  EXPECT_EQ(hand.kept("duoattention(sparsity=0.5, sinks=1, window=2, proxy_window=1)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 6, 7}}));
  EXPECT_EQ(hand.kept("duoattention(sparsity=1, sinks=1, window=2, proxy_window=1)"),
            (LayerResidency{{0, 6, 7}, {0, 6, 7}}));
  EXPECT_EQ(hand.kept("duoattention(sparsity=0, sinks=1, window=2, proxy_window=1)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}}));
}

TEST(DuoAttention, StreamingHeadsEvictAtEveryChunkAndDecodeStep) {
  policy_test::HandLayer hand({{1, 1, 8, 1, 1, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 1, 4, 4, 1, 1}});
  hand.request.prompt_tokens = 8;
  hand.request.generated_tokens = 2;
  testing_support::RecordingPolicy policy(
      PolicyRegistry::builtin().create("duoattention(sparsity=0.5, sinks=1, window=2, proxy_window=1)"));
  const PassPlan plan = make_pass_plan(8, 2, 4);
  const LayerReplay r = replay_layer({hand.model, hand.request, plan, 0, &hand.layer, {}}, policy);
  // Chunk [0,4): head 1 {0, 2, 3}; chunk [4,8): {0, 6, 7}; steps 8 and 9: {0, 7, 8}, {0, 8, 9}.
  const std::vector<std::vector<std::int32_t>> want = {{0, 2, 3}, {0, 6, 7}, {0, 7, 8}, {0, 8, 9}};
  ASSERT_EQ(policy.events().size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(policy.events()[i].kept[1], want[i]) << i;
    EXPECT_EQ(static_cast<std::int64_t>(policy.events()[i].kept[0].size()), policy.events()[i].before[0]) << i;
  }
  EXPECT_EQ(r.final_residency[0].size(), 10u);
}

TEST_F(HeadMaskTest, HandMaskFile) {
  // 2 layers x 2 KV heads; DuoAttention's tsv layout. sparsity 0.5: round(4 x 0.5) = 2 streaming
  // heads, the two lowest values over the whole file: (0,1) .1 and (1,0) .3.
  const std::string mask = write("mask.tsv", "# layer 0\n0.9\t0.1\n0.3\t0.7\n");
  auto hand = hand_layer();
  hand.model.num_layers = 2;
  const std::string spec = "duoattention(sparsity=0.5, sinks=1, window=2, mask=" + mask + ")";
  EXPECT_EQ(hand.kept(spec), (LayerResidency{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 6, 7}}));  // layer 0
  hand.layer.layer = 1;
  const auto policy = PolicyRegistry::builtin().create(spec);
  const PassPlan plan = make_pass_plan(8, 0, 8);
  EXPECT_EQ(replay_layer({hand.model, hand.request, plan, 1, &hand.layer, {}}, *policy).final_residency,
            (LayerResidency{{0, 6, 7}, {0, 1, 2, 3, 4, 5, 6, 7}}));
  EXPECT_EQ(policy->spec(),
            "duoattention(sparsity=0.5, sinks=1, window=2, mask=" + mask + ", prefill=chunk, decode=step)");
  // No queries needed with a mask file; the proxy needs the last proxy_window prompt positions.
  std::vector<std::int64_t> q;
  policy->add_required_queries(hand.request, {}, &q);
  EXPECT_TRUE(q.empty());
  PolicyRegistry::builtin().create("duoattention(proxy_window=3)")->add_required_queries(hand.request, {}, &q);
  EXPECT_EQ(q, (std::vector<std::int64_t>{5, 6, 7}));
}

TEST_F(HeadMaskTest, TiesKeepTheLowerLayerAndHead) {
  const std::string mask = write("ties.csv", "1, 1\n1, 0.5\n");
  // sparsity 0.5: 2 full heads of 4; the three 1s tie -> (0,0) and (0,1).
  const auto policy = PolicyRegistry::builtin().create("duoattention(sparsity=0.5, mask=" + mask + ")");
  const ModelShape model{"m", 2, 2, 2, 1};
  EXPECT_EQ(policy->untraced_head_groups(model, 0), (std::vector<int>{2, 0}));
  EXPECT_EQ(policy->untraced_head_groups(model, 1), (std::vector<int>{0, 2}));
}

// An untraced layer's footprint and peak are f x full + (1 - f) x streaming, head by head.
TEST_F(HeadMaskTest, UntracedFootprintMixesFullAndStreamingHeads) {
  const ModelShape model{"m", 3, 16, 8, 16};
  RequestInfo request;
  request.prompt_tokens = 1000;
  request.generated_tokens = 20;
  const PassPlan plan = make_pass_plan(1000, 20, 256);
  auto replay = [&](const std::string& spec, int layer) {
    return replay_layer({model, request, plan, layer, nullptr, {}}, *PolicyRegistry::builtin().create(spec));
  };
  const LayerReplay full = replay("full", 0);
  const LayerReplay stream = replay("streaming(sinks=16, window=64)", 0);
  // Proxy (no mask): 24 - round(24 x 0.7) = 7 full heads over 3 layers: 2, 2, 3.
  const LayerReplay duo = replay("duoattention(sparsity=0.7, sinks=16, window=64)", 0);
  EXPECT_EQ(replay("duoattention(sparsity=0.7, sinks=16, window=64)", 2).footprint_entry_steps,
            (3 * full.footprint_entry_steps + 5 * stream.footprint_entry_steps) / 8);
  EXPECT_EQ(duo.footprint_entry_steps, (2 * full.footprint_entry_steps + 6 * stream.footprint_entry_steps) / 8);
  for (std::size_t p = 0; p < plan.passes.size(); ++p) {
    EXPECT_EQ(duo.pass_entries[p], (2 * full.pass_entries[p] + 6 * stream.pass_entries[p]) / 8) << p;
  }
  // A mask file: layer 1 has 5 full heads, layer 2 none (sparsity 0.5 of 24 -> 12 full).
  std::string text;
  for (int l = 0; l < 3; ++l) {
    for (int h = 0; h < 8; ++h) {
      const bool high = (l == 0 && h < 7) || (l == 1 && h < 5);
      text += std::string(h ? "\t" : "") + (high ? "0.9" : "0.05");
    }
    text += "\n";
  }
  const std::string mask = write("m.tsv", text);
  const std::string spec = "duoattention(sparsity=0.5, sinks=16, window=64, mask=" + mask + ")";
  EXPECT_EQ(PolicyRegistry::builtin().create(spec)->untraced_head_groups(model, 1), (std::vector<int>{5, 3}));
  EXPECT_EQ(replay(spec, 1).footprint_entry_steps,
            (5 * full.footprint_entry_steps + 3 * stream.footprint_entry_steps) / 8);
  EXPECT_EQ(replay(spec, 2).footprint_entry_steps, stream.footprint_entry_steps);
  // 7 + 5 = 12 high values: layer 0 has 7 full heads.
  EXPECT_EQ(replay(spec, 0).footprint_entry_steps, (7 * full.footprint_entry_steps + stream.footprint_entry_steps) / 8);
}

TEST_F(HeadMaskTest, MaskFileErrorsNameTheFileAndLine) {
  policy_test::expect_error("duoattention(mask=" + (dir_ / "absent.tsv").string() + ")", "absent.tsv: cannot open");
  policy_test::expect_error("duoattention(mask=" + write("ragged.tsv", "0.1 0.2\n0.3\n") + ")",
                            "ragged.tsv: line 2: has 1 values, the lines before 2");
  policy_test::expect_error("duoattention(mask=" + write("big.tsv", "0.1 1.5\n") + ")",
                            "big.tsv: line 1: value 2 (1.5) is outside [0, 1]");
  policy_test::expect_error("duoattention(mask=" + write("nan.tsv", "0.1 nan\n") + ")", "outside [0, 1]");
  policy_test::expect_error("duoattention(mask=" + write("low.tsv", "0.1 -0.02\n") + ")",
                            "value 2 (-0.02) is outside [0, 1]");
  policy_test::expect_error("duoattention(mask=" + write("text.tsv", "0.1 high\n") + ")",
                            "text.tsv: line 1: value 2 is not a number");
  policy_test::expect_error("duoattention(mask=" + write("empty.tsv", "# nothing\n\n") + ")", "has no rows");
  // Shape against the model: found when a layer is replayed.
  const std::string mask = write("small.tsv", "0.5 0.5\n");
  const auto policy = PolicyRegistry::builtin().create("duoattention(mask=" + mask + ")");
  const ModelShape model{"m", 2, 2, 2, 1};
  try {
    policy->untraced_head_groups(model, 0);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("small.tsv: has 1 lines (layers) of 2 values (KV heads), but model m has 2 "
                                         "layers of 2 KV heads"),
              std::string::npos)
        << e.what();
  }
}

TEST(DuoAttention, SpecDefaultsAndBadParameters) {
  const auto& reg = PolicyRegistry::builtin();
  EXPECT_EQ(reg.create("duoattention")->spec(),
            "duoattention(sparsity=0.5, sinks=128, window=256, proxy_window=32, prefill=chunk, decode=step)");
  EXPECT_EQ(reg.create("duoattention")->untraced_head_groups(ModelShape{"m", 2, 32, 8, 128}, 0),
            (std::vector<int>{4, 4}));
  policy_test::expect_rejected({"duoattention(sparsity=-0.1)", "duoattention(window=0)", "duoattention(sinks=-1)",
                                "duoattention(proxy_window=0)", "duoattention(budget=0.2)"});
  policy_test::expect_error("duoattention(sparsity=1.5)", "parameter 'sparsity': must be in [0, 1]");
}

}  // namespace
}  // namespace kvsim

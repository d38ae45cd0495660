// prulong: DuoAttention's head masks with PruLong's count rule and defaults (policies/headmask.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "policies/registry.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/policy_test_util.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

std::string write_mask(const std::string& name, const std::string& text) {
  const fs::path path = fs::path(::testing::TempDir()) / ("kvsim_prulong_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path) << text;
  return path.string();
}

TEST(PruLong, CountRuleDiffersFromDuoAttention) {
  // 4 heads, sparsity 0.3: PruLong keeps int(4 x 0.7) = int(2.8) = 2 full heads; DuoAttention
  // streams round(4 x 0.3) = round(1.2) = 1 head, so keeps 3.
  const std::string mask = write_mask("rule.tsv", "0.9\t0.2\n0.6\t0.4\n");
  const ModelShape model{"m", 2, 2, 2, 1};
  const auto prulong = PolicyRegistry::builtin().create("prulong(sparsity=0.3, mask=" + mask + ")");
  const auto duo = PolicyRegistry::builtin().create("duoattention(sparsity=0.3, mask=" + mask + ")");
  EXPECT_EQ(prulong->untraced_head_groups(model, 0), (std::vector<int>{1, 1}));  // .9 full, .2 streaming
  EXPECT_EQ(prulong->untraced_head_groups(model, 1), (std::vector<int>{1, 1}));  // .6 full, .4 streaming
  EXPECT_EQ(duo->untraced_head_groups(model, 0), (std::vector<int>{1, 1}));
  EXPECT_EQ(duo->untraced_head_groups(model, 1), (std::vector<int>{2, 0}));  // .4 is the 3rd highest
  fs::remove(mask);
}

TEST(PruLong, HandLayerKeepsSinksAndWindowInStreamingHeads) {
  // Head 0 attends far back, head 1 to the sink and the recent tokens (see duoattention_test.cpp):
  // with sparsity 0.5, int(2 x 0.5) = 1 full head, head 0; head 1 keeps {0} and the last 3.
  const policy_test::HandLayer hand({{1, 1, 8, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 1, 4, 4}});
  EXPECT_EQ(hand.kept("prulong(sparsity=0.5, sinks=1, window=3, proxy_window=1)"),
            (LayerResidency{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 5, 6, 7}}));
}

TEST(PruLong, Defaults) {
  const auto p = PolicyRegistry::builtin().create("prulong");
  EXPECT_EQ(p->spec(), "prulong(sparsity=0.7, sinks=128, window=1024, proxy_window=32, prefill=chunk, decode=step)");
  // Without a mask file: int(256 x 0.3) = int(76.80000000000001) = 76 full heads over 32 layers,
  // layer 5's even share floor(6 x 76 / 32) - floor(5 x 76 / 32) = 14 - 11 = 3.
  const ModelShape model{"m", 32, 32, 8, 128};
  EXPECT_EQ(p->untraced_head_groups(model, 5), (std::vector<int>{3, 5}));
  int total = 0;
  for (int layer = 0; layer < 32; ++layer) total += p->untraced_head_groups(model, layer)[0];
  EXPECT_EQ(total, 76);
  policy_test::expect_rejected({"prulong(sparsity=1.01)", "prulong(mask=/nonexistent/masks.tsv)"});
}

}  // namespace
}  // namespace kvsim

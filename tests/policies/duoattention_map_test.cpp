// duoattention without a mask file on a preset with a published DuoAttention pattern (issue 19):
// the full heads are those of DuoAttention's own sparsify rule on the bundled gate values (the
// rule itself is checked against the original Python in tests/reference/test_duo_sparsify_reference.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/head_mask_file.h"
#include "policies/registry.h"
#include "traces/duo_sparsify.h"
#include "traces/head_map.h"
#include "traces/model_presets.h"

namespace kvsim {
namespace {

std::vector<int> full_per_layer(const std::string& spec, const ModelShape& model) {
  const auto policy = PolicyRegistry::builtin().create(spec);
  std::vector<int> full;
  for (int layer = 0; layer < model.num_layers; ++layer) {
    const std::vector<int> groups = policy->untraced_head_groups(model, layer);
    EXPECT_EQ(groups[0] + groups[1], model.num_kv_heads);
    full.push_back(groups[0]);
  }
  return full;
}

TEST(DuoAttentionBundledMap, FullHeadsFollowThePublishedGates) {
  const ModelShape llama = load_model_preset("llama-3.1-8b");
  const auto map = select_head_map("", llama);
  ASSERT_NE(map, nullptr);
  std::vector<double> gates;
  for (const HeadMapCell& cell : map->cells) gates.push_back(cell.weight);
  for (const double sparsity : {0.5, 0.75, 0.9}) {
    const std::vector<int> got = full_per_layer("duoattention(sparsity=" + std::to_string(sparsity) + ")", llama);
    const std::vector<bool> mask = duo_sparsify(gates, sparsity);
    int total = 0;
    for (int layer = 0; layer < llama.num_layers; ++layer) {
      int want = 0;
      for (int h = 0; h < 8; ++h) want += mask[static_cast<std::size_t>(layer * 8 + h)];
      EXPECT_EQ(got[static_cast<std::size_t>(layer)], want) << "sparsity " << sparsity << " layer " << layer;
      total += got[static_cast<std::size_t>(layer)];
    }
    // numpy's linear quantile over 256 distinct (noised) values: N - ceil((N - 1) s) full heads.
    EXPECT_EQ(total, 256 - static_cast<int>(std::ceil(255 * sparsity))) << sparsity;
  }
  // A measured map is uneven over layers, unlike the proxy's even spread (4 per layer at 0.5).
  const std::vector<int> half = full_per_layer("duoattention", llama);
  EXPECT_NE(*std::min_element(half.begin(), half.end()), *std::max_element(half.begin(), half.end()));
}

TEST(DuoAttentionBundledMap, OtherPresetsAndPruLongKeepTheProxysEvenSpread) {
  // qwen2.5-7b has no published pattern: 28 layers x 4 KV heads, 56 full heads spread 2 per layer.
  const ModelShape qwen = load_model_preset("qwen2.5-7b");
  for (const int full : full_per_layer("duoattention", qwen)) EXPECT_EQ(full, 2);
  // prulong keeps its proxy on llama-3.1-8b too: int(256 x 0.3) = 76 full heads, spread evenly.
  const std::vector<int> prulong = full_per_layer("prulong", load_model_preset("llama-3.1-8b"));
  EXPECT_EQ(std::accumulate(prulong.begin(), prulong.end(), 0), 76);
  EXPECT_LE(*std::max_element(prulong.begin(), prulong.end()) - *std::min_element(prulong.begin(), prulong.end()), 1);
}

// mask= reads DuoAttention's own files too: Mistral's pattern holds gates down to -2.3e-4, which the
// original's load_attn_pattern clips to 0 (and which mask= used to refuse).
TEST(DuoAttentionBundledMap, MaskFileClipsThePublishedGatesOvershoot) {
  const HeadScoreTable table = read_head_score_table(*preset_head_map_path("mistral-7b-v0.3"));
  EXPECT_EQ(table.layers, 32);
  EXPECT_EQ(table.kv_heads, 8);
  EXPECT_EQ(table.at(0, 0), 0.0);  // -5.72e-05 in the file
  EXPECT_EQ(*std::min_element(table.values.begin(), table.values.end()), 0.0);
}

}  // namespace
}  // namespace kvsim

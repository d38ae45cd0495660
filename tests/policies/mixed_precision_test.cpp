// mixed_precision (MiKV-style): the high-precision class is SnapKV's kept set, everything else is
// quantized at low_bits, nothing is evicted; bytes by hand.
#include <gtest/gtest.h>

#include <algorithm>

#include "policies/quantize.h"
#include "policies/registry.h"
#include "sim/replay/engine.h"
#include "sim/replay/layer_replay.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

// On a random 1-layer GQA trace (4 query / 2 KV heads, head_dim 8, 40 + 4 tokens, chunks of
// `chunk`): mixed_precision `mixed` (low_bits 2, group 4) keeps at full precision exactly the prompt
// entries SnapKV `snap` keeps, `want_high` per head, and quantizes the rest; nothing is evicted.
// Returns each head's stored keys.
std::vector<HeadMatrix> expect_high_class_is_snapkv_kept_set(std::uint64_t seed, std::int64_t chunk, const char* snap,
                                                             const char* mixed, int want_high) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const std::int64_t n = 40, m = 4;
  const auto source = testing_support::random_trace(model, n, m, {0}, seed);
  const LayerTrace trace = source.load_layer("0", 0);
  const RequestInfo& request = source.header().requests[0];
  const auto snap_policy = PolicyRegistry::builtin().create(snap);
  const auto mixed_policy = PolicyRegistry::builtin().create(mixed);
  const PassPlan plan = make_pass_plan(n, m, chunk);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const LayerResidency kept = replay_layer({model, request, plan, 0, &trace, {}}, *snap_policy).final_residency;
  const LayerResidency all = replay_layer({model, request, plan, 0, &trace, {}}, *mixed_policy).final_residency;
  for (const auto& head : all) EXPECT_EQ(head.size(), static_cast<std::size_t>(n + m));
  std::vector<HeadMatrix> keys;
  for (int h = 0; h < 2; ++h) {
    const CompressedHead c = mixed_policy->compressed_head(model, request, prefill, trace, h);
    int high = 0;
    for (std::int64_t t = 0; t < n; ++t) {
      const auto& k = kept[static_cast<std::size_t>(h)];
      const bool important = std::binary_search(k.begin(), k.end(), static_cast<std::int32_t>(t));
      const HeadMatrix key = trace.keys[static_cast<std::size_t>(h)].row(t);
      const HeadMatrix value = trace.values[static_cast<std::size_t>(h)].row(t);
      EXPECT_EQ(HeadMatrix(c.keys.row(t)), important ? key : fake_quantize_per_token(key, 2, 4)) << h << " " << t;
      EXPECT_EQ(HeadMatrix(c.values.row(t)), important ? value : fake_quantize_per_token(value, 2, 4)) << h << " " << t;
      high += important;
    }
    EXPECT_EQ(high, want_high) << mixed;
    keys.push_back(c.keys);
  }
  return keys;
}

TEST(MixedPrecision, HighClassIsSnapKvKeptSetRestQuantized) {
  // The token budget, window included (positions >= n from snapkv's decode are not prompt).
  expect_high_class_is_snapkv_kept_set(
      11, 40, "snapkv(budget=10, window=4, kernel=1)",
      "mixed_precision(budget=10, window=4, kernel=1, high_bits=16, low_bits=2, group=4)", 10);
}

TEST(MixedPrecision, BytesByHand) {
  const ModelShape model{"l", 1, 32, 8, 128};  // fp16
  RequestInfo request;
  request.prompt_tokens = 1000;
  const auto policy = PolicyRegistry::builtin().create("mixed_precision(budget=0.2, window=32)");
  // High class: round(0.2 * 1000) + 32 = 232 entries at 256 bytes per K (or V); the other 768 at
  // 2 bits: 128 * 2/8 + 128/32 * 4 = 48 bytes; 10 decode entries at 256.
  StoredEntries s = policy->stored(model, request, {}, 1010);
  EXPECT_EQ(s.key_compressed, 1000);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 232 * 256 + 768 * 48 + 10 * 256);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 232 * 256 + 768 * 48 + 10 * 256);
  // high_bits=8, low_bits=4: 128 + 16 = 144 and 64 + 16 = 80 bytes.
  s = PolicyRegistry::builtin()
          .create("mixed_precision(budget=0.2, window=32, high_bits=8, low_bits=4)")
          ->stored(model, request, {}, 1000);
  EXPECT_DOUBLE_EQ(s.bytes.total(), 2.0 * (232 * 144 + 768 * 80));
  // Mid-prompt: all at full precision.
  EXPECT_DOUBLE_EQ(policy->stored(model, request, {}, 500).bytes.total(), 500 * 512);
}

// prefill=chunk: after every chunk, what chunked SnapKV would evict drops to low precision for good,
// so the high class at the end is chunked SnapKV's kept set: 4 chunks of 10, min(round(0.2 x 10) + 2,
// 10) = 4 each.
TEST(MixedPrecision, ChunkModeHighClassIsChunkedSnapKvKeptSet) {
  const std::vector<HeadMatrix> chunked = expect_high_class_is_snapkv_kept_set(
      12, 10, "snapkv(budget=0.2, window=2, kernel=1, prefill=chunk)",
      "mixed_precision(budget=0.2, window=2, kernel=1, high_bits=16, low_bits=2, group=4, prefill=chunk)", 16);
  const std::vector<HeadMatrix> once = expect_high_class_is_snapkv_kept_set(
      12, 10, "snapkv(budget=0.2, window=2, kernel=1)",
      "mixed_precision(budget=0.2, window=2, kernel=1, high_bits=16, low_bits=2, group=4)", 10);
  EXPECT_NE(chunked, once);  // the chunked split is not the post-fill one on this trace
}

TEST(MixedPrecision, ChunkModeBytesByHand) {
  const ModelShape model{"l", 1, 32, 8, 128};  // fp16: 256 bytes per K (or V), 48 at 2 bits
  RequestInfo request;
  request.prompt_tokens = 1000;
  const PassPlan plan = make_pass_plan(1000, 10, 400);  // chunks 400, 400, 200
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const auto policy = PolicyRegistry::builtin().create("mixed_precision(budget=0.2, window=32, prefill=chunk)");
  // High class after each chunk: min(round(0.2 c) + 32, c) = 112, 112, 72 -> 112, 224, 296.
  StoredEntries s = policy->stored(model, request, prefill, 399);
  EXPECT_EQ(s.key_compressed, 0);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 399 * 256);
  s = policy->stored(model, request, prefill, 400);
  EXPECT_EQ(s.key_compressed, 400);
  EXPECT_DOUBLE_EQ(s.bytes.key_bytes, 112 * 256 + 288 * 48);
  s = policy->stored(model, request, prefill, 800);
  EXPECT_DOUBLE_EQ(s.bytes.value_bytes, 224 * 256 + 576 * 48);
  s = policy->stored(model, request, prefill, 1010);
  EXPECT_EQ(s.value_compressed, 1000);
  EXPECT_DOUBLE_EQ(s.bytes.total(), 2.0 * (296 * 256 + 704 * 48 + 10 * 256));
  // post_fill on the same chunks: nothing compressed until the prompt is done, then 232 high.
  const auto once = PolicyRegistry::builtin().create("mixed_precision(budget=0.2, window=32)");
  EXPECT_DOUBLE_EQ(once->stored(model, request, prefill, 800).bytes.key_bytes, 800 * 256);
  EXPECT_DOUBLE_EQ(once->stored(model, request, prefill, 1000).bytes.key_bytes, 232 * 256 + 768 * 48);
}

TEST(MixedPrecision, RejectsBadParameters) {
  for (const char* spec :
       {"mixed_precision(low_bits=3)", "mixed_precision(high_bits=2)", "mixed_precision(high_bits=4, low_bits=8)",
        "mixed_precision(budget=4, window=32)", "mixed_precision(group=0)", "mixed_precision(prefill=none)",
        "mixed_precision(decode=step)"}) {
    EXPECT_THROW(PolicyRegistry::builtin().create(spec), InputError) << spec;
  }
}

}  // namespace
}  // namespace kvsim

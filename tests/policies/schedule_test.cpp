#include "policies/schedule.h"

#include <gtest/gtest.h>

#include "policies/pass_plan.h"

namespace kvsim {
namespace {

TEST(Schedule, RoundsHalfToEvenLikePython) {
  EXPECT_EQ(round_half_even(0.5), 0);
  EXPECT_EQ(round_half_even(1.5), 2);
  EXPECT_EQ(round_half_even(2.5), 2);
  EXPECT_EQ(round_half_even(23.5), 24);
  EXPECT_EQ(round_half_even(2.4999), 2);
  EXPECT_EQ(round_half_even(2.5001), 3);
  EXPECT_EQ(round_half_even(7.0), 7);
}

TEST(Schedule, ChunkCapacityFollowsTheFootprintPapersAccounting) {
  // n = 10, c = 4: chunks of 4, 4, 2; b = 0.5, w = 1:
  // min(2+1, 4) = 3, then 3 + 3 = 6, then 6 + min(1+1, 2) = 8.
  const PassPlan plan = make_pass_plan(10, 3, 4);
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  Budget budget;
  budget.fraction = 0.5;
  EXPECT_EQ(budget.capacity(plan.passes[0], prefill, PrefillEviction::kChunk, 1), 3);
  EXPECT_EQ(budget.capacity(plan.passes[1], prefill, PrefillEviction::kChunk, 1), 6);
  EXPECT_EQ(budget.capacity(plan.passes[2], prefill, PrefillEviction::kChunk, 1), 8);
  // Decode keeps the capacity reached at the end of prefill.
  EXPECT_EQ(budget.capacity(plan.passes[4], prefill, PrefillEviction::kChunk, 1), 8);
  // Post-fill: min(round(0.5*10) + 1, 10) = 6; a large window saturates at n.
  EXPECT_EQ(budget.capacity(plan.passes[2], prefill, PrefillEviction::kPostFill, 1), 6);
  EXPECT_EQ(budget.capacity(plan.passes[2], prefill, PrefillEviction::kPostFill, 32), 10);
  Budget tokens;
  tokens.is_fraction = false;
  tokens.tokens = 7;
  EXPECT_EQ(tokens.capacity(plan.passes[0], prefill, PrefillEviction::kChunk, 1), 7);
}

TEST(Schedule, EvictionPointsSelectPasses) {
  const PassPlan plan = make_pass_plan(10, 4, 4);  // passes: 3 chunks, then 4 decode steps
  ASSERT_EQ(plan.num_prefill, 3);
  const EvictionPoints post_fill{PrefillEviction::kPostFill, 0};
  const EvictionPoints chunk_every2{PrefillEviction::kChunk, 2};
  std::vector<bool> a, b;
  for (const Pass& p : plan.passes) {
    a.push_back(post_fill.after(p, plan.num_prefill));
    b.push_back(chunk_every2.after(p, plan.num_prefill));
  }
  EXPECT_EQ(a, (std::vector<bool>{false, false, true, false, false, false, false}));
  EXPECT_EQ(b, (std::vector<bool>{true, true, true, false, true, false, true}));
}

TEST(Schedule, LengthRuleFollowsTheSequenceLengthNotTheStepCount) {
  // Prompt 10, 8 decode steps at positions 10..17. R-KV's step_length rule with K = 4 compresses
  // in the step whose token lands at position 12 and 16 (length before the step 12, 16); every:4
  // after the 4th and 8th step (positions 13 and 17).
  const PassPlan plan = make_pass_plan(10, 8, 10);
  ASSERT_EQ(plan.num_prefill, 1);
  EvictionPoints by_length{PrefillEviction::kPostFill, 4};
  by_length.decode_by_position = true;
  const EvictionPoints every4{PrefillEviction::kPostFill, 4};
  std::vector<std::int64_t> length_positions, every_positions;
  for (const Pass& p : plan.passes) {
    if (p.prefill) continue;
    if (by_length.after(p, plan.num_prefill)) length_positions.push_back(p.begin);
    if (every4.after(p, plan.num_prefill)) every_positions.push_back(p.begin);
  }
  EXPECT_EQ(length_positions, (std::vector<std::int64_t>{12, 16}));
  EXPECT_EQ(every_positions, (std::vector<std::int64_t>{13, 17}));
}

TEST(PassPlan, ChunksThatDoNotDivideThePrompt) {
  const PassPlan plan = make_pass_plan(10, 2, 4);
  ASSERT_EQ(plan.passes.size(), 5u);
  EXPECT_EQ(plan.passes[2].begin, 8);
  EXPECT_EQ(plan.passes[2].end, 10);
  EXPECT_FALSE(plan.passes[3].prefill);
  EXPECT_EQ(plan.passes[4].begin, 11);
  EXPECT_EQ(make_pass_plan(10, 0, 100).passes.size(), 1u);
}

}  // namespace
}  // namespace kvsim

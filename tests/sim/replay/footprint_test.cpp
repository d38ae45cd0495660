// Footprint and peak against the closed forms of the "Cache Me If You Can" evaluation code
// (qqtang-code/PruLong eval/viz/kv_footprint.py, ported here by hand from policy-notes.md).
#include <gtest/gtest.h>

#include <algorithm>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "sim/replay/engine.h"
#include "tests/test_support.h"

namespace kvsim {
namespace {

std::int64_t A(std::int64_t k) { return k * (k + 1) / 2; }

struct Closed {
  std::int64_t entry_steps = 0;
  std::int64_t peak = 0;
};

std::vector<std::pair<std::int64_t, std::int64_t>> chunks(std::int64_t n, std::int64_t c) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (std::int64_t a = 0; a < n; a += c) out.push_back({a, std::min(a + c, n)});
  return out;
}

Closed streaming_mask_stats(std::int64_t n, std::int64_t m, std::int64_t c, std::int64_t sinks, std::int64_t window) {
  Closed r;
  for (auto [a, b] : chunks(n, c)) {
    const std::int64_t loc = std::min(a, window), sink = std::min(a - loc, sinks);
    r.entry_steps += A(b - a) + (b - a) * (loc + sink);
    r.peak = std::max(r.peak, b - a + loc + sink);
  }
  for (std::int64_t a = n; a < n + m; ++a) {
    const std::int64_t loc = std::min(a, window), sink = std::min(a - loc, sinks);
    r.entry_steps += 1 + loc + sink;
    r.peak = std::max(r.peak, 1 + loc + sink);
  }
  return r;
}

Closed global_mask_stats(std::int64_t n, std::int64_t m, std::int64_t c, double keep, std::int64_t kv_window) {
  Closed r;
  std::int64_t past = 0;
  for (auto [a, b] : chunks(n, c)) {
    r.entry_steps += A(b - a) + past * (b - a);
    r.peak = std::max(r.peak, past + b - a);
    past += std::min(round_half_even(keep * static_cast<double>(b - a)) + kv_window, b - a);
  }
  r.entry_steps += A(m) + past * m;
  r.peak = std::max(r.peak, past + m);
  return r;
}

PolicyResult run_one(const std::string& spec, std::int64_t n, std::int64_t m, std::int64_t c, bool traced) {
  ModelShape model{"tiny", 3, 4, 2, 8, 16, 10000.0};
  auto source = testing_support::random_trace(model, n, m, traced ? std::vector<int>{1} : std::vector<int>{}, 5);
  auto policy = PolicyRegistry::builtin().create(spec);
  const Policy* ptr = policy.get();
  ReplayOptions options;
  options.chunk_tokens = c;
  return replay_request(source, source.header().requests[0], {&ptr, 1}, options).front();
}

void expect_closed(const PolicyResult& r, const Closed& per_head, std::int64_t n, std::int64_t m) {
  const std::int64_t heads = 3 * 2;
  EXPECT_EQ(r.footprint_entry_steps, per_head.entry_steps * heads) << r.spec;
  EXPECT_EQ(r.peak_entries, per_head.peak * heads) << r.spec;
  EXPECT_DOUBLE_EQ(r.footprint_normalized, static_cast<double>(per_head.entry_steps) / static_cast<double>(A(n + m)));
  EXPECT_DOUBLE_EQ(r.peak_normalized, static_cast<double>(per_head.peak) / static_cast<double>(n + m));
  EXPECT_EQ(r.peak_bytes, r.peak_entries * 2 * 8 * 2);
}

TEST(Footprint, DesignHandCheck) {
  // DESIGN.md §2: n=4, m=2, c=2, sinks 1 + window 1 -> F = 3 + 7 + 3 + 3 = 16, 16/21; peak 4/6.
  const PolicyResult r = run_one("streaming(sinks=1, window=1)", 4, 2, 2, false);
  EXPECT_EQ(r.footprint_entry_steps, 16 * 6);
  EXPECT_NEAR(r.footprint_normalized, 16.0 / 21.0, 1e-15);
  EXPECT_EQ(r.peak_entries, 4 * 6);
}

TEST(Footprint, FullIsCausalAttention) {
  for (bool traced : {false, true}) {
    const PolicyResult r = run_one("full", 37, 5, 8, traced);
    expect_closed(r, {A(42), 42}, 37, 5);
    EXPECT_DOUBLE_EQ(r.footprint_normalized, 1.0);
  }
}

struct Case {
  std::int64_t n, m, c, sinks, window;
  double budget;
};

class FootprintClosedForm : public ::testing::TestWithParam<Case> {};

TEST_P(FootprintClosedForm, StreamingMatchesStreamingMaskStats) {
  const Case k = GetParam();
  const std::string spec = "streaming(sinks=" + std::to_string(k.sinks) + ", window=" + std::to_string(k.window) + ")";
  for (bool traced : {false, true}) {
    expect_closed(run_one(spec, k.n, k.m, k.c, traced), streaming_mask_stats(k.n, k.m, k.c, k.sinks, k.window), k.n,
                  k.m);
  }
}

TEST_P(FootprintClosedForm, ChunkedSnapKvMatchesGlobalMaskStats) {
  const Case k = GetParam();
  char budget[32];
  std::snprintf(budget, sizeof budget, "%g", k.budget);
  const std::string spec =
      std::string("snapkv(budget=") + budget + ", window=" + std::to_string(k.window) + ", kernel=3, prefill=chunk)";
  for (bool traced : {false, true}) {
    expect_closed(run_one(spec, k.n, k.m, k.c, traced), global_mask_stats(k.n, k.m, k.c, k.budget, k.window), k.n, k.m);
  }
}

TEST_P(FootprintClosedForm, PostFillSnapKvIsOneChunkOfEviction) {
  const Case k = GetParam();
  char budget[32];
  std::snprintf(budget, sizeof budget, "%g", k.budget);
  const std::string spec = std::string("snapkv(budget=") + budget + ", window=" + std::to_string(k.window) + ")";
  // Post-fill eviction pays the whole prompt in prefill; afterwards round(b*n)+w entries remain.
  const PolicyResult r = run_one(spec, k.n, k.m, k.c, true);
  Closed want;
  for (auto [a, b] : chunks(k.n, k.c)) want.entry_steps += A(b - a) + a * (b - a);
  const std::int64_t kept = std::min(round_half_even(k.budget * k.n) + k.window, k.n);
  want.entry_steps += A(k.m) + kept * k.m;
  want.peak = std::max(k.n, kept + k.m);
  expect_closed(r, want, k.n, k.m);
}

INSTANTIATE_TEST_SUITE_P(Cases, FootprintClosedForm,
                         ::testing::Values(Case{64, 8, 16, 4, 8, 0.25},
                                           Case{100, 7, 30, 2, 5, 0.5},    // 30 does not divide 100
                                           Case{97, 0, 97, 4, 16, 0.3},    // unchunked, no decode
                                           Case{50, 12, 7, 1, 9, 0.1},     // window > chunk
                                           Case{235, 3, 235, 4, 3, 0.1}),  // round(23.5) -> 24
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const Case& k = info.param;
                           return "n" + std::to_string(k.n) + "_m" + std::to_string(k.m) + "_c" + std::to_string(k.c) +
                                  "_w" + std::to_string(k.window);
                         });

}  // namespace
}  // namespace kvsim

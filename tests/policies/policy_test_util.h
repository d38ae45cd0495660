#pragma once
// Test helpers shared by the policy tests: spec errors, kept counts at every eviction, and a
// hand-built MHA layer for the SnapKV-scored policies.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "policies/registry.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/recording_policy.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim::policy_test {

// Every spec must be rejected with an InputError.
inline void expect_rejected(std::initializer_list<const char*> specs) {
  for (const char* spec : specs) EXPECT_THROW(PolicyRegistry::builtin().create(spec), InputError) << spec;
}

// `spec` must be rejected with an InputError whose message contains `fragment`.
inline void expect_error(const std::string& spec, const std::string& fragment) {
  try {
    PolicyRegistry::builtin().create(spec);
    FAIL() << "no error for " << spec;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// Kept count per head after each eviction point == `want` (the capacity rule of DESIGN.md §4),
// traced (2 KV heads of a random GQA layer from `seed`) and untraced (one representative head).
// With same_sets, every eviction must also leave all heads with the same positions.
inline void expect_kept_counts(const std::string& spec, std::int64_t n, std::int64_t m, std::int64_t chunk,
                               const std::vector<std::int64_t>& want, std::uint64_t seed, bool same_sets = false) {
  const ModelShape model{"tiny", 1, 4, 2, 8};
  const auto source = testing_support::random_trace(model, n, m, {0}, seed);
  const LayerTrace trace = source.load_layer("0", 0);
  const PassPlan plan = make_pass_plan(n, m, chunk);
  for (const LayerTrace* t : {&trace, static_cast<const LayerTrace*>(nullptr)}) {
    testing_support::RecordingPolicy policy(PolicyRegistry::builtin().create(spec));
    replay_layer({model, source.header().requests[0], plan, 0, t, {}}, policy);
    std::vector<std::vector<std::int64_t>> expected;
    for (std::int64_t c : want) expected.push_back(std::vector<std::int64_t>(t ? 2 : 1, c));
    EXPECT_EQ(policy.sizes(), expected) << spec << (t ? " traced" : " untraced");
    if (same_sets) {
      EXPECT_TRUE(policy.same_sets()) << spec;
    }
  }
}

// An MHA layer of dimension 1: KV head h has keys (and values) ln x[h][j] and its query head 1 at
// every position, so its attention is proportional to x[h].
inline LayerTrace log_weight_layer(const std::vector<std::vector<double>>& x, int layer = 0) {
  LayerTrace t;
  t.layer = layer;
  for (const auto& xs : x) {
    HeadMatrix k(static_cast<Eigen::Index>(xs.size()), 1);
    for (std::size_t j = 0; j < xs.size(); ++j)
      k(static_cast<Eigen::Index>(j), 0) = static_cast<float>(std::log(xs[j]));
    t.keys.push_back(k);
    t.values.push_back(k);
    t.queries.push_back(HeadMatrix::Ones(k.rows(), 1));
  }
  for (std::int64_t p = 0; p < static_cast<std::int64_t>(x[0].size()); ++p) t.query_positions.push_back(p);
  return t;
}

// A two-head log_weight_layer with its model and request, replayed by one spec.
struct HandLayer {
  ModelShape model{"hand", 1, 2, 2, 1};
  RequestInfo request;
  LayerTrace layer;
  explicit HandLayer(const std::vector<std::vector<double>>& x) : layer(log_weight_layer(x)) {
    request.prompt_tokens = static_cast<std::int64_t>(x[0].size());
  }
  // Kept positions per head after one post-fill eviction of the whole prompt.
  LayerResidency kept(const std::string& spec) const {
    const auto policy = PolicyRegistry::builtin().create(spec);
    const PassPlan plan = make_pass_plan(request.prompt_tokens, 0, request.prompt_tokens);
    return replay_layer({model, request, plan, 0, &layer, {}}, *policy).final_residency;
  }
};

// For a policy whose KV heads share the layer's budget (adakv, lava), `spec` with b=0.3, w=8,
// prefill=chunk, decode=step: on a GQA 8 query / 4 KV head layer with chunks 100,100,100,50 the
// capacity after chunk j is sum min(round(0.3 c) + 8, c) = 38, 76, 114, 137 per head, and decode
// keeps 137. At every eviction the traced layer's heads hold exactly 4 x capacity between them,
// each keeps its window, their counts differ, and an untraced layer's head keeps the capacity.
// With `slack` > 0 (a policy that rounds each head's share, as FFY0/AdaKV does), the traced total
// may be up to `slack` entries off 4 x capacity instead.
inline void expect_shared_layer_budget(const char* spec, std::int64_t slack = 0) {
  const ModelShape model{"tiny", 2, 8, 4, 8};
  const std::int64_t n = 350, m = 3;
  auto source = testing_support::random_trace(model, n, m, {0}, 21, 2.0f);
  const LayerTrace trace = source.load_layer("0", 0);
  const RequestInfo& request = source.header().requests[0];
  const PassPlan plan = make_pass_plan(n, m, 100);
  const std::vector<std::int64_t> capacity{38, 76, 114, 137, 137, 137, 137};
  testing_support::RecordingPolicy traced(PolicyRegistry::builtin().create(spec));
  replay_layer({model, request, plan, 0, &trace, {}}, traced);
  testing_support::RecordingPolicy untraced(PolicyRegistry::builtin().create(spec));
  replay_layer({model, request, plan, 1, nullptr, {}}, untraced);
  const auto traced_sizes = traced.sizes(), untraced_sizes = untraced.sizes();
  ASSERT_EQ(traced_sizes.size(), capacity.size()) << spec;
  ASSERT_EQ(untraced_sizes.size(), capacity.size()) << spec;
  bool uneven = false;
  for (std::size_t e = 0; e < capacity.size(); ++e) {
    std::int64_t total = 0;
    for (std::int64_t s : traced_sizes[e]) {
      total += s;
      uneven |= s != capacity[e];
      EXPECT_GE(s, std::min<std::int64_t>(8, capacity[e])) << spec << " eviction " << e;  // the window stays
    }
    EXPECT_LE(std::abs(total - 4 * capacity[e]), slack) << spec << " eviction " << e << ": total " << total;
    EXPECT_EQ(untraced_sizes[e], (std::vector<std::int64_t>{capacity[e]})) << spec << " eviction " << e;
  }
  EXPECT_TRUE(uneven) << spec << ": per-head budgets should differ on random heads";
}

}  // namespace kvsim::policy_test

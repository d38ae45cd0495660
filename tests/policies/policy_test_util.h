#pragma once
// Test helpers shared by the policy tests: spec errors, kept counts at every eviction, and a
// hand-built MHA layer for the SnapKV-scored policies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "policies/registry.h"
#include "sim/layer_replay.h"
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
    for (std::size_t j = 0; j < xs.size(); ++j) k(static_cast<Eigen::Index>(j), 0) = static_cast<float>(std::log(xs[j]));
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

}  // namespace kvsim::policy_test

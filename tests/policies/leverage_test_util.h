#pragma once
// Test helpers shared by the l2norm, compactor and curdkv tests: hand-built layers, one eviction
// called directly, and a kept-count check of the DESIGN.md §4 capacity rule through replay_layer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "policies/registry.h"
#include "sim/replay/layer_replay.h"
#include "tests/policies/recording_policy.h"
#include "tests/test_support.h"

namespace kvsim::leverage_test {

// A layer from row lists: keys/values per KV head, queries per query head at every position.
inline LayerTrace make_layer(const std::vector<std::vector<std::vector<float>>>& keys,
                             const std::vector<std::vector<std::vector<float>>>& values,
                             const std::vector<std::vector<std::vector<float>>>& queries = {}) {
  auto to_matrix = [](const std::vector<std::vector<float>>& rows) {
    HeadMatrix m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows.front().size()));
    for (std::size_t i = 0; i < rows.size(); ++i) {
      for (std::size_t j = 0; j < rows[i].size(); ++j)
        m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = rows[i][j];
    }
    return m;
  };
  LayerTrace t;
  for (const auto& k : keys) t.keys.push_back(to_matrix(k));
  for (const auto& v : values) t.values.push_back(to_matrix(v));
  for (const auto& q : queries) t.queries.push_back(to_matrix(q));
  const auto n = static_cast<std::int64_t>(keys.front().size());
  for (std::int64_t p = 0; p < n; ++p) t.query_positions.push_back(p);
  return t;
}

// Kept positions per head after one post-fill eviction of an n-token prompt (all resident) in
// layer `layer` of the model.
inline LayerResidency evict_once(const std::string& spec, const ModelShape& model, const LayerTrace* trace,
                                 std::int64_t n, int layer = 0) {
  const auto policy = PolicyRegistry::builtin().create(spec);
  RequestInfo request;
  request.id = "0";
  request.prompt_tokens = n;
  const std::vector<Pass> prefill{{0, n, true, 0}};
  const EvictionContext ctx{model, request, layer, trace, prefill[0], prefill};
  std::vector<std::int32_t> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  LayerResidency residency(
      trace != nullptr ? static_cast<std::size_t>(model.num_kv_heads * policy->kv_copies(model)) : 1, all);
  policy->evict(ctx, residency);
  return residency;
}

// Kept count per head at each eviction == min(cache, capacity), capacity written out from
// DESIGN.md §4 with protected count w: post_fill min(round(b n) + w, n); chunk: the sum over the
// chunks so far of min(round(b c_i) + w, c_i); decode: the capacity at the end of prefill.
inline void expect_capacity_rule(const std::string& spec, double fraction, std::int64_t w, std::int64_t n,
                                 std::int64_t m, std::int64_t chunk, bool chunked_eviction, int decode_every) {
  const ModelShape model{"tiny", 2, 4, 2, 8, 16, 10000.0};
  auto source = testing_support::random_trace(model, n, m, {0}, 17);
  const LayerTrace trace = source.load_layer("0", 0);
  const RequestInfo& request = source.header().requests[0];
  const PassPlan plan = make_pass_plan(n, m, chunk);
  auto rhe = [](double x) { return static_cast<std::int64_t>(std::nearbyint(x)); };  // FE_TONEAREST: half to even
  std::vector<std::int64_t> chunk_caps;
  for (int i = 0; i < plan.num_prefill; ++i) {
    const std::int64_t c = plan.passes[i].tokens();
    chunk_caps.push_back(std::min(rhe(fraction * c) + w, c));
  }
  const auto policy = PolicyRegistry::builtin().create(spec);
  for (const LayerTrace* t : {&trace, static_cast<const LayerTrace*>(nullptr)}) {
    testing_support::RecordingPolicy counting(*policy);
    const LayerReplayInput input{model, request, plan, 0, t, {}};
    replay_layer(input, counting);
    std::size_t expected_events = 0;
    for (const Pass& p : plan.passes) {
      expected_events += p.prefill ? (chunked_eviction || p.index == plan.num_prefill - 1)
                                   : (decode_every > 0 && (p.index + 1) % decode_every == 0);
    }
    ASSERT_EQ(counting.events().size(), expected_events) << spec;
    const std::int64_t prefill_end_cap = chunked_eviction
                                             ? std::accumulate(chunk_caps.begin(), chunk_caps.end(), std::int64_t{0})
                                             : std::min(rhe(fraction * n) + w, n);
    for (const auto& e : counting.events()) {
      std::int64_t cap = prefill_end_cap;
      if (e.pass.prefill && chunked_eviction)
        cap = std::accumulate(chunk_caps.begin(), chunk_caps.begin() + e.pass.index + 1, std::int64_t{0});
      ASSERT_EQ(e.after.size(), t != nullptr ? 2u * static_cast<std::size_t>(policy->kv_copies(model)) : 1u);
      for (std::size_t h = 0; h < e.after.size(); ++h) {
        EXPECT_EQ(e.after[h], std::min(e.before[h], cap))
            << spec << (t ? " traced" : " untraced") << " pass " << e.pass.begin << ".." << e.pass.end << " head " << h;
      }
    }
  }
}

}  // namespace kvsim::leverage_test

#include "sim/replay/engine.h"

#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>

#include "policies/registry.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

const ModelShape kModel{"tiny-gqa", 2, 4, 2, 16, 16, 10000.0};

std::vector<PolicyResult> run(const TraceSource& source, const std::vector<std::string>& specs, std::int64_t chunk,
                              bool masks = true) {
  std::vector<std::unique_ptr<Policy>> owned;
  std::vector<const Policy*> policies;
  for (const auto& s : specs) {
    owned.push_back(PolicyRegistry::builtin().create(s));
    policies.push_back(owned.back().get());
  }
  ReplayOptions options;
  options.chunk_tokens = chunk;
  options.keep_masks = masks;
  return replay_request(source, source.header().requests[0], policies, options);
}

TEST(Engine, FullCacheHasPerfectFidelity) {
  const auto source = testing_support::random_trace(kModel, 80, 10, {0, 1}, 3, 2.0f);
  const auto r = run(source, {"full"}, 32).front();
  ASSERT_TRUE(r.attention_recall && r.output_error);
  EXPECT_NEAR(r.attention_recall->mean, 1.0, 1e-5);
  EXPECT_NEAR(r.attention_recall->tail, 1.0, 1e-5);
  EXPECT_LT(r.output_error->mean, 1e-5);
  EXPECT_FALSE(r.needle_retention.has_value());  // no needles in this trace: absent, not zero
  for (const auto& [layer, mask] : r.kept_masks) {
    EXPECT_EQ(std::count(mask.begin(), mask.end(), 1), static_cast<long>(mask.size()));
  }
}

TEST(Engine, NoDecodeMeansNoFidelityMetrics) {
  const auto source = testing_support::random_trace(kModel, 40, 0, {0}, 3);
  const auto r = run(source, {"streaming(sinks=2, window=8)"}, 10).front();
  EXPECT_FALSE(r.attention_recall.has_value());
  EXPECT_FALSE(r.output_error.has_value());
}

// Recall and output error of a streaming cache, recomputed from the definition in double loops.
TEST(Engine, StreamingFidelityMatchesDefinition) {
  const std::int64_t n = 60, m = 6, sinks = 2, window = 10;
  const auto source = testing_support::random_trace(kModel, n, m, {0, 1}, 11, 2.0f);
  const auto r = run(source, {"streaming(sinks=2, window=10)"}, 20).front();
  std::vector<double> recalls, errors;
  for (int layer : {0, 1}) {
    const LayerTrace t = source.load_layer("0", layer);
    for (int h = 0; h < kModel.num_kv_heads; ++h) {
      for (int g = 0; g < 2; ++g) {
        for (std::int64_t pos = n; pos < n + m; ++pos) {
          const HeadMatrix& q = t.queries[h * 2 + g];
          std::vector<double> p(pos + 1);
          double mx = -1e300;
          for (std::int64_t j = 0; j <= pos; ++j) {
            double dot = 0;
            for (int c = 0; c < 16; ++c) dot += double(q(pos, c)) * t.keys[h](j, c);
            p[j] = dot / 4.0;
            mx = std::max(mx, p[j]);
          }
          double total = 0;
          for (double& x : p) total += (x = std::exp(x - mx));
          // Before decode step at `pos`: sinks + the last `window` positions, plus the token itself.
          auto visible = [&](std::int64_t j) { return j < sinks || j >= pos - window; };
          double recall = 0;
          std::vector<double> o(16, 0), o2(16, 0);
          for (std::int64_t j = 0; j <= pos; ++j) {
            p[j] /= total;
            for (int c = 0; c < 16; ++c) o[c] += p[j] * t.values[h](j, c);
            if (visible(j)) {
              recall += p[j];
              for (int c = 0; c < 16; ++c) o2[c] += p[j] * t.values[h](j, c);
            }
          }
          double num = 0, den = 0;
          for (int c = 0; c < 16; ++c) {
            num += std::pow(o2[c] / recall - o[c], 2);
            den += o[c] * o[c];
          }
          recalls.push_back(recall);
          errors.push_back(std::sqrt(num / den));
        }
      }
    }
  }
  double recall_mean = 0, error_mean = 0;
  for (double x : recalls) recall_mean += x / recalls.size();
  for (double x : errors) error_mean += x / errors.size();
  ASSERT_TRUE(r.attention_recall);
  EXPECT_NEAR(r.attention_recall->mean, recall_mean, 1e-5);
  EXPECT_NEAR(r.attention_recall->tail, percentile(recalls, 5), 1e-5);
  EXPECT_NEAR(r.output_error->mean, error_mean, 1e-4);
  EXPECT_NEAR(r.output_error->tail, percentile(errors, 95), 1e-4);
  EXPECT_LT(r.attention_recall->mean, 0.99);  // the cache really is smaller than the context
}

TEST(Engine, IdenticalResultsAtAnyThreadCount) {
  const auto source = testing_support::random_trace(kModel, 300, 12, {0, 1}, 9, 2.0f);
  const std::vector<std::string> specs{"full", "streaming(sinks=4, window=32)",
                                       "snapkv(budget=0.2, window=8, prefill=chunk)",
                                       "snapkv(budget=64, window=8, pooling=avg)"};
  std::vector<PolicyResult> one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    one = run(source, specs, 64);
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    two = run(source, specs, 64);
  }
  ASSERT_EQ(one.size(), two.size());
  for (std::size_t p = 0; p < one.size(); ++p) {
    EXPECT_EQ(one[p].footprint_entry_steps, two[p].footprint_entry_steps);
    EXPECT_EQ(one[p].kept_masks, two[p].kept_masks);
    EXPECT_EQ(one[p].attention_recall->mean, two[p].attention_recall->mean);  // bitwise
    EXPECT_EQ(one[p].output_error->tail, two[p].output_error->tail);
  }
}

TEST(Engine, MissingQueriesAreAClearError) {
  auto source = testing_support::random_trace(kModel, 50, 4, {0}, 1);
  LayerTrace t = source.load_layer("0", 0);
  // Keep only the decode queries: chunked SnapKV needs each chunk's window too.
  for (auto& q : t.queries) q = HeadMatrix(q.bottomRows(4));
  t.query_positions = {50, 51, 52, 53};
  source.set_layer("0", t);
  EXPECT_NO_THROW(run(source, {"streaming(window=8)"}, 10));
  try {
    run(source, {"snapkv(budget=0.5, window=4, prefill=chunk)"}, 10);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no stored query at position 6"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvsim

// Fidelity on extreme but finite traces (issue 17 item 7): logits so large that the softmax is
// one-hot and every visible probability underflows, and magnitudes whose logits overflow float32.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "policies/registry.h"
#include "sim/replay/engine.h"
#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

// One layer, one query head, one KV head of dimension 2: every number below can be checked by hand.
const ModelShape kModel{"one-head", 1, 1, 1, 2, 16, 10000.0};
constexpr std::int64_t kPrompt = 8, kGenerated = 1;  // one decode query, at position 8

// Keys [a_j * scale, 0] and the decode query [1, 0]: logit_j = a_j * scale / sqrt(2). With
// a_4 = 1, a_7 = 0.5 and the rest 0, at scale 1e4 the full softmax is one-hot on position 4
// (the next logit is 3536 lower: exp(-3536) is 0 even in double), and over streaming(sinks=1,
// window=2)'s visible set {0, 6, 7, 8} it is one-hot on position 7.
testing_support::MemoryTraceSource one_hot_trace(float scale) {
  TraceHeader header;
  header.model = kModel;
  header.source = "recorded";
  header.traced_layers = {0};
  RequestInfo request;
  request.id = "0";
  request.prompt_tokens = kPrompt;
  request.generated_tokens = kGenerated;
  header.requests.push_back(request);
  testing_support::MemoryTraceSource source(header);
  LayerTrace t;
  t.layer = 0;
  t.origin = "t.h5: /requests/0/layer_0";
  HeadMatrix keys = HeadMatrix::Zero(kPrompt + kGenerated, 2);
  keys(4, 0) = 1.0f * scale;
  keys(7, 0) = 0.5f * scale;
  HeadMatrix values = HeadMatrix::Ones(kPrompt + kGenerated, 2);
  values.row(4) << 1.0f, 0.0f;  // the full cache's output
  values.row(7) << 0.0f, 2.0f;  // the streaming cache's output
  HeadMatrix queries(1, 2);
  queries << 1.0f, 0.0f;
  t.keys = {keys};
  t.values = {values};
  t.queries = {queries};
  t.query_positions = {kPrompt};
  source.set_layer("0", std::move(t));
  return source;
}

std::vector<PolicyResult> replay(const TraceSource& source, const std::vector<std::string>& specs) {
  std::vector<std::unique_ptr<Policy>> owned;
  std::vector<const Policy*> policies;
  for (const auto& s : specs) {
    owned.push_back(PolicyRegistry::builtin().create(s));
    policies.push_back(owned.back().get());
  }
  return replay_request(source, source.header().requests[0], policies, ReplayOptions{});
}

TEST(FidelityExtreme, OneHotSoftmaxGivesTheHandComputedAnswer) {
  const auto r = replay(one_hot_trace(1e4f), {"full", "streaming(sinks=1, window=2)"});
  ASSERT_TRUE(r[0].attention_recall && r[0].output_error && r[1].attention_recall && r[1].output_error);
  // full: every probability visible. Exactly 1 (a probability never exceeds it), no error.
  EXPECT_LE(r[0].attention_recall->mean, 1.0);
  EXPECT_EQ(r[0].attention_recall->mean, 1.0);
  EXPECT_EQ(r[0].output_error->mean, 0.0);
  // streaming: the only position with mass (4) is evicted, so the recall is 0; its own softmax is
  // one-hot on 7, so the output is v_7 = [0, 2] against v_4 = [1, 0]: |(-1, 2)| / |(1, 0)| = sqrt(5).
  // (Renormalising the full cache's underflowed probabilities gave 0/0 = NaN here.)
  EXPECT_EQ(r[1].attention_recall->mean, 0.0);
  EXPECT_NEAR(r[1].output_error->mean, std::sqrt(5.0), 1e-6);
  EXPECT_NEAR(r[1].output_error->tail, std::sqrt(5.0), 1e-6);
}

TEST(FidelityExtreme, ModerateScaleStillMatchesTheDefinition) {
  // At scale 1 nothing underflows: recall and error from the plain definition, in double.
  const auto r = replay(one_hot_trace(1.0f), {"full", "streaming(sinks=1, window=2)"});
  const double s = 1.0 / std::sqrt(2.0);
  double logits[9] = {0, 0, 0, 0, 1.0 * s, 0, 0, 0.5 * s, 0};
  double total = 0, visible = 0, o[2] = {0, 0}, ov[2] = {0, 0};
  for (int j = 0; j < 9; ++j) {
    const double w = std::exp(logits[j]);
    const double v0 = j == 4 ? 1.0 : (j == 7 ? 0.0 : 1.0), v1 = j == 4 ? 0.0 : (j == 7 ? 2.0 : 1.0);
    total += w;
    o[0] += w * v0;
    o[1] += w * v1;
    if (j == 0 || j >= 6) {
      visible += w;
      ov[0] += w * v0;
      ov[1] += w * v1;
    }
  }
  const double recall = visible / total;
  const double error = std::hypot(ov[0] / visible - o[0] / total, ov[1] / visible - o[1] / total) /
                       std::hypot(o[0] / total, o[1] / total);
  EXPECT_EQ(r[0].attention_recall->mean, 1.0);
  EXPECT_NEAR(r[1].attention_recall->mean, recall, 1e-6);
  EXPECT_NEAR(r[1].output_error->mean, error, 1e-5);
}

TEST(FidelityExtreme, FullRecallNeverExceedsOne) {
  // Many comparable logits: the float probabilities' sum rounds away from 1 either way.
  const auto source = testing_support::random_trace(ModelShape{"t", 1, 4, 2, 16, 16, 10000.0}, 500, 16, {0}, 5, 3.0f);
  const auto r = replay(source, {"full"});
  ASSERT_TRUE(r[0].attention_recall);
  EXPECT_LE(r[0].attention_recall->mean, 1.0);
  EXPECT_LE(r[0].attention_recall->tail, 1.0);
  EXPECT_GT(r[0].attention_recall->tail, 1.0 - 1e-5);
}

TEST(FidelityExtreme, OverflowingLogitsAreRefusedNamingLayerAndHead) {
  // 1e20 x 1 / sqrt(2) fits float32, but 1e20 x 1e20 does not: scale the query too.
  auto source = one_hot_trace(1e20f);
  LayerTrace t = source.load_layer("0", 0);
  t.queries[0] *= 1e20f;
  source.set_layer("0", t);
  try {
    replay(source, {"full"});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("t.h5: /requests/0/layer_0: KV head 0: an attention logit"), std::string::npos) << what;
    EXPECT_NE(what.find("not finite"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace kvsim

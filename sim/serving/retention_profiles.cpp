#include "sim/serving/retention_profiles.h"

#include <algorithm>
#include <cmath>
#include <tbb/parallel_for.h>

#include "sim/replay/engine.h"
#include "policies/pass_plan.h"
#include "sim/scenario_sources.h"
#include "util/rng.h"

namespace kvsim {

namespace {

constexpr std::int64_t kMinBucketTokens = 64;  // shorter prompts rescale the 64-token profile
constexpr std::int64_t kSlopeWindow = 16;      // decode steps the extrapolated slope is measured over

}  // namespace

std::vector<RetentionCurve> measure_retention(const Scenario& scenario, std::span<const Policy* const> policies,
                                              std::int64_t prompt_tokens, std::int64_t decode_tokens) {
  const std::uint64_t seed = hash_key(scenario.seed, static_cast<std::uint64_t>(prompt_tokens),
                                      static_cast<std::uint64_t>(decode_tokens));
  const PassPlan plan = make_pass_plan(prompt_tokens, decode_tokens, scenario.chunk_tokens);
  const auto source = make_synthetic_request(scenario, plan, seed, 0, policies);
  const RequestInfo& request = source->header().requests.front();
  ReplayOptions options;
  options.max_eval_queries = 0;  // counts only: fidelity is the single-request run's job
  const std::vector<PolicyResult> results = replay_request(*source, request, plan, policies, options);

  const ModelShape& m = source->header().model;
  const double layer_heads = static_cast<double>(m.num_layers) * m.num_kv_heads;
  const std::size_t passes = plan.passes.size();
  std::vector<RetentionCurve> curves;
  for (const PolicyResult& r : results) {
    std::vector<RetentionCurve::Knot> knots;
    double resident = 0;
    // The entries left after pass i are those resident during pass i + 1 minus what it wrote.
    for (std::size_t i = 0; i + 1 < passes; ++i) {
      const double fresh_next = static_cast<double>(plan.passes[i + 1].tokens()) * layer_heads;
      const double after = (static_cast<double>(r.pass_entries[i + 1]) - fresh_next) / layer_heads;
      const double kept_all = resident + static_cast<double>(plan.passes[i].tokens());
      if (after < kept_all - 1e-9) knots.push_back({plan.passes[i].end, after});
      resident = after;
    }
    const std::int64_t measured_until = passes >= 2 ? plan.passes[passes - 2].end : prompt_tokens;
    RetentionCurve probe(prompt_tokens, knots, measured_until, 1.0);
    const std::int64_t window = std::min<std::int64_t>(kSlopeWindow, decode_tokens - 1);
    double slope = 1.0;
    if (window > 0) {
      slope = (probe.resident_after(measured_until) - probe.resident_after(measured_until - window)) /
              static_cast<double>(window);
    }
    curves.emplace_back(prompt_tokens, std::move(knots), measured_until, std::clamp(slope, 0.0, 1.0));
  }
  return curves;
}

std::int64_t retention_bucket(std::int64_t prompt_tokens, int buckets_per_octave) {
  const double p = static_cast<double>(std::max(prompt_tokens, kMinBucketTokens));
  const double k = std::round(std::log2(p) * buckets_per_octave);
  return std::max(kMinBucketTokens, static_cast<std::int64_t>(std::llround(std::exp2(k / buckets_per_octave))));
}

RetentionProfiles::RetentionProfiles(const Scenario& scenario, std::span<const Policy* const> policies,
                                     const std::vector<std::int64_t>& prompt_lengths,
                                     const std::function<void(const std::string&)>& progress)
    : buckets_per_octave_(scenario.serving.profile_buckets_per_octave), chunk_tokens_(scenario.chunk_tokens) {
  std::vector<std::int64_t> lengths;
  for (const std::int64_t p : prompt_lengths) lengths.push_back(retention_bucket(p, buckets_per_octave_));
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  if (progress) {
    progress("measuring retention profiles: " + std::to_string(lengths.size()) + " prompt-length buckets (" +
             std::to_string(lengths.empty() ? 0 : lengths.front()) + ".." +
             std::to_string(lengths.empty() ? 0 : lengths.back()) + " tokens) x " +
             std::to_string(policies.size()) + " policies");
  }
  std::vector<std::vector<RetentionCurve>> measured(lengths.size());
  tbb::parallel_for(std::size_t{0}, lengths.size(), [&](std::size_t i) {
    measured[i] = measure_retention(scenario, policies, lengths[i], scenario.serving.profile_decode_tokens);
  });
  for (std::size_t i = 0; i < lengths.size(); ++i) curves_[lengths[i]] = std::move(measured[i]);
}

RetentionCurve RetentionProfiles::curve(std::size_t policy, std::int64_t prompt_tokens) const {
  const auto it = curves_.find(retention_bucket(prompt_tokens, buckets_per_octave_));
  return it->second[policy].rescaled(prompt_tokens, chunk_tokens_);
}

}  // namespace kvsim

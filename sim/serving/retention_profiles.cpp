#include "sim/serving/retention_profiles.h"

#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>

#include "sim/replay/engine.h"
#include "sim/scenario_sources.h"
#include "sim/serving/profile_key.h"
#include "sim/serving/profile_progress.h"
#include "util/rng.h"

namespace kvsim {

namespace {

constexpr std::int64_t kMinBucketTokens = 64;  // shorter prompts rescale the 64-token profile
constexpr std::int64_t kSlopeWindow = 16;      // decode steps the extrapolated slope is measured over
constexpr int kEvalQueries = 0;                // counts only: fidelity is the single-request run's job

// measure_retention's own settings, for the profile key.
std::string measurement_key() {
  return "slope_window=" + std::to_string(kSlopeWindow) + " eval_queries=" + std::to_string(kEvalQueries);
}

// The curve of one policy's replay along `plan`.
RetentionCurve curve_from_replay(const PolicyResult& r, const PassPlan& plan, const ModelShape& m) {
  const double layer_heads = static_cast<double>(m.num_layers) * m.num_kv_heads;
  const std::size_t passes = plan.passes.size();
  const std::int64_t prompt_tokens = plan.prompt_tokens();
  const std::int64_t decode_tokens = plan.generated_tokens();
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
  return RetentionCurve(prompt_tokens, std::move(knots), measured_until, std::clamp(slope, 0.0, 1.0));
}

}  // namespace

RetentionMeasurement::RetentionMeasurement(const Scenario& scenario, std::span<const Policy* const> policies,
                                           std::int64_t prompt_tokens, std::int64_t decode_tokens,
                                           const ProfileCache* cache)
    : policies_(policies),
      cache_(cache && cache->enabled() ? cache : nullptr),
      plan_(make_pass_plan(prompt_tokens, decode_tokens, scenario.chunk_tokens)),
      keys_(policies.size()),
      curves_(policies.size()) {
  const std::uint64_t seed =
      hash_key(scenario.seed, static_cast<std::uint64_t>(prompt_tokens), static_cast<std::uint64_t>(decode_tokens));
  // Every policy's query positions shape the trace, so the parameters (and keys) take them all.
  params_ = synthetic_request_params(scenario, plan_, seed, 0, policies);
  if (!cache_) return;
  for (std::size_t p = 0; p < policies.size(); ++p) {
    keys_[p] = retention_profile_key(params_, plan_, *policies[p], measurement_key());
    if (keys_[p]) curves_[p] = cache_->load(*keys_[p], prompt_tokens);
  }
}

std::size_t RetentionMeasurement::from_cache() const {
  return static_cast<std::size_t>(
      std::count_if(curves_.begin(), curves_.end(), [](const auto& c) { return c.has_value(); }));
}

std::vector<RetentionCurve> RetentionMeasurement::curves() {
  std::vector<const Policy*> missing;
  std::vector<std::size_t> index;
  for (std::size_t p = 0; p < policies_.size(); ++p) {
    if (!curves_[p]) {
      missing.push_back(policies_[p]);
      index.push_back(p);
    }
  }
  if (!missing.empty()) {
    // A policy's replay does not depend on the others replayed beside it (policies/shared_results.h:
    // shared results are pure functions of their key), so the missing ones replay alone.
    const auto source = make_synthetic_source(params_);
    const RequestInfo& request = source->header().requests.front();
    ReplayOptions options;
    options.max_eval_queries = kEvalQueries;
    const std::vector<PolicyResult> results = replay_request(*source, request, plan_, missing, options);
    for (std::size_t i = 0; i < missing.size(); ++i) {
      const std::size_t p = index[i];
      curves_[p] = curve_from_replay(results[i], plan_, source->header().model);
      if (cache_ && keys_[p]) cache_->store(*keys_[p], *curves_[p]);
    }
  }
  std::vector<RetentionCurve> out;
  for (const auto& c : curves_) out.push_back(*c);
  return out;
}

std::vector<RetentionCurve> measure_retention(const Scenario& scenario, std::span<const Policy* const> policies,
                                              std::int64_t prompt_tokens, std::int64_t decode_tokens) {
  return RetentionMeasurement(scenario, policies, prompt_tokens, decode_tokens, nullptr).curves();
}

std::vector<std::vector<RetentionCurve>> measure_retention_set(
    const Scenario& scenario, std::span<const Policy* const> policies,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& lengths, const ProfileCache* cache,
    const std::function<void(const std::string&)>& progress) {
  std::vector<std::optional<RetentionMeasurement>> jobs(lengths.size());
  tbb::parallel_for(std::size_t{0}, lengths.size(), [&](std::size_t i) {
    jobs[i].emplace(scenario, policies, lengths[i].first, lengths[i].second, cache);
  });
  std::size_t cached = 0;
  std::size_t replays = 0;
  std::int64_t replay_tokens = 0;
  for (const auto& job : jobs) {
    cached += job->from_cache();
    replays += job->to_measure() > 0 ? 1 : 0;
    replay_tokens += job->replay_tokens();
  }
  const std::size_t total = lengths.size() * policies.size();
  if (progress) {
    progress("retention profiles: " + std::to_string(cached) + " of " + std::to_string(total) + " from the cache" +
             (cache && cache->enabled() ? " (" + cache->folder() + ")" : std::string(" (cache off)")) + ", " +
             std::to_string(total - cached) + " to measure in " + std::to_string(replays) + " replays");
  }
  ProfileProgress meter(replays, replay_tokens, progress);
  std::vector<std::vector<RetentionCurve>> curves(lengths.size());
  tbb::parallel_for(std::size_t{0}, lengths.size(), [&](std::size_t i) {
    const std::int64_t tokens = jobs[i]->replay_tokens();
    curves[i] = jobs[i]->curves();
    if (tokens > 0) meter.finished(tokens);
  });
  return curves;
}

std::int64_t retention_bucket(std::int64_t prompt_tokens, int buckets_per_octave) {
  const double p = static_cast<double>(std::max(prompt_tokens, kMinBucketTokens));
  const double k = std::round(std::log2(p) * buckets_per_octave);
  return std::max(kMinBucketTokens, static_cast<std::int64_t>(std::llround(std::exp2(k / buckets_per_octave))));
}

RetentionProfiles::RetentionProfiles(const Scenario& scenario, std::span<const Policy* const> policies,
                                     const std::vector<std::int64_t>& prompt_lengths,
                                     const std::function<void(const std::string&)>& progress, const ProfileCache* cache)
    : buckets_per_octave_(scenario.serving.profile_buckets_per_octave), chunk_tokens_(scenario.chunk_tokens) {
  std::vector<std::int64_t> lengths;
  for (const std::int64_t p : prompt_lengths) lengths.push_back(retention_bucket(p, buckets_per_octave_));
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  if (progress) {
    progress("retention profiles: " + std::to_string(lengths.size()) + " prompt-length buckets (" +
             std::to_string(lengths.empty() ? 0 : lengths.front()) + ".." +
             std::to_string(lengths.empty() ? 0 : lengths.back()) + " tokens) x " + std::to_string(policies.size()) +
             " policies");
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  for (const std::int64_t length : lengths) pairs.emplace_back(length, scenario.serving.profile_decode_tokens);
  std::vector<std::vector<RetentionCurve>> measured = measure_retention_set(scenario, policies, pairs, cache, progress);
  for (std::size_t i = 0; i < lengths.size(); ++i) curves_[lengths[i]] = std::move(measured[i]);
}

RetentionCurve RetentionProfiles::curve(std::size_t policy, std::int64_t prompt_tokens) const {
  const auto it = curves_.find(retention_bucket(prompt_tokens, buckets_per_octave_));
  return it->second[policy].rescaled(prompt_tokens, chunk_tokens_);
}

}  // namespace kvsim

#pragma once
// Retention curves measured from traces (DESIGN.md §6): the policies are replayed on a synthetic
// request of the right length and the entries they keep after each pass become a RetentionCurve.
//   exact mode: one replay per distinct workload (prompt, output) length pair;
//   fast mode:  one replay per prompt-length bucket (profile_buckets_per_octave per doubling),
//               rescaled to each request's prompt; decode beyond profile_decode_tokens steps
//               continues at the measured slope.
// Both go through measure_retention_set, which takes what it can from the profile cache
// (sim/serving/profile_cache.h) and replays only the policies it lacks.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "policies/pass_plan.h"
#include "policies/policy.h"
#include "sim/scenario.h"
#include "sim/serving/profile_cache.h"
#include "sim/serving/retention.h"
#include "traces/synth.h"

namespace kvsim {

// The curves of `policies` for a synthetic request of `prompt_tokens` + `decode_tokens`, measured
// up to position prompt_tokens + decode_tokens - 1: those in `cache` (may be null) read from it, the
// others by one replay, then stored in it.
class RetentionMeasurement {
 public:
  // Reads the cache; replays nothing yet.
  RetentionMeasurement(const Scenario& scenario, std::span<const Policy* const> policies, std::int64_t prompt_tokens,
                       std::int64_t decode_tokens, const ProfileCache* cache);

  std::size_t from_cache() const;
  std::size_t to_measure() const { return curves_.size() - from_cache(); }
  // Prompt + decode tokens of the replay (0 when every curve came from the cache).
  std::int64_t replay_tokens() const { return to_measure() > 0 ? plan_.prompt_tokens() + plan_.generated_tokens() : 0; }

  // One curve per policy, in order. Replays the policies missing from the cache, once.
  std::vector<RetentionCurve> curves();

 private:
  std::span<const Policy* const> policies_;
  const ProfileCache* cache_;
  PassPlan plan_;
  SynthParams params_;
  std::vector<std::optional<std::string>> keys_;  // per policy; nothing: not cached
  std::vector<std::optional<RetentionCurve>> curves_;
};

// RetentionMeasurement without a cache.
std::vector<RetentionCurve> measure_retention(const Scenario& scenario, std::span<const Policy* const> policies,
                                              std::int64_t prompt_tokens, std::int64_t decode_tokens);

// The curves for every (prompt, decode) length pair of `lengths` ([pair][policy]), replays in
// parallel. `progress` gets how many profiles the cache had, then the measuring's progress with an ETA.
std::vector<std::vector<RetentionCurve>> measure_retention_set(
    const Scenario& scenario, std::span<const Policy* const> policies,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& lengths, const ProfileCache* cache,
    const std::function<void(const std::string&)>& progress);

// The representative prompt length of `prompt_tokens`'s bucket (fast mode).
std::int64_t retention_bucket(std::int64_t prompt_tokens, int buckets_per_octave);

class RetentionProfiles {
 public:
  // Fast mode: measures (or reads from `cache`, may be null) every bucket the prompt lengths need.
  RetentionProfiles(const Scenario& scenario, std::span<const Policy* const> policies,
                    const std::vector<std::int64_t>& prompt_lengths,
                    const std::function<void(const std::string&)>& progress, const ProfileCache* cache = nullptr);

  // The curve of `policy` (index into the policies given) for a prompt of `prompt_tokens`.
  RetentionCurve curve(std::size_t policy, std::int64_t prompt_tokens) const;
  std::size_t buckets() const { return curves_.size(); }

 private:
  int buckets_per_octave_ = 8;
  std::int64_t chunk_tokens_ = 0;
  std::map<std::int64_t, std::vector<RetentionCurve>> curves_;  // bucket length -> per policy
};

}  // namespace kvsim

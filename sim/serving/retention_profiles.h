#pragma once
// Retention curves measured from traces (DESIGN.md §6): the policies are replayed on a synthetic
// request of the right length and the entries they keep after each pass become a RetentionCurve.
//   exact mode: one replay per workload request, at its own prompt and output lengths;
//   fast mode:  one replay per prompt-length bucket (profile_buckets_per_octave per doubling),
//               rescaled to each request's prompt; decode beyond profile_decode_tokens steps
//               continues at the measured slope.
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "policies/policy.h"
#include "sim/serving/retention.h"
#include "sim/scenario.h"

namespace kvsim {

// One replay of a synthetic request of `prompt_tokens` + `decode_tokens`: a curve per policy,
// measured up to position prompt_tokens + decode_tokens - 1.
std::vector<RetentionCurve> measure_retention(const Scenario& scenario, std::span<const Policy* const> policies,
                                              std::int64_t prompt_tokens, std::int64_t decode_tokens);

// The representative prompt length of `prompt_tokens`'s bucket (fast mode).
std::int64_t retention_bucket(std::int64_t prompt_tokens, int buckets_per_octave);

class RetentionProfiles {
 public:
  // Fast mode: measures every bucket the prompt lengths need, in parallel.
  RetentionProfiles(const Scenario& scenario, std::span<const Policy* const> policies,
                    const std::vector<std::int64_t>& prompt_lengths,
                    const std::function<void(const std::string&)>& progress);

  // The curve of `policy` (index into the policies given) for a prompt of `prompt_tokens`.
  RetentionCurve curve(std::size_t policy, std::int64_t prompt_tokens) const;
  std::size_t buckets() const { return curves_.size(); }

 private:
  int buckets_per_octave_ = 8;
  std::int64_t chunk_tokens_ = 0;
  std::map<std::int64_t, std::vector<RetentionCurve>> curves_;  // bucket length -> per policy
};

}  // namespace kvsim

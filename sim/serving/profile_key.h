#pragma once
// The key of one cached retention profile (sim/serving/profile_cache.h): one line naming everything
// measure_retention's curve for one policy depends on, so that equal keys mean equal curves:
//   - the profile format version and this kvsim build (its executable's size and modification
//     time: a rebuilt kvsim may score differently, so it never reads an older build's profiles);
//   - the policy's canonical spec and a content hash of each file it reads (mask=);
//   - the synthetic request's parameters (traces/synth.h synth_params_key: model shape with RoPE
//     fields, prompt and decode lengths, traced layers, seed, stored query positions, needles, ...);
//   - the pass plan's chunk size and measure_retention's own settings (`measurement`).
#include <optional>
#include <string>
#include <string_view>

#include "policies/pass_plan.h"
#include "policies/policy.h"
#include "traces/synth.h"

namespace kvsim {

// Bumped when the profile file or what a profile means changes.
inline constexpr int kRetentionProfileVersion = 1;

// This executable's identity, "<bytes>:<mtime ns>", or nothing when it cannot be read (then
// nothing is cached: a profile could not be tied to the code that measured it).
const std::optional<std::string>& build_identity();

// The key; nothing when a file the policy reads cannot be read (then that profile is not cached).
std::optional<std::string> retention_profile_key(const SynthParams& params, const PassPlan& plan, const Policy& policy,
                                                 std::string_view measurement);

}  // namespace kvsim

#pragma once
// What a scenario builds before anything runs: its policies and, for a synthetic trace, the trace of
// one request. Shared by the single-request replay and the serving study's retention profiles.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "policies/pass_plan.h"
#include "policies/policy.h"
#include "sim/scenario.h"
#include "traces/synth.h"
#include "traces/trace.h"

namespace kvsim {

// Builds the policies of the scenario: `full` first unless listed, then the listed ones.
std::vector<std::unique_ptr<Policy>> make_scenario_policies(const Scenario& scenario);

// A synthetic trace of one request of `plan`'s lengths for the scenario's model and traced layers,
// holding the queries the policies score with along `plan`. Throws InputError naming the scenario's
// [workload] for impossible shapes.
std::unique_ptr<TraceSource> make_synthetic_request(const Scenario& scenario, const PassPlan& plan, std::uint64_t seed,
                                                    int needles, std::span<const Policy* const> policies);

// The parameters make_synthetic_request synthesises with (validated): what its trace depends on.
SynthParams synthetic_request_params(const Scenario& scenario, const PassPlan& plan, std::uint64_t seed, int needles,
                                     std::span<const Policy* const> policies);

}  // namespace kvsim

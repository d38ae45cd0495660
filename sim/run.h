#pragma once
// Runs a scenario end to end: trace source, policies, replay. The command-line front end and the
// tests both go through here.
#include <functional>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include "policies/policy.h"
#include "sim/engine.h"
#include "sim/scenario.h"
#include "sim/timing.h"
#include <optional>

namespace kvsim {

struct ScenarioRun {
  ModelShape model;                    // as resolved (preset or trace file)
  RequestInfo request;
  std::vector<int> traced_layers;
  std::string trace_source;            // "synthetic" or "recorded"
  PassPlan plan;
  std::vector<PolicyResult> results;   // `full` first, then the scenario's policies in order
  std::optional<Hardware> hardware;    // with [hardware]: and then one timing per result
  std::vector<PolicyTiming> timings;
};

// Builds the policies of the scenario: `full` first unless listed, then the listed ones.
std::vector<std::unique_ptr<Policy>> make_scenario_policies(const Scenario& scenario);

// A synthetic trace of one request for the scenario's model and traced layers, holding the queries
// the policies score with. Throws InputError naming the scenario's [workload] for impossible shapes.
std::unique_ptr<TraceSource> make_synthetic_request(const Scenario& scenario, std::int64_t prompt_tokens,
                                                    std::int64_t generated_tokens, std::uint64_t seed, int needles,
                                                    std::span<const Policy* const> policies);

ScenarioRun run_scenario(const Scenario& scenario, bool keep_masks,
                         const std::function<void(const std::string&)>& progress = {});

}  // namespace kvsim

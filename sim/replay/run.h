#pragma once
// Runs a scenario end to end: trace source, policies, replay. The command-line front end and the
// tests both go through here.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <optional>
#include "policies/policy.h"
#include "sim/replay/engine.h"
#include "sim/replay/timing.h"
#include "sim/scenario.h"
#include "sim/scenario_sources.h"

namespace kvsim {

struct ScenarioRun {
  ModelShape model;  // as resolved (preset or trace file)
  RequestInfo request;
  std::vector<int> traced_layers;
  std::string trace_source;  // "synthetic" or "recorded"
  PassPlan plan;
  std::vector<PolicyResult> results;  // `full` first, then the scenario's policies in order
  std::optional<Hardware> hardware;   // with [hardware]: and then one timing per result
  std::vector<PolicyTiming> timings;
};

// One draw: the scenario's synthetic request at scenario.seed (or its trace file's request).
ScenarioRun run_scenario(const Scenario& scenario, bool keep_masks,
                         const std::function<void(const std::string&)>& progress = {});

// The independent synthetic draws of a scenario ([workload] seeds), one run per seed in order. A
// scenario without seeds, or with a trace file, is one draw.
struct ScenarioDraws {
  std::vector<std::uint64_t> seeds;
  std::vector<ScenarioRun> runs;  // one per seed
  const ScenarioRun& first() const { return runs.front(); }
};

// Runs the draws one after another, each with all of the scenario's threads: every draw is the
// same at any thread count, so the set is too.
ScenarioDraws run_scenario_draws(const Scenario& scenario, bool keep_masks,
                                 const std::function<void(const std::string&)>& progress = {});

}  // namespace kvsim

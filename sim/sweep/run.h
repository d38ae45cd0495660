#pragma once
// Runs a sweep's scenarios in parallel on TBB and records each one as it finishes
// (sim/sweep/store.h). Results do not depend on the number of jobs or the order of completion:
// each scenario is a pure function of its text (seed included).
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "sim/scenario.h"
#include "sim/sweep/expand.h"

namespace kvsim {

// Parses and validates every scenario of the sweep and its policy specs, before any work, so a
// sweep that cannot finish is refused at once. Errors name the sweep file and the scenario.
std::vector<Scenario> load_sweep_scenarios(const Sweep& sweep);

// Called after each scenario's folder is written, one call at a time.
using ScenarioFinished = std::function<void(std::size_t index, double seconds)>;

// Runs sweep.scenarios[i] for every i in `indices` with at most `jobs` threads in all (a scenario's
// own parallel work shares them), at most `jobs` scenarios in memory at once, starting them in the
// order of `indices`. The first error stops the sweep (scenarios already written stay) and is
// rethrown naming the scenario.
void run_sweep_scenarios(const std::string& dir, const Sweep& sweep, const std::vector<Scenario>& scenarios,
                         const std::vector<std::size_t>& indices, int jobs, const ScenarioFinished& finished);

}  // namespace kvsim

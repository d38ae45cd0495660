#pragma once
// The output contract of `kvsim run` (DESIGN.md §7) and the table it prints.
#include <ostream>
#include <string>

#include "sim/replay/run.h"
#include "sim/scenario.h"

namespace kvsim {

// DIR/summary.json, DIR/timeline.csv, DIR/requests.csv, each written atomically. Metrics kvsim
// does not compute for this scenario (time, bandwidth: no hardware model yet) are absent.
void write_run_outputs(const std::string& dir, const Scenario& scenario, const ScenarioRun& run);

// One row per policy: normalized footprint, peak, attention recall, output error, needle retention.
void print_run_table(std::ostream& out, const ScenarioRun& run);

// `--save-kept FILE.h5`: the final kept mask of every policy, request and traced layer.
void write_kept_masks(const std::string& path, const ScenarioRun& run);

}  // namespace kvsim

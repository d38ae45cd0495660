#pragma once
// The output contract of `kvsim run` (DESIGN.md §7) and the table it prints.
#include <ostream>
#include <string>
#include <vector>

#include "sim/replay/run.h"
#include "sim/scenario.h"

namespace kvsim {

// DIR/summary.json, DIR/timeline.csv, DIR/requests.csv, written as one set: DIR is replaced whole
// (util/atomic_folder.h), so it never holds files of two runs. Metrics kvsim does not compute for
// this scenario (time, bandwidth: no hardware model yet) are absent.
void write_run_outputs(const std::string& dir, const Scenario& scenario, const ScenarioDraws& draws);

// The same three files into `dir` (created if missing), each written atomically: for a folder that
// is itself temporary (a sweep's scenario folder, renamed whole by sim/sweep/store.h). With several
// draws ([workload] seeds) summary.json has the means and intervals of policy_metrics(draws, p) and
// the seeds, and timeline.csv and requests.csv a leading `seed` column with every draw's rows; with
// one draw the files are exactly those of a scenario without seeds.
void write_run_files(const std::string& dir, const Scenario& scenario, const ScenarioDraws& draws);

// The names a `kvsim run --out` folder may hold (its files, and tools/plot.py's plots/): a folder
// holding anything else is not replaced.
const std::vector<std::string>& run_output_names();

// One row per policy: normalized footprint, peak, attention recall, output error, needle retention.
// With several draws each cell is mean +- the half-width of its 95 % interval (a value without one
// does not vary between draws at the digits shown).
void print_run_table(std::ostream& out, const ScenarioDraws& draws);

// `--save-kept FILE.h5`: the final kept mask of every policy, request and traced layer.
void write_kept_masks(const std::string& path, const ScenarioRun& run);

}  // namespace kvsim

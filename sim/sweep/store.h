#pragma once
// A sweep's output folder: what makes a sweep resumable, crash-safe and mergeable.
//   DIR/sweep.ini    the sweep file as first run (verbatim)
//   DIR/sweep.id     "kvsim-sweep 1", the expansion hash, the scenario count and the source path;
//                    written last when DIR is created, so a DIR with sweep.id is a sweep folder
//   DIR/scenarios/NNNNNN-HASH/   one folder per finished scenario (index, hash of its text):
//                    scenario.ini, summary.json, timeline.csv, requests.csv (as kvsim run writes
//                    them) and rows.csv (sim/sweep/rows.h). Each folder is written under a
//                    temporary name and renamed whole, so a folder is either complete or absent.
//   DIR/results.csv, DIR/results.h5   written once every scenario is present
// Several processes may fill one DIR at once (shards on a shared file system): they never write
// the same folder name, and a scenario finished twice keeps the first copy.
#include <cstddef>
#include <string>

#include "sim/replay/run.h"
#include "sim/scenario.h"
#include "sim/sweep/expand.h"
#include "sim/sweep/rows.h"

namespace kvsim {

struct SweepId {
  std::string expansion;  // Sweep::hash
  std::size_t scenarios = 0;
  std::string source;  // the sweep file's path when DIR was created
};

// Creates DIR for `sweep` (whose file holds `sweep_text`), or checks that an existing DIR holds the
// same expansion. Throws InputError naming DIR if it holds another sweep or is not a sweep folder.
void prepare_sweep_dir(const std::string& dir, const Sweep& sweep, const std::string& sweep_text);

// Throws InputError naming DIR if it is not a sweep folder.
SweepId read_sweep_id(const std::string& dir);

// The sweep of DIR, re-expanded from DIR/sweep.ini and checked against DIR/sweep.id.
Sweep load_stored_sweep(const std::string& dir);

std::string scenario_dir(const std::string& dir, const Sweep& sweep, std::size_t index);
bool scenario_done(const std::string& dir, const Sweep& sweep, std::size_t index);

// Writes the scenario's folder (complete, or not at all).
void write_scenario_result(const std::string& dir, const Sweep& sweep, std::size_t index, const Scenario& scenario,
                           const ScenarioDraws& draws);

// Copies a finished scenario folder from another sweep folder (kvsim merge), the same way.
void copy_scenario_result(const std::string& from_dir, const std::string& dir, const Sweep& sweep, std::size_t index);

// Removes the temporary folders of killed kvsim processes on this host.
void remove_stale_temporaries(const std::string& dir);

RowSet read_scenario_rows(const std::string& dir, const Sweep& sweep, std::size_t index);

}  // namespace kvsim

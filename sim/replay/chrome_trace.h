#pragma once
// `kvsim run --timeline FILE.json`: a Chrome / Perfetto trace (chrome://tracing, ui.perfetto.dev)
// of the simulated request: one process per policy, a track for compute with a slice per prefill
// chunk and decode step, a track per link with the transfers, and counters of resident KV bytes
// per tier.
#include <string>

#include "sim/replay/run.h"

namespace kvsim {

// REQUIRES: run.timings is not empty (the scenario has [hardware]). Written atomically.
void write_chrome_trace(const std::string& path, const ScenarioRun& run);

}  // namespace kvsim

#pragma once
// `kvsim run --timeline FILE.json` for a serving run: a Chrome / Perfetto trace with one process
// per policy: a compute track with a slice per iteration (its prefill and decode requests, tokens
// and bound), a track of the transfers the iterations waited for, and counters of KV bytes per
// tier and of running and waiting requests.
#include <cstdint>
#include <string>

#include "sim/serving/study.h"

namespace kvsim {

// Iterations kept per policy (the file stays loadable in a browser: ~150 bytes per slice); the
// trace of a longer run stops there and says so in its metadata and in `warn`.
constexpr std::int64_t kTimelineIterations = 50000;

// Written atomically. REQUIRES: run_serving(study, kTimelineIterations) made `run`.
void write_serving_chrome_trace(const std::string& path, const ServingRun& run,
                                const std::function<void(const std::string&)>& warn);

}  // namespace kvsim

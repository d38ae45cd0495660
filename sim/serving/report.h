#pragma once
// The output contract of a serving run (DESIGN.md §7): summary.json with one object per policy,
// requests.csv with one row per request and policy, timeline.csv with memory over time.
#include <ostream>
#include <string>

#include "sim/serving/study.h"

namespace kvsim {

void write_serving_outputs(const std::string& dir, const ServingStudy& study, const ServingRun& run);

// One row per policy: latency percentiles, throughput, goodput, memory, limiting resource.
void print_serving_table(std::ostream& out, const ServingStudy& study, const ServingRun& run);

}  // namespace kvsim

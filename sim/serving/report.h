#pragma once
// The output contract of a serving run (DESIGN.md §7): summary.json with one object per policy,
// requests.csv with one row per request and policy, timeline.csv with memory over time.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "sim/serving/study.h"

namespace kvsim {

// Replaces `dir` by the result set as a whole (util/atomic_folder.h). `ours`: the names `dir` may
// hold (run_output_names() and any extra file named inside it); `also_write` writes such extra
// files into the staged folder it is given, so they join the set.
void write_serving_outputs(const std::string& dir, const ServingStudy& study, const ServingRun& run,
                           const std::vector<std::string>& ours,
                           const std::function<void(const std::string& staged_dir)>& also_write = {});

// One row per policy: latency percentiles, throughput, goodput, memory, limiting resource.
void print_serving_table(std::ostream& out, const ServingStudy& study, const ServingRun& run);

}  // namespace kvsim

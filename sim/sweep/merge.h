#pragma once
// kvsim merge: combines the folders of a sharded sweep (kvsim sweep --shard i/N) into one folder
// with the same results.csv and results.h5 as an unsharded run.
#include <cstddef>
#include <string>
#include <vector>

namespace kvsim {

struct MergeSummary {
  std::size_t scenarios = 0;   // in the sweep
  std::size_t rows = 0;        // in results.csv
  std::size_t duplicates = 0;  // scenarios found in more than one input, identical
};

// Checks that every input holds the same sweep (expansion hash) and that together they hold every
// scenario: a missing one is an InputError naming its index and key values; a scenario present in
// several inputs must be identical there (rows.csv byte for byte), or it is an InputError naming
// both folders. Then copies the scenario folders into `out` (which may be one of the inputs) and
// writes out/results.csv and out/results.h5. Nothing is written to `out` unless all checks pass.
MergeSummary merge_sweep_dirs(const std::vector<std::string>& inputs, const std::string& out);

}  // namespace kvsim

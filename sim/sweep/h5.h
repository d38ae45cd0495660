#pragma once
// DIR/results.h5: the results table (sim/sweep/table.h) as one 1-D dataset per column at the
// root, in column order (link creation order is tracked, and the root attribute `columns` lists
// them). Text columns are variable-length UTF-8 strings, integer columns int64, real columns
// float64; absent cells are NaN, so an integer column with an absent cell is stored as float64.
// Root attributes: format = "kvsim-sweep-results", version = 1, sweep_hash, rows. Written
// without timestamps, so the same table gives a byte-identical file.
#include <string>

#include "sim/sweep/expand.h"

namespace kvsim {

struct ResultsTable;

// Written to a temporary file, then renamed to `path`.
void write_results_h5(const std::string& path, const ResultsTable& table, const Sweep& sweep);

}  // namespace kvsim

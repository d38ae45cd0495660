#pragma once
// The sweep's results table: one row per scenario and policy, in expansion order. Columns:
// `scenario` (index), every swept key ("workload.prompt_tokens", ...), `workload.seed` (unless
// swept), `policy` (canonical spec), then every metric of the output contract (sim/replay/metrics_row.h),
// the union over all scenarios in order of first appearance. An absent metric is an empty cell.
// Built only from the stored rows, so it is byte-identical however the sweep was run.
#include <string>
#include <vector>

#include "sim/sweep/expand.h"
#include "sim/sweep/rows.h"

namespace kvsim {

struct ResultsTable {
  std::vector<std::string> columns;
  std::vector<CellKind> kinds;
  std::vector<std::vector<Cell>> rows;
};

// `scenario_rows[i]` holds the rows of sweep.scenarios[i]. A swept key's column is integer when
// all its values are integers, real when all are numbers, text otherwise.
ResultsTable results_table(const Sweep& sweep, const std::vector<RowSet>& scenario_rows);

// DIR/results.csv and DIR/results.h5 (sim/sweep/h5.h), each written atomically.
void write_sweep_results(const std::string& dir, const Sweep& sweep, const std::vector<RowSet>& scenario_rows);

}  // namespace kvsim

#pragma once
// One scenario's rows of a sweep table: `policy`, then every metric of policy_metrics() as text,
// kept in DIR/scenarios/<scenario>/rows.csv so that the final tables can be assembled later, by
// another process or after a merge, exactly as if the scenario had just run.
//
// rows.csv: line 1 the column names, line 2 their kinds (text, integer or real), then one line
// per policy; an absent metric is an empty cell. Numbers are printed in their shortest exact form
// (integers in decimal, reals as the shortest text that reads back to the same double).
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "sim/replay/run.h"

namespace kvsim {

enum class CellKind { text, integer, real };

using Cell = std::optional<std::string>;  // nullopt: absent (an empty cell, never 0)

struct RowSet {
  std::vector<std::string> columns;
  std::vector<CellKind> kinds;          // one per column
  std::vector<std::vector<Cell>> rows;  // one per policy, one cell per column
};

// The rows of a finished scenario, `full` first: policy_metrics(draws, p), so a scenario with
// several draws ([workload] seeds) has means and their <metric>_ci95 columns.
RowSet scenario_rows(const ScenarioDraws& draws);

// Shortest text that reads back to the same double ("nan", "inf" for non-finite values).
std::string format_real(double value);

const char* kind_name(CellKind kind);

void write_rows(std::ostream& out, const RowSet& rows);

// Throws InputError naming `path` if the file is missing or malformed.
RowSet read_rows(const std::string& path);

}  // namespace kvsim

#include "sim/sweep/table.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <ostream>
#include <stdexcept>

#include "sim/sweep/h5.h"
#include "util/atomic_file.h"
#include "util/csv.h"
#include "util/error.h"

namespace kvsim {

namespace {

bool is_integer(const std::string& s) {
  std::int64_t x = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

bool is_real(const std::string& s) {
  double x = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size() && std::isfinite(x);
}

CellKind infer_kind(const std::vector<std::string>& values) {
  if (std::all_of(values.begin(), values.end(), is_integer)) return CellKind::integer;
  if (std::all_of(values.begin(), values.end(), is_real)) return CellKind::real;
  return CellKind::text;
}

}  // namespace

ResultsTable results_table(const Sweep& sweep, const std::vector<RowSet>& scenario_rows) {
  if (scenario_rows.size() != sweep.scenarios.size()) throw std::logic_error("results_table: one RowSet per scenario");
  ResultsTable table;
  table.columns = {"scenario"};
  table.kinds = {CellKind::integer};
  for (std::size_t c = 0; c < sweep.columns.size(); ++c) {
    std::vector<std::string> values;
    for (std::size_t i = 0; i < sweep.scenarios.size(); ++i) values.push_back(sweep.value(i, c));
    table.columns.push_back(sweep.columns[c]);
    table.kinds.push_back(infer_kind(values));
  }
  const bool seed_swept = std::find(sweep.columns.begin(), sweep.columns.end(), "workload.seed") != sweep.columns.end();
  if (!seed_swept) {
    std::vector<std::string> seeds;
    for (const SweepScenario& s : sweep.scenarios) seeds.push_back(s.seed);
    table.columns.push_back("workload.seed");
    table.kinds.push_back(infer_kind(seeds));
  }
  const std::size_t fixed = table.columns.size();

  // Metric columns: the union, in order of first appearance.
  std::map<std::string, std::size_t> position;
  for (std::size_t c = 0; c < fixed; ++c) position[table.columns[c]] = c;
  for (const RowSet& set : scenario_rows) {
    for (std::size_t c = 0; c < set.columns.size(); ++c) {
      const auto [it, added] = position.emplace(set.columns[c], table.columns.size());
      if (added) {
        table.columns.push_back(set.columns[c]);
        table.kinds.push_back(set.kinds[c]);
      } else if (it->second < fixed) {
        throw std::logic_error("metric column " + set.columns[c] + " has the name of a swept key");
      } else if (table.kinds[it->second] != set.kinds[c]) {
        throw std::logic_error("metric column " + set.columns[c] + " changes kind between scenarios");
      }
    }
  }

  for (std::size_t i = 0; i < sweep.scenarios.size(); ++i) {
    const SweepScenario& s = sweep.scenarios[i];
    for (const auto& source : scenario_rows[i].rows) {
      std::vector<Cell> row(table.columns.size());
      row[0] = std::to_string(s.index);
      for (std::size_t c = 0; c < sweep.columns.size(); ++c) row[1 + c] = sweep.value(i, c);
      if (!seed_swept) row[fixed - 1] = s.seed;
      for (std::size_t c = 0; c < source.size(); ++c) row[position.at(scenario_rows[i].columns[c])] = source[c];
      table.rows.push_back(std::move(row));
    }
  }
  return table;
}

void write_sweep_results(const std::string& dir, const Sweep& sweep, const std::vector<RowSet>& scenario_rows) {
  const ResultsTable table = results_table(sweep, scenario_rows);
  write_file_atomically(dir + "/results.csv", [&](std::ostream& out) {
    out << csv_line(table.columns) << "\n";
    for (const auto& row : table.rows) {
      std::vector<std::string> cells;
      for (const Cell& c : row) cells.push_back(c.value_or(""));
      out << csv_line(cells) << "\n";
    }
  });
  write_results_h5(dir + "/results.h5", table, sweep);
}

}  // namespace kvsim

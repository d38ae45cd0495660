#include "sim/sweep/rows.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <ostream>
#include <stdexcept>

#include "sim/replay/metrics_row.h"
#include "util/csv.h"
#include "util/error.h"

namespace kvsim {

namespace {

CellKind cell_kind(MetricKind kind) {
  return kind == MetricKind::real ? CellKind::real : CellKind::integer;  // booleans as 0/1
}

Cell metric_cell(const Metric& m) {
  if (!m.present) return std::nullopt;
  return m.kind == MetricKind::real ? format_real(m.real) : std::to_string(m.integer);
}

}  // namespace

std::string format_real(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}

const char* kind_name(CellKind kind) {
  switch (kind) {
    case CellKind::text: return "text";
    case CellKind::integer: return "integer";
    case CellKind::real: return "real";
  }
  return "text";
}

RowSet scenario_rows(const ScenarioDraws& draws) {
  RowSet set;
  const ScenarioRun& run = draws.first();
  for (std::size_t p = 0; p < run.results.size(); ++p) {
    const std::vector<Metric> metrics = policy_metrics(draws, p);
    if (p == 0) {
      set.columns = {"policy"};
      set.kinds = {CellKind::text};
      for (const Metric& m : metrics) {
        set.columns.push_back(m.column());
        set.kinds.push_back(cell_kind(m.kind));
      }
    }
    if (metrics.size() + 1 != set.columns.size()) throw std::logic_error("policies of one scenario differ in metrics");
    std::vector<Cell> row = {run.results[p].spec};
    for (const Metric& m : metrics) row.push_back(metric_cell(m));
    set.rows.push_back(std::move(row));
  }
  return set;
}

void write_rows(std::ostream& out, const RowSet& rows) {
  out << csv_line(rows.columns) << "\n";
  std::vector<std::string> kinds;
  for (const CellKind k : rows.kinds) kinds.push_back(kind_name(k));
  out << csv_line(kinds) << "\n";
  for (const auto& row : rows.rows) {
    std::vector<std::string> cells;
    for (const Cell& c : row) cells.push_back(c.value_or(""));
    out << csv_line(cells) << "\n";
  }
}

namespace {

bool parses_as(const std::string& text, CellKind kind) {
  const char* end = text.data() + text.size();
  if (kind == CellKind::integer) {
    std::int64_t value = 0;
    const auto [stop, ec] = std::from_chars(text.data(), end, value);
    return ec == std::errc() && stop == end;
  }
  double value = 0;
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && stop == end;
}

}  // namespace

RowSet read_rows(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path, "cannot open file (an incomplete scenario folder?)");
  RowSet set;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string at = path + ": line " + std::to_string(number);
    std::vector<std::string> cells = split_csv_line(line, at);
    if (number == 1) {
      set.columns = std::move(cells);
      continue;
    }
    if (cells.size() != set.columns.size()) {
      fail_input(at, std::to_string(cells.size()) + " cells; expected " + std::to_string(set.columns.size()));
    }
    if (number == 2) {
      for (const std::string& k : cells) {
        if (k == "text") set.kinds.push_back(CellKind::text);
        else if (k == "integer") set.kinds.push_back(CellKind::integer);
        else if (k == "real") set.kinds.push_back(CellKind::real);
        else fail_input(at, "unknown column kind '" + k + "'; expected text, integer or real");
      }
      continue;
    }
    std::vector<Cell> row;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      if (cells[c].empty() && set.kinds[c] != CellKind::text) {
        row.emplace_back(std::nullopt);
        continue;
      }
      // A number cell that does not parse would only fail when results.h5 is written (kvsim merge
      // copied such a file before: issue 17 item 4); refuse it where it is read.
      if (set.kinds[c] != CellKind::text && !parses_as(cells[c], set.kinds[c])) {
        fail_input(at, "column " + set.columns[c] + ": '" + cells[c] + "' is not " +
                           (set.kinds[c] == CellKind::integer ? "an integer" : "a number"));
      }
      row.emplace_back(std::move(cells[c]));
    }
    set.rows.push_back(std::move(row));
  }
  if (number < 3 || set.columns.empty() || set.columns.front() != "policy") {
    fail_input(path, "not a kvsim sweep rows file (expected a header starting with 'policy', kinds, and rows)");
  }
  return set;
}

}  // namespace kvsim

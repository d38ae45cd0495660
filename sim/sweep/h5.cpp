#include "sim/sweep/h5.h"

#include <H5Cpp.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "sim/sweep/table.h"
#include "traces/hdf5_util.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace kvsim {

namespace {

template <typename T>
T parse_cell(const std::string& text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw std::logic_error("results table cell '" + text + "' is not a number of its column's kind");
  }
  return value;
}

void write_column(const H5::Group& root, const std::string& name, CellKind kind, const ResultsTable& table,
                  std::size_t column) {
  const hsize_t count = table.rows.size();
  const H5::DataSpace space(1, &count);
  bool any_absent = false;
  for (const auto& row : table.rows) any_absent = any_absent || !row[column];

  if (kind == CellKind::text) {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    std::vector<const char*> pointers;
    for (const auto& row : table.rows) pointers.push_back(row[column] ? row[column]->c_str() : "");
    h5::create_dataset(root, name, type, space).write(pointers.data(), type);
  } else if (kind == CellKind::integer && !any_absent) {
    std::vector<std::int64_t> values;
    for (const auto& row : table.rows) values.push_back(parse_cell<std::int64_t>(*row[column]));
    h5::create_dataset(root, name, H5::PredType::STD_I64LE, space).write(values.data(), H5::PredType::NATIVE_INT64);
  } else {
    // Reals, and integer columns with an absent cell: NaN marks the absent cells.
    std::vector<double> values;
    for (const auto& row : table.rows) {
      if (!row[column]) values.push_back(std::numeric_limits<double>::quiet_NaN());
      else if (kind == CellKind::integer) values.push_back(static_cast<double>(parse_cell<std::int64_t>(*row[column])));
      else values.push_back(parse_cell<double>(*row[column]));
    }
    h5::create_dataset(root, name, H5::PredType::IEEE_F64LE, space).write(values.data(), H5::PredType::NATIVE_DOUBLE);
  }
}

}  // namespace

void write_results_h5(const std::string& path, const ResultsTable& table, const Sweep& sweep) {
  const std::string temporary = temporary_path_for(path);
  try {
    H5::Exception::dontPrint();
    // Datasets are listed in creation order (column order), and nothing records a time.
    H5::FileCreatPropList fcpl;
    H5Pset_link_creation_order(fcpl.getId(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Pset_obj_track_times(fcpl.getId(), false);
    H5::H5File file(temporary, H5F_ACC_TRUNC, fcpl);
    const H5::Group root = file.openGroup("/");
    h5::write_string(root, "format", "kvsim-sweep-results");
    h5::write_integer(root, "version", 1);
    h5::write_string(root, "sweep_hash", sweep.hash);
    h5::write_integer(root, "rows", static_cast<std::int64_t>(table.rows.size()));
    h5::write_strings(root, "columns", table.columns);
    for (std::size_t c = 0; c < table.columns.size(); ++c) {
      if (table.columns[c].find('/') != std::string::npos || table.columns[c] == ".") {
        throw std::logic_error("column name '" + table.columns[c] + "' cannot be an HDF5 dataset name");
      }
      write_column(root, table.columns[c], table.kinds[c], table, c);
    }
    file.close();
  } catch (const H5::Exception& e) {
    std::remove(temporary.c_str());
    fail_input(path, "cannot write results: " + h5::error_text(e));
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
  commit_temporary(temporary, path);
}

}  // namespace kvsim

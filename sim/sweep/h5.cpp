#include "sim/sweep/h5.h"

#include <H5Cpp.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "sim/sweep/table.h"
#include "traces/hdf5_util.h"
#include "traces/hdf5_writer.h"

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

void write_column(Hdf5Writer& writer, const H5::Group& root, const std::string& name, CellKind kind,
                  const ResultsTable& table, std::size_t column) {
  const hsize_t count = table.rows.size();
  const H5::DataSpace space(1, &count);
  bool any_absent = false;
  for (const auto& row : table.rows) any_absent = any_absent || !row[column];

  if (kind == CellKind::text) {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    std::vector<const char*> pointers;
    for (const auto& row : table.rows) pointers.push_back(row[column] ? row[column]->c_str() : "");
    const H5::DataSet& data = writer.dataset(root, name, type, space);
    data.write(pointers.data(), type);
    writer.close(data);
  } else if (kind == CellKind::integer && !any_absent) {
    std::vector<std::int64_t> values;
    for (const auto& row : table.rows) values.push_back(parse_cell<std::int64_t>(*row[column]));
    const H5::DataSet& data = writer.dataset(root, name, H5::PredType::STD_I64LE, space);
    data.write(values.data(), H5::PredType::NATIVE_INT64);
    writer.close(data);
  } else {
    // Reals, and integer columns with an absent cell: NaN marks the absent cells.
    std::vector<double> values;
    for (const auto& row : table.rows) {
      if (!row[column]) values.push_back(std::numeric_limits<double>::quiet_NaN());
      else if (kind == CellKind::integer) values.push_back(static_cast<double>(parse_cell<std::int64_t>(*row[column])));
      else values.push_back(parse_cell<double>(*row[column]));
    }
    const H5::DataSet& data = writer.dataset(root, name, H5::PredType::IEEE_F64LE, space);
    data.write(values.data(), H5::PredType::NATIVE_DOUBLE);
    writer.close(data);
  }
}

}  // namespace

void write_results_h5(const std::string& path, const ResultsTable& table, const Sweep& sweep) {
  for (const std::string& column : table.columns) {
    if (column.find('/') != std::string::npos || column == ".") {
      throw std::logic_error("column name '" + column + "' cannot be an HDF5 dataset name");
    }
  }
  // Datasets are listed in creation order (column order), and nothing records a time.
  write_hdf5_file(
      path,
      [&](Hdf5Writer& writer) {
        const H5::Group& root = writer.root();
        h5::write_string(root, "format", "kvsim-sweep-results");
        h5::write_integer(root, "version", 1);
        h5::write_string(root, "sweep_hash", sweep.hash);
        h5::write_integer(root, "rows", static_cast<std::int64_t>(table.rows.size()));
        h5::write_strings(root, "columns", table.columns);
        for (std::size_t c = 0; c < table.columns.size(); ++c)
          write_column(writer, root, table.columns[c], table.kinds[c], table, c);
      },
      /*track_creation_order=*/true);
}

}  // namespace kvsim

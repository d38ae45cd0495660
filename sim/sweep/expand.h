#pragma once
// Sweep files (kvsim sweep): a scenario file whose values may be lists or ranges
// (sim/sweep/values.h), plus a [sweep] section with `seed`, `zip` and `exclude`. Expansion is pure
// text processing: every scenario comes out as scenario INI text, parsed later by
// load_scenario_text() as if it were the sweep file (so relative paths resolve against its folder).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvsim {

// One scenario of a sweep. Its swept values are Sweep::value(index, column): kept as indices into
// the columns' value lists, so that expanding 10^6 scenarios allocates nothing per scenario
// (issue 17 item 9).
struct SweepScenario {
  std::size_t index = 0;        // position in expansion order, 0-based
  std::string seed;             // its [workload] seed: as listed, or derived (see expand_sweep)
  std::uint64_t text_hash = 0;  // of its INI text (Sweep::text); Sweep::hash_hex writes it
};

struct Sweep {
  std::string path;                                     // the sweep file
  std::vector<std::string> columns;                     // swept keys "section.key", in file order
  std::vector<std::vector<std::string>> column_values;  // per column, its values in file order
  std::vector<SweepScenario> scenarios;                 // expansion order
  std::vector<std::uint32_t> value_indices;             // scenarios x columns, row-major: which value
  std::string hash;                                     // 16 hex digits identifying the whole expansion

  // Scenario `index`'s value of column `column`.
  const std::string& value(std::size_t index, std::size_t column) const {
    return column_values[column][value_indices[index * columns.size() + column]];
  }
  // All of scenario `index`'s values, one per column.
  std::vector<std::string> values(std::size_t index) const;
  // Scenario `index`'s text hash as 16 hex digits (its folder name's suffix).
  std::string hash_hex(std::size_t index) const;

  // Scenario `index`'s INI text, made from its values and seed on each call: the texts are not
  // kept (10^6 scenarios' texts would take ~600 MB; issue 17 item 9).
  std::string text(std::size_t index) const;

  // How the texts are made: fixed text, a swept key's "key = " (its value and a newline follow),
  // or the derived "seed = N" line. Filled by expand_sweep.
  struct TextSegment {
    std::string fixed;
    std::ptrdiff_t column = -1;
    bool seed = false;
  };
  std::shared_ptr<const std::vector<TextSegment>> text_segments;

  // "scenario 3 (workload.prompt_tokens=8192, workload.chunk_tokens=2048)"
  std::string describe(std::size_t index) const;
  // "000003-<hash>": the scenario's folder under DIR/scenarios/
  std::string folder_name(std::size_t index) const;
};

// Expands sweep text as if it were the file `path`. The cartesian product runs over the swept keys
// in file order (the first varies slowest); keys of one `zip` line advance together; combinations
// matching an `exclude` line are dropped. Each [policy] spec line is brace-expanded and stays a
// row of every scenario, never a scenario of its own. Without a [workload] seed in the file, each
// scenario's seed is derived from [sweep] seed and its [model] and [workload] values only, so the
// synthetic trace of a scenario does not change when policies or hardware are added to the sweep.
// Throws InputError("<path>: [section] key: ...") for malformed values, zip of unequal lengths,
// unknown keys in zip/exclude, or an empty expansion.
Sweep expand_sweep(const std::string& text, const std::string& path);

// expand_sweep() of the file's text.
Sweep load_sweep(const std::string& path);

// The help text for the sweep file syntax (kvsim sweep --help).
std::string sweep_help();

}  // namespace kvsim

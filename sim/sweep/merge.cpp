#include "sim/sweep/merge.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sim/sweep/store.h"
#include "sim/sweep/table.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/output_guard.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

MergeSummary merge_sweep_dirs(const std::vector<std::string>& inputs, const std::string& out) {
  if (inputs.empty()) fail_input("kvsim merge", "no input folders");
  // Every shard's sweep.ini is re-expanded and checked against its own sweep.id (issue 17 item 4:
  // only the first one was), and every shard must hold the same expansion.
  const Sweep sweep = load_stored_sweep(inputs.front());
  for (const std::string& dir : inputs) {
    const SweepId id = read_sweep_id(dir);
    if (id.expansion != sweep.hash) {
      fail_input(dir, "holds another sweep (" + std::to_string(id.scenarios) + " scenarios, expansion " + id.expansion +
                          ") than " + inputs.front() + " (" + std::to_string(sweep.scenarios.size()) +
                          " scenarios, expansion " + sweep.hash + ")");
    }
    load_stored_sweep(dir);
  }
  const std::size_t count = sweep.scenarios.size();

  // `out` may already hold a merge (or be a shard itself): its scenario folders are compared with
  // the inputs like any other copy, never trusted.
  std::vector<std::string> sources = inputs;
  std::error_code ec;
  const bool out_is_input = std::any_of(inputs.begin(), inputs.end(), [&](const std::string& dir) {
    std::error_code ignored;
    return fs::equivalent(dir, out, ignored);
  });
  if (!out_is_input && fs::exists(out + "/sweep.id", ec)) {
    const SweepId id = read_sweep_id(out);
    if (id.expansion != sweep.hash) {
      fail_input(out, "holds the results of another sweep (expansion " + id.expansion + ", not " + sweep.hash +
                          "): use a new --out folder");
    }
    load_stored_sweep(out);
    sources.push_back(out);
  }
  {
    std::vector<std::string> read_files;
    for (const std::string& dir : inputs) {
      read_files.push_back(dir + "/sweep.ini");
      read_files.push_back(dir + "/sweep.id");
    }
    for (const char* name : {"results.csv", "results.h5"}) {
      refuse_output_over_inputs(out + "/" + name, read_files, "--out");
    }
  }

  // Which folders hold each scenario; anything else in scenarios/ is not from this sweep.
  std::vector<std::vector<std::string>> holders(count);
  for (const std::string& dir : sources) {
    for (const auto& entry : fs::directory_iterator(dir + "/scenarios", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(".tmp-", 0) == 0) continue;  // a scenario that was still running
      std::size_t index = count;
      const auto dash = name.find('-');
      if (dash != std::string::npos)
        index = static_cast<std::size_t>(std::strtoull(name.substr(0, dash).c_str(), nullptr, 10));
      if (index >= count || sweep.folder_name(index) != name) {
        fail_input(entry.path().string(), "is not a scenario folder of this sweep");
      }
      if (!scenario_done(dir, sweep, index)) fail_input(entry.path().string(), "has no rows.csv (an incomplete copy?)");
      holders[index].push_back(dir);
    }
  }

  MergeSummary summary;
  summary.scenarios = count;
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < count; ++i) {
    // A folder only `out` holds is not evidence from any input.
    const bool in_inputs = !holders[i].empty() && !(holders[i].size() == 1 && holders[i][0] == out && !out_is_input);
    if (!in_inputs) missing.push_back(i);
  }
  if (!missing.empty()) {
    std::string also;
    if (missing.size() > 1) {
      also = "; " + std::to_string(missing.size()) + " of " + std::to_string(count) + " scenarios are missing (";
      for (std::size_t k = 0; k < missing.size() && k < 10; ++k) also += (k ? ", " : "") + std::to_string(missing[k]);
      also += missing.size() > 10 ? ", ...)" : ")";
    }
    std::string folders = inputs.front();
    for (std::size_t k = 1; k < inputs.size() && k < 3; ++k) folders += " " + inputs[k];
    if (inputs.size() > 3) folders += " (+" + std::to_string(inputs.size() - 3) + " more)";
    fail_input(folders, sweep.describe(missing.front()) + " is in none of the input folders" + also +
                            ": run its shard, or add the folder that holds it");
  }

  // Every copy is parsed (a malformed rows.csv is refused here, naming it, before anything is
  // written) and compared byte for byte with the first input's.
  std::vector<RowSet> rows;
  rows.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string& first = holders[i][0];  // an input: a scenario only `out` holds is missing above
    const std::string reference = file_text(scenario_dir(first, sweep, i) + "/rows.csv");
    rows.push_back(read_scenario_rows(first, sweep, i));
    bool duplicate = false;
    for (std::size_t k = 1; k < holders[i].size(); ++k) {
      const std::string& dir = holders[i][k];
      read_scenario_rows(dir, sweep, i);
      if (file_text(scenario_dir(dir, sweep, i) + "/rows.csv") != reference) {
        const std::string hint = dir == out && !out_is_input
                                     ? " (a copy left by an earlier merge, changed since: delete it to copy it again)"
                                     : " (different kvsim builds or inputs?)";
        fail_input(scenario_dir(dir, sweep, i), sweep.describe(i) + " has other results than in " + first + hint);
      }
      if (dir != out || out_is_input) duplicate = true;
    }
    summary.duplicates += duplicate ? 1 : 0;
    summary.rows += rows.back().rows.size();
  }

  prepare_sweep_dir(out, sweep, read_ini_text(inputs.front() + "/sweep.ini"));
  remove_stale_temporaries(out);
  for (std::size_t i = 0; i < count; ++i) {
    if (!scenario_done(out, sweep, i)) copy_scenario_result(holders[i][0], out, sweep, i);
  }
  write_sweep_results(out, sweep, rows);
  return summary;
}

}  // namespace kvsim

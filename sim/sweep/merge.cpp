#include "sim/sweep/merge.h"

#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <sstream>

#include "sim/sweep/store.h"
#include "sim/sweep/table.h"
#include "util/error.h"
#include "util/ini.h"

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
  const SweepId first = read_sweep_id(inputs.front());
  for (const std::string& dir : inputs) {
    const SweepId id = read_sweep_id(dir);
    if (id.expansion != first.expansion) {
      fail_input(dir, "holds another sweep (" + std::to_string(id.scenarios) + " scenarios, expansion " + id.expansion +
                          ") than " + inputs.front() + " (" + std::to_string(first.scenarios) + " scenarios, expansion " +
                          first.expansion + ")");
    }
  }
  const Sweep sweep = load_stored_sweep(inputs.front());
  const std::size_t count = sweep.scenarios.size();

  // Which inputs hold each scenario; anything else in scenarios/ is not from this sweep.
  std::vector<std::vector<std::string>> holders(count);
  for (const std::string& dir : inputs) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir + "/scenarios", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(".tmp-", 0) == 0) continue;  // a scenario that was still running
      std::size_t index = count;
      const auto dash = name.find('-');
      if (dash != std::string::npos) index = static_cast<std::size_t>(std::strtoull(name.substr(0, dash).c_str(), nullptr, 10));
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
    if (holders[i].empty()) missing.push_back(i);
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
  for (std::size_t i = 0; i < count; ++i) {
    if (holders[i].size() < 2) continue;
    const std::string reference = file_text(scenario_dir(holders[i][0], sweep, i) + "/rows.csv");
    for (std::size_t k = 1; k < holders[i].size(); ++k) {
      if (file_text(scenario_dir(holders[i][k], sweep, i) + "/rows.csv") != reference) {
        fail_input(scenario_dir(holders[i][k], sweep, i), sweep.describe(i) + " has other results than in " +
                                                             holders[i][0] + " (different kvsim builds or inputs?)");
      }
    }
    ++summary.duplicates;
  }

  prepare_sweep_dir(out, sweep, read_ini_text(inputs.front() + "/sweep.ini"));
  std::vector<RowSet> rows;
  for (std::size_t i = 0; i < count; ++i) {
    if (!scenario_done(out, sweep, i)) copy_scenario_result(holders[i][0], out, sweep, i);
    rows.push_back(read_scenario_rows(out, sweep, i));
    summary.rows += rows.back().rows.size();
  }
  write_sweep_results(out, sweep, rows);
  return summary;
}

}  // namespace kvsim

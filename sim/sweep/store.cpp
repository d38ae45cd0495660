#include "sim/sweep/store.h"

#include <unistd.h>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <ostream>

#include "sim/replay/report.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/ini.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIdMagic = "kvsim-sweep 1";
constexpr const char* kTemporaryPrefix = ".tmp-";

// ".tmp-<folder>~<host>~<pid>": the host and pid tell a later run whether its writer is dead.
std::string temporary_folder(const std::string& dir, const Sweep& sweep, std::size_t index) {
  return dir + "/scenarios/" + kTemporaryPrefix + sweep.folder_name(index) + "~" + host_name() + "~" +
         std::to_string(::getpid());
}

void commit_folder(const std::string& temporary, const std::string& final_path) {
  std::error_code ec;
  fs::rename(temporary, final_path, ec);
  if (!ec) return;
  std::error_code ignored;
  fs::remove_all(temporary, ignored);
  // Another process (a shard sharing this folder) finished the same scenario first: keep its copy.
  if (fs::exists(final_path + "/rows.csv", ignored)) return;
  fail_input(final_path, "cannot write the scenario folder: " + ec.message());
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

}  // namespace

void prepare_sweep_dir(const std::string& dir, const Sweep& sweep, const std::string& sweep_text) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) fail_input(dir, "--out exists and is not a folder");
  if (fs::exists(dir + "/sweep.id", ec)) {
    const SweepId id = read_sweep_id(dir);
    if (id.expansion != sweep.hash) {
      fail_input(dir, "holds the results of another sweep (" + id.source + ": " + std::to_string(id.scenarios) +
                          " scenarios, expansion " + id.expansion + "); " + sweep.path + " now expands to " +
                          std::to_string(sweep.scenarios.size()) + " scenarios, expansion " + sweep.hash +
                          ": use a new --out folder, or delete this one to start over");
    }
    fs::create_directories(dir + "/scenarios", ec);
    if (ec) fail_input(dir, "cannot create the scenarios folder: " + ec.message());
    return;
  }
  if (fs::exists(dir, ec)) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      const bool ours = name == "scenarios" || name.rfind("sweep.ini", 0) == 0 || name.rfind("sweep.id", 0) == 0;
      if (!ours) {
        fail_input(dir, "exists and is not a kvsim sweep folder (no sweep.id, holds " + name +
                            "): use a new or empty --out folder");
      }
    }
  }
  fs::create_directories(dir + "/scenarios", ec);
  if (ec) fail_input(dir, "cannot create the output folder: " + ec.message());
  write_text(dir + "/sweep.ini", sweep_text);
  const std::string source = fs::absolute(sweep.path, ec).lexically_normal().string();
  write_text(dir + "/sweep.id", std::string(kIdMagic) + "\nexpansion " + sweep.hash + "\nscenarios " +
                                    std::to_string(sweep.scenarios.size()) + "\nsource " + source + "\n");
}

SweepId read_sweep_id(const std::string& dir) {
  const std::string path = dir + "/sweep.id";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input(dir, "no such folder");
  std::ifstream in(path);
  if (!in) fail_input(dir, "is not a kvsim sweep folder (no sweep.id)");
  SweepId id;
  std::string line;
  bool magic = false, scenarios = false;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (line == kIdMagic) magic = true;
    else if (key == "expansion") id.expansion = value;
    else if (key == "source") id.source = value;
    else if (key == "scenarios") {
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), id.scenarios);
      scenarios = error == std::errc() && end == value.data() + value.size();
    }
  }
  if (!magic || !scenarios || id.expansion.size() != 16 || id.source.empty()) {
    fail_input(path, "malformed; expected the lines '" + std::string(kIdMagic) + "', expansion, scenarios and source");
  }
  return id;
}

Sweep load_stored_sweep(const std::string& dir) {
  const SweepId id = read_sweep_id(dir);
  Sweep sweep = expand_sweep(read_ini_text(dir + "/sweep.ini"), id.source);
  if (sweep.hash != id.expansion || sweep.scenarios.size() != id.scenarios) {
    fail_input(dir + "/sweep.ini",
               "does not expand to the sweep recorded in sweep.id (edited by hand, or written "
               "by another kvsim version)");
  }
  return sweep;
}

std::string scenario_dir(const std::string& dir, const Sweep& sweep, std::size_t index) {
  return dir + "/scenarios/" + sweep.folder_name(index);
}

bool scenario_done(const std::string& dir, const Sweep& sweep, std::size_t index) {
  std::error_code ec;
  return fs::exists(scenario_dir(dir, sweep, index) + "/rows.csv", ec);
}

void write_scenario_result(const std::string& dir, const Sweep& sweep, std::size_t index, const Scenario& scenario,
                           const ScenarioDraws& draws) {
  const std::string temporary = temporary_folder(dir, sweep, index);
  std::error_code ec;
  fs::remove_all(temporary, ec);
  try {
    write_run_files(temporary, scenario, draws);
    write_text(temporary + "/scenario.ini", "# " + sweep.describe(index) + " of " + sweep.path +
                                                " (relative paths resolve against that file's folder)\n" +
                                                sweep.text(index));
    write_file_atomically(temporary + "/rows.csv", [&](std::ostream& out) { write_rows(out, scenario_rows(draws)); });
  } catch (...) {
    fs::remove_all(temporary, ec);
    throw;
  }
  commit_folder(temporary, scenario_dir(dir, sweep, index));
}

void copy_scenario_result(const std::string& from_dir, const std::string& dir, const Sweep& sweep, std::size_t index) {
  const std::string temporary = temporary_folder(dir, sweep, index);
  std::error_code ec;
  fs::remove_all(temporary, ec);
  fs::copy(scenario_dir(from_dir, sweep, index), temporary, fs::copy_options::recursive, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    fail_input(scenario_dir(dir, sweep, index), "cannot copy from " + from_dir + ": " + ec.message());
  }
  commit_folder(temporary, scenario_dir(dir, sweep, index));
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  const std::string host = host_name();
  for (const auto& entry : fs::directory_iterator(dir + "/scenarios", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kTemporaryPrefix, 0) != 0) continue;
    const auto pid_at = name.rfind('~');
    const auto host_at = pid_at == std::string::npos || pid_at == 0 ? std::string::npos : name.rfind('~', pid_at - 1);
    if (host_at == std::string::npos || name.substr(host_at + 1, pid_at - host_at - 1) != host) continue;
    pid_t pid = 0;
    const char* begin = name.data() + pid_at + 1;
    const auto [end, error] = std::from_chars(begin, name.data() + name.size(), pid);
    if (error != std::errc() || end != name.data() + name.size()) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
}

RowSet read_scenario_rows(const std::string& dir, const Sweep& sweep, std::size_t index) {
  return read_rows(scenario_dir(dir, sweep, index) + "/rows.csv");
}

}  // namespace kvsim

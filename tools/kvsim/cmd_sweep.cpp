// kvsim sweep: many scenarios from one sweep file, in parallel, resumable, shardable.
#include <tbb/info.h>
#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <iostream>
#include <set>

#include "sim/sweep/expand.h"
#include "sim/sweep/run.h"
#include "sim/sweep/store.h"
#include "sim/sweep/table.h"
#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "tools/kvsim/progress.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/output_guard.h"
#include "util/threads.h"

namespace kvsim::cli {

namespace po = boost::program_options;

namespace {

constexpr const char* kHelp = R"(
Runs every scenario of the sweep that DIR does not hold yet, in parallel, and records each one as
it finishes in DIR/scenarios/<index>-<hash>/ (written whole or not at all: a killed sweep resumes
where it stopped when the same command is run again). Once every scenario is in DIR, writes
  DIR/results.csv   one row per scenario and policy: scenario, the swept keys, workload.seed,
                    policy, then every metric of summary.json flattened (attention_recall_mean,
                    ttft_s_p50, bytes_read_hbm, ...); a metric not computed is an empty cell
  DIR/results.h5    the same table, one dataset per column (strings UTF-8, numbers int64 or
                    float64; absent cells NaN, so an integer column with one is float64); the
                    root attribute `columns` lists the columns in table order
Both come out byte-identical however the sweep was run: interrupted, with any --jobs, sharded.
DIR also keeps sweep.ini (a copy) and sweep.id (the expansion's hash): running a changed sweep
file into the same DIR is refused. Each scenario folder has its scenario.ini, summary.json,
timeline.csv and requests.csv, as kvsim run writes them.

Shards: --shard i/N runs the scenarios whose index is i-1 modulo N, e.g. one Slurm array task
each, into their own folders (or one shared folder); then
  kvsim merge DIR1 DIR2 ... --out DIR
checks that they hold the same sweep and every scenario, and writes the same tables.

)";

struct Shard {
  std::size_t index = 0;  // 0-based
  std::size_t count = 1;
};

Shard parse_shard(const std::string& text) {
  Shard shard;
  const auto slash = text.find('/');
  std::size_t i = 0, n = 0;
  bool ok = slash != std::string::npos;
  if (ok) {
    const auto a = std::from_chars(text.data(), text.data() + slash, i);
    const auto b = std::from_chars(text.data() + slash + 1, text.data() + text.size(), n);
    ok = a.ec == std::errc() && a.ptr == text.data() + slash && b.ec == std::errc() &&
         b.ptr == text.data() + text.size() && n >= 1 && i >= 1 && i <= n;
  }
  if (!ok) fail_input("kvsim sweep --shard", "expected i/N with 1 <= i <= N (e.g. 2/8), got '" + text + "'");
  shard.index = i - 1;
  shard.count = n;
  return shard;
}

void list_scenarios(const Sweep& sweep) {
  std::cout << sweep.scenarios.size() << " scenarios (expansion " << sweep.hash << ")\n";
  std::string line;
  for (const SweepScenario& s : sweep.scenarios) {
    line = sweep.folder_name(s.index);
    line += "  seed ";
    line += s.seed;
    for (std::size_t c = 0; c < sweep.columns.size(); ++c)
      line += "  " + sweep.columns[c] + "=" + sweep.value(s.index, c);
    line += '\n';
    std::cout << line;
  }
}

}  // namespace

int cmd_sweep(const Args& args) {
  po::options_description options("kvsim sweep SWEEP.ini --out DIR [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help (and the sweep file syntax)")
      ("sweep", po::value<std::string>(), "sweep INI file")
      ("out,o", po::value<std::string>(), "output folder (created, or resumed)")
      ("shard", po::value<std::string>(), "i/N: run only the scenarios whose index is i-1 modulo N")
      ("jobs,j", po::value<int>(), "threads in all, shared by the scenarios running at once (default: all cores; 1 to 1024, and their stacks (4 MiB each) within --max-memory)")
      ("list", "print the expanded scenarios (index, hash, seed, swept values) and exit")
      ("quiet,q", "no progress output on stderr");
  // clang-format on
  po::positional_options_description positional;
  positional.add("sweep", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim sweep");
  if (v.count("help")) {
    std::cout << options << kHelp << sweep_help() << "\nExample:\n"
              << "  kvsim sweep configs/sweeps/smoke.ini --out results/smoke\n";
    return 0;
  }
  if (!v.count("sweep")) fail_input("kvsim sweep", "missing SWEEP.ini (see kvsim sweep --help)");
  const std::string path = v["sweep"].as<std::string>();
  const std::string text = read_ini_text(path);
  const Sweep sweep = expand_sweep(text, path);
  if (v.count("list")) {
    // The expansion alone (linear, ~1 us a scenario): parsing and validating every scenario costs
    // ~0.2 ms each (issue 17 item 9), and a run does that before any work anyway.
    list_scenarios(sweep);
    return 0;
  }
  const std::vector<Scenario> scenarios = load_sweep_scenarios(sweep);
  if (!v.count("out")) fail_input("kvsim sweep", "missing --out DIR (see kvsim sweep --help)");
  const std::string dir = v["out"].as<std::string>();
  const Shard shard = v.count("shard") ? parse_shard(v["shard"].as<std::string>()) : Shard{};
  // The default (every core) is not checked: it is what the machine has, not a typo.
  const int jobs = v.count("jobs") ? v["jobs"].as<int>() : std::min(tbb::info::default_concurrency(), kMaxThreads);
  if (v.count("jobs")) check_thread_count(jobs, 1, "kvsim sweep --jobs");
  const bool quiet = v.count("quiet") > 0;
  const auto start = std::chrono::steady_clock::now();

  // No file the sweep writes may be one it reads (issue 17 item 2).
  std::set<std::string> inputs = {path};
  for (const Scenario& scenario : scenarios) {
    for (const std::string& file : scenario_input_files(scenario)) inputs.insert(file);
  }
  const std::vector<std::string> input_list(inputs.begin(), inputs.end());
  for (const char* name : {"results.csv", "results.h5", "sweep.ini", "sweep.id"}) {
    refuse_output_over_inputs(dir + "/" + name, input_list, "--out");
  }

  prepare_sweep_dir(dir, sweep, text);
  remove_stale_temporaries(dir);
  remove_dead_temporaries(dir);  // results.csv/.h5 and sweep.id of a sweep killed while writing them
  std::vector<std::size_t> mine, pending;
  for (std::size_t i = shard.index; i < sweep.scenarios.size(); i += shard.count) {
    mine.push_back(i);
    if (!scenario_done(dir, sweep, i)) pending.push_back(i);
  }
  if (!quiet) {
    std::cerr << "kvsim sweep: " << sweep.scenarios.size() << " scenarios";
    if (shard.count > 1) std::cerr << ", shard " << shard.index + 1 << "/" << shard.count << ": " << mine.size();
    std::cerr << " (" << mine.size() - pending.size() << " already done), " << jobs << " jobs\n";
  }
  Progress progress(mine.size(), mine.size() - pending.size(), !quiet && !pending.empty());
  run_sweep_scenarios(dir, sweep, scenarios, pending, jobs,
                      [&](std::size_t index, double seconds) { progress.finished(sweep.describe(index), seconds); });
  progress.close();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::size_t absent = 0;
  for (std::size_t i = 0; i < sweep.scenarios.size(); ++i) absent += scenario_done(dir, sweep, i) ? 0 : 1;
  if (absent > 0) {
    std::cout << dir << ": shard " << shard.index + 1 << "/" << shard.count << " done (" << pending.size()
              << " scenarios run now, " << format_duration(seconds) << "); " << absent << " of "
              << sweep.scenarios.size() << " scenarios are in other shards: combine the folders with "
              << "kvsim merge DIR1 DIR2 ... --out DIR\n";
    return 0;
  }
  std::vector<RowSet> rows;
  std::size_t row_count = 0;
  for (std::size_t i = 0; i < sweep.scenarios.size(); ++i) {
    rows.push_back(read_scenario_rows(dir, sweep, i));
    row_count += rows.back().rows.size();
  }
  write_sweep_results(dir, sweep, rows);
  std::cout << dir << "/results.csv, results.h5: " << sweep.scenarios.size() << " scenarios, " << row_count << " rows ("
            << pending.size() << " scenarios run now, " << format_duration(seconds) << ")\n";
  return 0;
}

}  // namespace kvsim::cli

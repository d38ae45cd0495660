// kvsim run: one scenario, every policy side by side.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "sim/replay/chrome_trace.h"
#include "sim/replay/report.h"
#include "sim/replay/run.h"
#include "sim/scenario.h"
#include "sim/serving/chrome_trace.h"
#include "sim/serving/report.h"
#include "sim/serving/study.h"
#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "tools/kvsim/progress.h"
#include "util/atomic_folder.h"
#include "util/error.h"
#include "util/output_guard.h"
#include "util/threads.h"

namespace kvsim::cli {

namespace po = boost::program_options;

namespace {

// Whether `file` lies directly in the folder `dir` (then it joins the result set written as a whole).
bool directly_in(const std::string& file, const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(file).has_parent_path()
                                           ? std::filesystem::path(file).parent_path()
                                           : std::filesystem::path(".");
  const auto a = std::filesystem::weakly_canonical(parent, ec);
  if (ec) return false;
  const auto b = std::filesystem::weakly_canonical(dir, ec);
  return !ec && a == b;
}

}  // namespace

int cmd_run(const Args& args) {
  po::options_description options("kvsim run SCENARIO.ini --out DIR [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("scenario", po::value<std::string>(), "scenario INI file")
      ("out,o", po::value<std::string>(), "output folder: summary.json, timeline.csv, requests.csv, written whole (a new set replaces an old one in one rename; a folder holding other files is refused)")
      ("save-kept", po::value<std::string>(), "also write each policy's final kept mask per layer to this .h5 file")
      ("timeline", po::value<std::string>(), "write a Chrome/Perfetto trace of the simulated time (needs [hardware]; serving runs: one slice per iteration, the first 50,000 per policy, with KV-per-tier and request counters)")
      ("threads", po::value<int>(), "override [sim] threads (0: all cores; at most 1024, and their stacks (4 MiB each) within --max-memory)")
      ("no-cache", "serving: measure every retention profile, reading and writing no cache (as [sim] cache_dir = none)")
      ("quiet,q", "no progress output on stderr");
  // clang-format on
  po::positional_options_description positional;
  positional.add("scenario", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim run");
  if (v.count("help")) {
    std::cout << options << "\n"
              << "Replays one request prefill (in chunks) then decode, calling each policy at its eviction\n"
                 "points, and reports per policy: KV footprint (entries x steps, normalized by full causal\n"
                 "attention), peak resident entries and bytes, attention recall and output error of the\n"
                 "decode queries (fidelity against the full cache), and needle retention (synthetic traces).\n"
                 "`full` always runs first as the baseline.\n\n"
              << scenario_help() << "\n"
              << "Policy specs: see `kvsim policies`. Example:\n"
                 "  kvsim run configs/scenarios/default.ini --out results/default\n";
    return 0;
  }
  if (!v.count("scenario")) fail_input("kvsim run", "missing SCENARIO.ini (see kvsim run --help)");
  if (!v.count("out")) fail_input("kvsim run", "missing --out DIR (see kvsim run --help)");
  const bool quiet = v.count("quiet") > 0;

  Scenario scenario = load_scenario(v["scenario"].as<std::string>());
  if (v.count("no-cache")) scenario.cache_dir = "none";
  if (v.count("threads")) {
    scenario.threads = v["threads"].as<int>();
    check_thread_count(scenario.threads, 0, "kvsim run --threads");
  }
  cap_worker_threads(scenario.threads);  // single request and serving runs alike
  // Check every output location before any work, so a bad path never leaves partial results and
  // no output replaces an input (issue 17 item 2).
  const std::string out = v["out"].as<std::string>();
  const std::vector<std::string> inputs = scenario_input_files(scenario);
  std::vector<std::string> ours = run_output_names();  // what `out` may hold: it is replaced whole
  for (const char* option : {"save-kept", "timeline"}) {
    if (!v.count(option)) continue;
    const std::filesystem::path file(v[option].as<std::string>());
    const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    if (!std::filesystem::is_directory(folder, ec) && !directly_in(file.string(), out)) {
      fail_input(file.string(), std::string("--") + option + ": folder " + folder.string() + " does not exist");
    }
    refuse_output_over_inputs(file.string(), inputs, std::string("--") + option);
    if (directly_in(file.string(), out)) ours.push_back(file.filename().string());
  }
  refuse_folder_over_inputs(out, inputs, "--out");
  check_replaceable_folder(out, ours);
  if (v.count("timeline") && scenario.hardware_preset.empty()) {
    fail_input(scenario.path, "--timeline needs a [hardware] section in the scenario (time comes from it)");
  }
  const auto progress = elapsed_log(quiet);
  const auto place = [&](const char* option, const std::string& folder) {
    const std::string file = v[option].as<std::string>();
    return directly_in(file, out) ? folder + "/" + std::filesystem::path(file).filename().string() : file;
  };
  if (scenario.serving_mode()) {
    if (v.count("save-kept")) {
      fail_input(scenario.path, "--save-kept is for single-request scenarios (this one has [workload] arrivals)");
    }
    const ServingStudy study(scenario, progress, warning_log());
    progress("simulating " + std::to_string(study.workload().requests.size()) + " requests x " +
             std::to_string(study.num_policies()) + " policies");
    const bool timeline = v.count("timeline") > 0;
    const ServingRun run = run_serving(study, timeline ? kTimelineIterations : 0);
    write_serving_outputs(out, study, run, ours, [&](const std::string& staged) {
      if (timeline) write_serving_chrome_trace(place("timeline", staged), run, warning_log());
    });
    std::cout << scenario.model.name << " on " << run.hardware.device.name << ", " << study.workload().requests.size()
              << " requests from " << study.workload().source << "\n";
    print_serving_table(std::cout, study, run);
    progress("wrote " + out + "/summary.json");
    return 0;
  }
  if (scenario.seeds.size() > 1 && (v.count("save-kept") || v.count("timeline"))) {
    fail_input(scenario.path, "--save-kept and --timeline show one draw, but [workload] seeds gives " +
                                  std::to_string(scenario.seeds.size()) +
                                  " (run one of them alone, with seed = S and no seeds)");
  }
  const ScenarioDraws draws = run_scenario_draws(scenario, v.count("save-kept") > 0, progress);
  const ScenarioRun& run = draws.first();
  // The result set replaces `out` as a whole (util/atomic_folder.h); --save-kept and --timeline
  // files named inside `out` join the set, others are written on their own, each atomically.
  StagedFolder folder(out, ours);
  write_run_files(folder.path(), scenario, draws);
  if (v.count("save-kept")) write_kept_masks(place("save-kept", folder.path()), run);
  if (v.count("timeline")) write_chrome_trace(place("timeline", folder.path()), run);
  folder.commit();

  std::cout << run.model.name << ", prompt " << run.request.prompt_tokens << " + generated "
            << run.request.generated_tokens << " tokens, chunk " << run.plan.chunk_tokens << ", "
            << run.traced_layers.size() << "/" << run.model.num_layers << " layers traced (" << run.trace_source
            << ")\n";
  print_run_table(std::cout, draws);
  progress("wrote " + out + "/summary.json");
  return 0;
}

}  // namespace kvsim::cli

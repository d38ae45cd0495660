// kvsim plan: the highest load each policy and hardware serves within a latency SLO.
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "sim/scenario.h"
#include "sim/serving/capacity_plan.h"
#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "tools/kvsim/progress.h"
#include "util/atomic_file.h"
#include "util/atomic_folder.h"
#include "util/error.h"
#include "util/json.h"
#include "util/output_guard.h"
#include "util/threads.h"

namespace kvsim::cli {

namespace po = boost::program_options;

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) items.push_back(item);
    start = comma + 1;
  }
  return items;
}

void write_plan(const std::string& dir, const Scenario& s, const PlanOptions& options,
                const std::vector<PlanRow>& rows) {
  // plan.json replaces DIR as a whole (util/atomic_folder.h), like kvsim run's folder.
  StagedFolder folder(dir, {"plan.json"});
  const char* unit = options.axis == PlanAxis::kRate ? "max_rate_per_s" : "max_concurrency";
  write_file_atomically(folder.path() + "/plan.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.field("scenario", s.path);
    json.field("by", options.axis == PlanAxis::kRate ? "rate" : "concurrency");
    json.field("slo", options.slo.spec());
    json.key("rows");
    json.begin_array();
    for (const PlanRow& r : rows) {
      json.begin_object();
      json.field("spec", r.spec);
      json.field("hardware", r.hardware);
      json.field("feasible", r.feasible);
      json.field(unit, r.max_value);
      json.field("ttft_p99_s", r.at_max.ttft_s.p99);
      if (r.at_max.has_tpot) json.field("tpot_p99_s", r.at_max.tpot_s.p99);
      json.field("throughput_output_tokens_per_s", r.at_max.output_tokens_per_s);
      json.field("peak_kv_bytes", r.peak_kv_bytes);
      json.field("mean_kv_bytes", r.mean_kv_bytes);
      json.field("kv_capacity_bytes", r.kv_capacity_bytes);
      json.field("weight_bytes", r.weight_bytes);
      json.field("limit", r.limit);
      json.field("simulations", r.simulations);
      json.end_object();
    }
    json.end_array();
    json.end_object();
  });
  folder.commit();
}

}  // namespace

int cmd_plan(const Args& args) {
  po::options_description options("kvsim plan SCENARIO.ini --slo ttft_p99=2s,tpot_p99=100ms [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("scenario", po::value<std::string>(), "serving scenario INI file (with [workload] arrivals)")
      ("slo", po::value<std::string>(), "latency bounds on the p99s, e.g. ttft_p99=2s,tpot_p99=100ms")
      ("hardware", po::value<std::string>(), "comma-separated hardware presets (default: the scenario's)")
      ("by", po::value<std::string>()->default_value("rate"), "rate (open loop, the trace's arrivals rescaled) or concurrency (closed loop)")
      ("max-requests", po::value<std::int64_t>(), "plan on the first N requests of the workload (faster)")
      ("precision", po::value<double>()->default_value(0.02), "rate: relative width of the final bracket")
      ("out,o", po::value<std::string>(), "also write DIR/plan.json")
      ("no-cache", "serving: measure every retention profile, reading and writing no cache (as [sim] cache_dir = none)")
      ("quiet,q", "no progress output on stderr");
  // clang-format on
  po::positional_options_description positional;
  positional.add("scenario", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim plan");
  if (v.count("help")) {
    std::cout << options << "\n"
              << "For each policy of the scenario (full included) on each hardware preset, finds by bisection\n"
                 "the highest load whose p99 TTFT and p99 TPOT meet the SLO, with no request rejected:\n"
                 "  --by rate         the workload's arrival times are rescaled to each trial rate;\n"
                 "  --by concurrency  a closed loop of N clients, each sending its next request when the\n"
                 "                    last one finishes (arrival times ignored).\n"
                 "Each trial is one serving simulation (kvsim run on a scenario with [workload] arrivals);\n"
                 "retention profiles are measured once, shared by all trials and cached on disk for later\n"
                 "runs ([sim] cache_dir in kvsim run --help; --no-cache measures afresh). The table gives, at the\n"
                 "highest load found: p99 latencies, throughput, peak and mean KV in the compute tier, the\n"
                 "KV capacity left by the weights, and the limit that broke the SLO just above it:\n"
                 "  hbm_capacity    requests waited for KV blocks (or were preempted / rejected)\n"
                 "  hbm_bandwidth   iterations were bound by memory traffic (weights + KV reads)\n"
                 "  compute         iterations were bound by FLOPs\n"
                 "  link_bandwidth  swapping preempted requests to a lower tier took most time\n\n"
                 "Example:\n"
                 "  kvsim plan configs/scenarios/serve-azure.ini --slo ttft_p99=2s,tpot_p99=100ms \\\n"
                 "      --hardware h100-sxm,a100-80g\n";
    return 0;
  }
  if (!v.count("scenario")) fail_input("kvsim plan", "missing SCENARIO.ini (see kvsim plan --help)");
  if (!v.count("slo")) fail_input("kvsim plan", "missing --slo, e.g. --slo ttft_p99=2s,tpot_p99=100ms");
  const bool quiet = v.count("quiet") > 0;
  PlanOptions plan;
  plan.slo = parse_slo(v["slo"].as<std::string>(), "kvsim plan --slo");
  const std::string by = v["by"].as<std::string>();
  if (by == "rate") plan.axis = PlanAxis::kRate;
  else if (by == "concurrency") plan.axis = PlanAxis::kConcurrency;
  else fail_input("kvsim plan --by", "expected rate or concurrency, got '" + by + "'");
  plan.precision = v["precision"].as<double>();
  if (!(plan.precision > 0 && plan.precision < 1)) fail_input("kvsim plan --precision", "must be in (0, 1)");

  Scenario scenario = load_scenario(v["scenario"].as<std::string>());
  cap_worker_threads(scenario.threads);
  if (!scenario.serving_mode()) {
    fail_input(scenario.path,
               "kvsim plan needs a serving scenario: add [workload] arrivals = FILE.csv|FILE.jsonl|poisson(...)");
  }
  if (v.count("no-cache")) scenario.cache_dir = "none";
  if (v.count("max-requests")) {
    scenario.max_requests = v["max-requests"].as<std::int64_t>();
    if (scenario.max_requests < 1) fail_input("kvsim plan --max-requests", "must be >= 1");
  }
  if (plan.axis == PlanAxis::kConcurrency) scenario.concurrency = std::max(scenario.concurrency, 1);
  std::vector<std::string> presets = v.count("hardware") ? split_list(v["hardware"].as<std::string>())
                                                         : std::vector<std::string>{scenario.hardware_preset};
  if (presets.empty())
    fail_input("kvsim plan --hardware", "expected a comma-separated list of presets (kvsim hw list)");
  if (v.count("out")) {
    const std::filesystem::path out(v["out"].as<std::string>());
    const auto parent = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    if (!std::filesystem::is_directory(parent, ec))
      fail_input(out.string(), "--out: folder " + parent.string() + " does not exist");
    std::vector<std::string> inputs = scenario_input_files(scenario);
    for (const std::string& preset : presets) inputs.push_back(preset);  // a path when it ends in .ini
    refuse_folder_over_inputs(out.string(), inputs, "--out");
    check_replaceable_folder(out.string(), {"plan.json"});
  }

  const auto start = std::chrono::steady_clock::now();
  const auto progress = elapsed_log(quiet);
  const ServingStudy study(scenario, progress, warning_log());
  progress("planning " + std::to_string(study.num_policies()) + " policies x " + std::to_string(presets.size()) +
           " hardware on " + std::to_string(study.workload().requests.size()) + " requests");
  const std::vector<PlanRow> rows = plan_capacity(study, presets, plan, progress);
  if (v.count("out")) write_plan(v["out"].as<std::string>(), scenario, plan, rows);

  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << scenario.model.name << ", " << study.workload().requests.size() << " requests from "
            << study.workload().source << ", SLO " << plan.slo.spec() << " (p99)\n";
  int width = 6;
  for (const PlanRow& r : rows) width = std::max(width, static_cast<int>(r.spec.size()));
  char line[1024];
  std::snprintf(line, sizeof line, "%-*s %-10s %10s %9s %9s %9s %9s %9s %9s  %s\n", width, "policy", "hardware",
                plan.axis == PlanAxis::kRate ? "max_req/s" : "max_conc", "TTFT_p99", "TPOT_p99", "out_tok/s",
                "KVpeakGiB", "KVmeanGiB", "KVcapGiB", "limit");
  std::cout << line;
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  for (const PlanRow& r : rows) {
    std::snprintf(line, sizeof line, "%-*s %-10s %10.3f %8.3fs %7.1fms %9.0f %9.2f %9.2f %9.2f  %s\n", width,
                  r.spec.c_str(), r.hardware.c_str(), r.max_value, r.at_max.ttft_s.p99, r.at_max.tpot_s.p99 * 1e3,
                  r.at_max.output_tokens_per_s, r.peak_kv_bytes / kGiB, r.mean_kv_bytes / kGiB,
                  r.kv_capacity_bytes / kGiB, r.limit.c_str());
    std::cout << line;
  }
  std::cout << "planned in " << std::fixed << std::setprecision(1) << elapsed << " s\n";
  return 0;
}

}  // namespace kvsim::cli

// kvsim plan: the highest load each policy and hardware serves within a latency SLO.
#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
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

// A comma-separated list of `option`; an empty item (a doubled or trailing comma) or a repeated one
// is refused, naming the option.
std::vector<std::string> split_list(const std::string& text, const std::string& option) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty())
      fail_input("kvsim plan " + option,
                 "empty item in the list '" + text + "' (items are separated by single commas)");
    if (std::find(items.begin(), items.end(), item) != items.end())
      fail_input("kvsim plan " + option, "'" + item + "' is listed twice");
    items.push_back(item);
    start = comma + 1;
  }
  return items;
}

// A list of whole numbers >= 1, e.g. --tp 1,2,4,8.
std::vector<std::int64_t> count_list(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> values;
  for (const std::string& item : split_list(text, option)) {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (ec != std::errc() || end != item.data() + item.size() || value < 1 || value > (std::int64_t{1} << 40)) {
      fail_input("kvsim plan " + option, "expected whole numbers >= 1 separated by commas, got '" + item + "'");
    }
    values.push_back(value);
  }
  return values;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string chunk_text(std::int64_t chunk_tokens) {
  return chunk_tokens > 0 ? std::to_string(chunk_tokens) : std::string("none");
}

std::string deployment_text(const PlanRow& r) {
  return r.hardware + " tp " + std::to_string(r.tensor_parallel) + " batch " + std::to_string(r.max_batch_tokens) +
         " chunk " + chunk_text(r.chunk_tokens);
}

void memory_json(JsonWriter& json, const GpuMemory& m, std::int64_t block_tokens) {
  json.key("memory");
  json.begin_object();
  json.field("usable_bytes_per_gpu", m.usable_bytes);
  json.field("reserve_bytes_per_gpu", m.reserve_bytes);
  json.field("weight_bytes_per_gpu", m.weight_bytes);
  json.field("kv_bytes_per_gpu", m.kv_bytes);
  json.field("kv_bytes_total", m.kv_total_bytes());
  json.field("kv_blocks", std::max<std::int64_t>(m.kv_blocks, 0));
  json.field("kv_tokens", m.kv_tokens);
  json.field("block_tokens", block_tokens);
  json.end_object();
}

struct PlanOutput {
  std::vector<PlanRow> rows;
  std::vector<SkippedDeployment> skipped;
  std::vector<std::size_t> best;
  std::string slo_source;
};

void write_plan(const std::string& dir, const Scenario& s, const PlanOptions& options, const PlanOutput& plan) {
  // plan.json replaces DIR as a whole (util/atomic_folder.h), like kvsim run's folder.
  StagedFolder folder(dir, {"plan.json"});
  const bool by_rate = options.axis == PlanAxis::kRate;
  const char* unit = by_rate ? "max_rate_per_s" : "max_concurrency";
  write_file_atomically(folder.path() + "/plan.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.field("scenario", s.path);
    json.field("by", by_rate ? "rate" : "concurrency");
    json.field("slo", options.slo.spec());
    json.field("slo_from", plan.slo_source);
    json.key("rows");
    json.begin_array();
    for (const PlanRow& r : plan.rows) {
      json.begin_object();
      json.field("spec", r.spec);
      json.field("hardware", r.hardware);
      json.field("tp", r.tensor_parallel);
      json.field("max_batch_tokens", r.max_batch_tokens);
      json.field("chunk_tokens", r.chunk_tokens);
      json.field("feasible", r.feasible);
      json.field(unit, r.max_value);
      json.field(by_rate ? "max_rate_per_s_per_gpu" : "max_concurrency_per_gpu", r.max_value_per_gpu);
      json.field("ttft_p99_s", r.at_max.ttft_s.p99);
      if (r.at_max.has_tpot) json.field("tpot_p99_s", r.at_max.tpot_s.p99);
      json.field("throughput_output_tokens_per_s", r.at_max.output_tokens_per_s);
      json.field("output_tokens_per_s", r.output_tokens_per_s);
      if (r.usd_per_gpu_hour > 0) json.field("usd_per_gpu_hour", r.usd_per_gpu_hour);
      if (r.usd_per_million_output_tokens > 0)
        json.field("usd_per_million_output_tokens", r.usd_per_million_output_tokens);
      json.field("peak_kv_bytes", r.peak_kv_bytes);
      json.field("mean_kv_bytes", r.mean_kv_bytes);
      json.field("kv_capacity_bytes", r.kv_capacity_bytes);
      json.field("weight_bytes", r.weight_bytes);
      memory_json(json, r.memory, s.serving.block_tokens);
      json.field("limit", r.limit);
      if (r.floor) {
        json.key("zero_load_floor");
        json.begin_object();
        json.field("ttft_p99_s", r.floor->ttft_p99_s);
        if (r.floor->has_tpot) json.field("tpot_p99_s", r.floor->tpot_p99_s);
        json.field("resource", r.floor->resource);
        json.field("reason", r.floor->reason);
        json.end_object();
      }
      json.field("simulations", r.simulations);
      json.key("trials");  // every load the search tried, in order (tools/plot.py draws them)
      json.begin_array();
      for (const PlanTrial& t : r.trials) {
        json.begin_object();
        json.field(by_rate ? "rate_per_s" : "concurrency", t.load);
        json.field("ttft_p99_s", t.ttft_p99_s);
        if (t.has_tpot) json.field("tpot_p99_s", t.tpot_p99_s);
        json.field("meets_slo", t.meets_slo);
        json.end_object();
      }
      json.end_array();
      json.end_object();
    }
    json.end_array();
    json.key("best");
    json.begin_array();
    for (const std::size_t i : plan.best) {
      json.begin_object();
      json.field("spec", plan.rows[i].spec);
      json.field("row", static_cast<std::int64_t>(i));
      json.end_object();
    }
    json.end_array();
    json.key("skipped");
    json.begin_array();
    for (const SkippedDeployment& k : plan.skipped) {
      json.begin_object();
      json.field("hardware", k.hardware);
      json.field("tp", k.tensor_parallel);
      memory_json(json, k.memory, s.serving.block_tokens);
      json.field("reason", k.reason);
      json.end_object();
    }
    json.end_array();
    json.end_object();
  });
  folder.commit();
}

void print_plan(const Scenario& s, const PlanOptions& options, const PlanOutput& plan) {
  const std::vector<PlanRow>& rows = plan.rows;
  const bool by_rate = options.axis == PlanAxis::kRate;
  const bool priced =
      std::any_of(rows.begin(), rows.end(), [](const PlanRow& r) { return r.usd_per_million_output_tokens > 0; });
  int width = 6, hw_width = 8;
  for (const PlanRow& r : rows) {
    width = std::max(width, static_cast<int>(r.spec.size()));
    hw_width = std::max(hw_width, static_cast<int>(r.hardware.size()));
  }
  char line[1024];
  std::snprintf(line, sizeof line, "%-*s %-*s %3s %9s %6s %10s %10s %9s %9s %9s %9s %9s%s  %s\n", width, "policy",
                hw_width, "hardware", "tp", "batch_tok", "chunk", by_rate ? "max_req/s" : "max_conc",
                by_rate ? "req/s/GPU" : "conc/GPU", "TTFT_p99", "TPOT_p99", "out_tok/s", "KVpeakGiB", "KVcapGiB",
                priced ? "  $/Mtok_out" : "", "limit");
  std::cout << line;
  for (const PlanRow& r : rows) {
    std::string cost;
    if (priced) {
      char text[32];
      if (r.usd_per_million_output_tokens > 0)
        std::snprintf(text, sizeof text, " %11.3f", r.usd_per_million_output_tokens);
      else std::snprintf(text, sizeof text, " %11s", "-");
      cost = text;
    }
    std::snprintf(line, sizeof line, "%-*s %-*s %3d %9lld %6s %10.3f %10.3f %8.3fs %7.1fms %9.0f %9.2f %9.2f%s  %s\n",
                  width, r.spec.c_str(), hw_width, r.hardware.c_str(), r.tensor_parallel,
                  static_cast<long long>(r.max_batch_tokens), chunk_text(r.chunk_tokens).c_str(), r.max_value,
                  r.max_value_per_gpu, r.at_max.ttft_s.p99, r.at_max.tpot_s.p99 * 1e3, r.output_tokens_per_s,
                  r.peak_kv_bytes / kGiB, r.kv_capacity_bytes / kGiB, cost.c_str(), r.limit.c_str());
    std::cout << line;
  }
  if (!rows.empty()) {
    std::cout << "\nBest deployment per policy ("
              << (priced ? "lowest cost per million output tokens" : "most load per GPU") << "):\n";
    if (plan.best.empty()) std::cout << "  none: no deployment meets the SLO at any load\n";
    for (const std::size_t i : plan.best) {
      const PlanRow& r = rows[i];
      std::snprintf(line, sizeof line, "  %-*s %s: %.3f %s, %.3f per GPU, %.0f output tokens/s", width, r.spec.c_str(),
                    deployment_text(r).c_str(), r.max_value, by_rate ? "req/s" : "clients", r.max_value_per_gpu,
                    r.output_tokens_per_s);
      std::cout << line;
      if (r.usd_per_million_output_tokens > 0) {
        std::snprintf(line, sizeof line, ", $%.3f per million output tokens at $%.2f per GPU-hour",
                      r.usd_per_million_output_tokens, r.usd_per_gpu_hour);
        std::cout << line;
      }
      std::cout << "\n";
    }
  }
  // One memory row per hardware and TP degree (the token budget and chunking do not change it).
  std::cout << "\nMemory per GPU in GiB (2^30 bytes), " << s.model.name << " in BF16; KV blocks of "
            << s.serving.block_tokens << " tokens are the TP group's (each GPU holds its heads' share):\n";
  std::snprintf(line, sizeof line, "%-*s %3s %9s %9s %9s %9s %10s %10s %11s\n", hw_width, "hardware", "tp", "usable",
                "weights", "reserve", "KV/GPU", "KV_total", "KV_blocks", "KV_tokens");
  std::cout << line;
  std::vector<std::pair<std::string, int>> shown;
  auto memory_row = [&](const std::string& hardware, int tp, const GpuMemory& m, const std::string& note) {
    if (std::find(shown.begin(), shown.end(), std::pair(hardware, tp)) != shown.end()) return;
    shown.emplace_back(hardware, tp);
    std::snprintf(line, sizeof line, "%-*s %3d %9.2f %9.2f %9.2f %9.2f %10.2f %10lld %11lld%s\n", hw_width,
                  hardware.c_str(), tp, m.usable_bytes / kGiB, m.weight_bytes / kGiB, m.reserve_bytes / kGiB,
                  m.kv_bytes / kGiB, m.kv_total_bytes() / kGiB,
                  static_cast<long long>(std::max<std::int64_t>(m.kv_blocks, 0)), static_cast<long long>(m.kv_tokens),
                  note.c_str());
    std::cout << line;
  };
  for (const PlanRow& r : rows) memory_row(r.hardware, r.tensor_parallel, r.memory, "");
  for (const SkippedDeployment& k : plan.skipped) memory_row(k.hardware, k.tensor_parallel, k.memory, "  skipped");
  for (const SkippedDeployment& k : plan.skipped) {
    std::cout << "skipped " << k.hardware << " tp " << k.tensor_parallel << ": " << k.reason << "\n";
  }
  bool header = false;
  for (const PlanRow& r : rows) {
    if (!r.floor) continue;
    if (!header) {
      std::cout << "\nNo load meets the SLO on these; the zero-load floor (each request alone on the idle "
                   "deployment, p99) says why:\n";
      header = true;
    }
    char floor[128];
    std::snprintf(floor, sizeof floor, "floor TTFT p99 %.3f s, TPOT p99 %.1f ms", r.floor->ttft_p99_s,
                  r.floor->tpot_p99_s * 1e3);
    std::cout << "  " << r.spec << " on " << deployment_text(r) << ": " << r.floor->resource << " (" << floor
              << "): " << r.floor->reason << "\n";
  }
}

}  // namespace

int cmd_plan(const Args& args) {
  po::options_description options("kvsim plan SCENARIO.ini [--slo ttft_p99=2s,tpot_p99=100ms] [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("scenario", po::value<std::string>(), "serving scenario INI file (with [workload] arrivals)")
      ("slo", po::value<std::string>(), "latency bounds on the p99s, e.g. ttft_p99=2s,tpot_p99=100ms (default: the scenario's [serving] slo)")
      ("hardware", po::value<std::string>(), "comma-separated hardware presets or .ini paths (default: the scenario's [hardware] preset)")
      ("tp", po::value<std::string>(), "comma-separated tensor-parallel degrees, e.g. 1,2,4,8; each must divide the model's query heads (default: the scenario's [hardware] tp)")
      ("max-batch-tokens", po::value<std::string>(), "comma-separated iteration token budgets, e.g. 512,2048,8192 (default: the scenario's [serving] max_batch_tokens)")
      ("chunk-tokens", po::value<std::string>(), "comma-separated prefill chunk sizes of the policies, e.g. 512,2048; each measures its own retention profiles (default: the scenario's [workload] chunk_tokens)")
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
              << "For each policy of the scenario (full included) on each deployment (every combination of\n"
                 "--hardware, --tp, --max-batch-tokens and --chunk-tokens), finds by bisection the highest load\n"
                 "whose p99 TTFT and p99 TPOT meet the SLO, with no request rejected:\n"
                 "  --by rate         the workload's arrival times are rescaled to each trial rate;\n"
                 "  --by concurrency  a closed loop of N clients, each sending its next request when the\n"
                 "                    last one finishes (arrival times ignored).\n"
                 "Each trial is one serving simulation (kvsim run on a scenario with [workload] arrivals);\n"
                 "retention profiles are measured once per chunk size, shared by all trials and cached on disk\n"
                 "for later runs ([sim] cache_dir in kvsim run --help; --no-cache measures afresh). The table\n"
                 "gives, at the highest load found: the load per GPU (the load / tp), p99 latencies, output\n"
                 "tokens/s (by rate: the rate x the mean output tokens per request), peak KV and the KV capacity\n"
                 "of the TP group, the cost per million output tokens when the hardware file has\n"
                 "[cost] usd_per_gpu_hour (usd_per_gpu_hour x tp / output tokens per hour), and the limit that\n"
                 "broke the SLO just above it:\n"
                 "  hbm_capacity    requests waited for KV blocks (or were preempted / rejected)\n"
                 "  hbm_bandwidth   iterations were bound by memory traffic (weights + KV reads)\n"
                 "  compute         iterations were bound by FLOPs\n"
                 "  link_bandwidth  swapping preempted requests to a lower tier took most time\n"
                 "Then the best deployment per policy, and each GPU's memory in GiB: its usable capacity (the\n"
                 "hardware file's), the weights' share, the reserve for activations and workspace ([hardware]\n"
                 "placement hbm_reserve, 10% by default) and the KV in the rest, in blocks and tokens. A\n"
                 "deployment whose weights leave no KV block is skipped with the reason. Where no load meets\n"
                 "the SLO, the zero-load floor (each request alone on the idle deployment, p99) names the\n"
                 "resource that makes it: prefill compute for a long prompt, decode bandwidth, the model's\n"
                 "context length, or KV capacity.\n\n"
                 "Examples:\n"
                 "  kvsim plan configs/scenarios/serve-azure.ini --slo ttft_p99=2s,tpot_p99=100ms \\\n"
                 "      --hardware h100-sxm,a100-80g\n"
                 "  kvsim plan configs/scenarios/serve-mooncake.ini --tp 2,4 --max-batch-tokens 512,2048\n"
                 "  kvsim plan configs/scenarios/serve-mooncake.ini --tp 1,2 --chunk-tokens 1024,4096 --out plan\n";
    return 0;
  }
  if (!v.count("scenario")) fail_input("kvsim plan", "missing SCENARIO.ini (see kvsim plan --help)");
  const bool quiet = v.count("quiet") > 0;
  PlanOptions plan;
  if (v.count("slo")) plan.slo = parse_slo(v["slo"].as<std::string>(), "kvsim plan --slo");
  const std::string by = v["by"].as<std::string>();
  if (by == "rate") plan.axis = PlanAxis::kRate;
  else if (by == "concurrency") plan.axis = PlanAxis::kConcurrency;
  else fail_input("kvsim plan --by", "expected rate or concurrency, got '" + by + "'");
  plan.precision = v["precision"].as<double>();
  if (!(plan.precision > 0 && plan.precision < 1)) fail_input("kvsim plan --precision", "must be in (0, 1)");
  // The lists are checked before the scenario loads: a typo costs no profile measurement.
  std::vector<std::int64_t> tp_list, batch_list, chunk_list;
  if (v.count("tp")) tp_list = count_list(v["tp"].as<std::string>(), "--tp");
  if (v.count("max-batch-tokens"))
    batch_list = count_list(v["max-batch-tokens"].as<std::string>(), "--max-batch-tokens");
  if (v.count("chunk-tokens")) chunk_list = count_list(v["chunk-tokens"].as<std::string>(), "--chunk-tokens");
  for (const std::int64_t tp : tp_list) {
    if (tp > 1024) fail_input("kvsim plan --tp", "must be at most 1024, got " + std::to_string(tp));
  }
  std::vector<std::string> presets;
  if (v.count("hardware")) presets = split_list(v["hardware"].as<std::string>(), "--hardware");

  Scenario scenario = load_scenario(v["scenario"].as<std::string>());
  cap_worker_threads(scenario.threads);
  if (!scenario.serving_mode()) {
    fail_input(scenario.path,
               "kvsim plan needs a serving scenario: add [workload] arrivals = FILE.csv|FILE.jsonl|poisson(...)");
  }
  PlanOutput output;
  output.slo_source = "--slo";
  if (!v.count("slo")) {
    if (!scenario.serving.slo.any()) {
      fail_input("kvsim plan --slo",
                 "missing, and " + scenario.path + " has no [serving] slo (e.g. --slo ttft_p99=2s,tpot_p99=100ms)");
    }
    plan.slo = scenario.serving.slo;
    output.slo_source = "[serving] slo";
  }
  if (v.count("no-cache")) scenario.cache_dir = "none";
  if (v.count("max-requests")) {
    scenario.max_requests = v["max-requests"].as<std::int64_t>();
    if (scenario.max_requests < 1) fail_input("kvsim plan --max-requests", "must be >= 1");
  }
  if (plan.axis == PlanAxis::kConcurrency) scenario.concurrency = std::max(scenario.concurrency, 1);
  if (presets.empty()) presets = {scenario.hardware_preset};
  std::vector<int> tps;
  for (const std::int64_t tp : tp_list) tps.push_back(static_cast<int>(tp));
  if (tps.empty()) tps = {scenario.tensor_parallel};
  if (batch_list.empty()) batch_list = {scenario.serving.max_batch_tokens};
  if (chunk_list.empty()) chunk_list = {scenario.chunk_tokens};
  // Every preset loads and every TP degree fits the model, before any profile is measured.
  const std::vector<Deployment> deployments = deployment_grid(
      scenario, presets, tps, batch_list, tp_list.empty() ? scenario.path + ": [hardware] tp =" : "kvsim plan --tp");
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
  std::size_t requests = 0;
  std::string source;
  for (const std::int64_t chunk : chunk_list) {
    // The retention profiles depend on the chunk size: one study (and profile set) per value.
    Scenario chunked = scenario;
    chunked.chunk_tokens = chunk;
    const ServingStudy study(chunked, progress, warning_log());
    requests = study.workload().requests.size();
    source = study.workload().source;
    progress("planning " + std::to_string(study.num_policies()) + " policies x " + std::to_string(deployments.size()) +
             " deployments on " + std::to_string(requests) + " requests, chunk " + chunk_text(chunk));
    std::vector<PlanRow> rows = plan_capacity(study, deployments, plan, progress, &output.skipped);
    for (PlanRow& r : rows) output.rows.push_back(std::move(r));
  }
  output.best = best_deployments(output.rows);
  if (v.count("out")) write_plan(v["out"].as<std::string>(), scenario, plan, output);

  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << scenario.model.name << ", " << requests << " requests from " << source << ", SLO " << plan.slo.spec()
            << " (p99, from " << output.slo_source << ")\n";
  print_plan(scenario, plan, output);
  std::cout << "planned in " << std::fixed << std::setprecision(1) << elapsed << " s\n";
  return 0;
}

}  // namespace kvsim::cli

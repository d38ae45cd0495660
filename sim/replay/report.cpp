#include "sim/replay/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <utility>

#include "sim/replay/metrics_row.h"
#include "sim/scenario_json.h"
#include "util/atomic_file.h"
#include "util/atomic_folder.h"
#include "util/error.h"
#include "util/json.h"

namespace kvsim {

namespace {

// Resident KV bytes during pass i, precision-aware (PolicyResult::pass_bytes, which the engine
// fills for every policy).
std::int64_t resident_bytes(const PolicyResult& r, std::size_t i) { return std::llround(r.pass_bytes.at(i)); }

void write_scenario(JsonWriter& json, const Scenario& s, const ScenarioRun& run) {
  json.begin_object();
  json.field("path", s.path);
  write_model_json(json, run.model);
  json.key("workload");
  json.begin_object();
  json.field("trace", s.trace);
  json.field("trace_source", run.trace_source);
  json.field("request", run.request.id);
  json.field("prompt_tokens", run.request.prompt_tokens);
  json.field("generated_tokens", run.request.generated_tokens);
  json.field("chunk_tokens", run.plan.chunk_tokens);
  if (s.synthetic()) json.field("seed", static_cast<std::uint64_t>(s.seed));
  // Only with a head map, so summaries of depth-mix traces keep their bytes.
  if (s.synthetic() && s.head_map) json.field("head_map", s.head_map->label);
  json.key("traced_layers");
  json.begin_array();
  for (int layer : run.traced_layers) json.value(layer);
  json.end_array();
  json.end_object();
  if (run.hardware) write_hardware_json(json, s, run.hardware->device.name);
  json.key("sim");
  json.begin_object();
  json.field("fidelity_queries", s.fidelity_queries);
  json.end_object();
  json.end_object();
}

// One policy's object: its spec, then policy_metrics() nested by path (absent metrics skipped,
// DESIGN.md §7: never a placeholder). The sweep tables flatten the same list.
void write_policy(JsonWriter& json, const ScenarioRun& run, std::size_t policy) {
  json.begin_object();
  json.field("spec", run.results[policy].spec);
  std::vector<std::string> open;  // the nested objects currently open, outermost first
  for (const Metric& m : policy_metrics(run, policy)) {
    if (!m.present) continue;
    const std::size_t depth = m.path.size() - 1;
    std::size_t common = 0;
    while (common < open.size() && common < depth && open[common] == m.path[common]) ++common;
    for (; open.size() > common; open.pop_back()) json.end_object();
    for (; open.size() < depth; open.push_back(m.path[open.size()])) {
      json.key(m.path[open.size()]);
      json.begin_object();
    }
    json.key(m.path.back());
    switch (m.kind) {
      case MetricKind::integer: json.value(m.integer); break;
      case MetricKind::real: json.value(m.real); break;
      case MetricKind::boolean: json.value(m.integer != 0); break;
    }
  }
  for (; !open.empty(); open.pop_back()) json.end_object();
  json.end_object();
}

}  // namespace

const std::vector<std::string>& run_output_names() {
  static const std::vector<std::string> names = {"summary.json", "timeline.csv", "requests.csv", "plots"};
  return names;
}

void write_run_outputs(const std::string& dir, const Scenario& scenario, const ScenarioRun& run) {
  StagedFolder folder(dir, run_output_names());
  write_run_files(folder.path(), scenario, run);
  folder.commit();
}

void write_run_files(const std::string& dir, const Scenario& scenario, const ScenarioRun& run) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail_input(dir, "cannot create output folder: " + ec.message());

  write_file_atomically(dir + "/summary.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.key("scenario");
    write_scenario(json, scenario, run);
    json.key("policies");
    json.begin_array();
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      write_policy(json, run, p);
    }
    json.end_array();
    json.end_object();
  });

  // Resident KV during each forward pass. time_s joins when the hardware model exists; until then
  // the pass index and positions are the clock.
  write_file_atomically(dir + "/timeline.csv", [&](std::ostream& out) {
    const bool timed = !run.timings.empty();
    out << (timed ? "time_s,duration_s," : "") << "policy,pass,phase,position_begin,position_end,resident_entries,"
        << (timed ? run.hardware->device.compute_tier + "_kv_bytes" : "resident_bytes") << "\n";
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const auto& entries = run.results[p].pass_entries;
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const Pass& pass = run.plan.passes[i];
        if (timed) out << run.timings[p].pass_start_s[i] << "," << run.timings[p].passes[i].time_s << ",";
        out << p << "," << i << "," << (pass.prefill ? "prefill" : "decode") << "," << pass.begin << "," << pass.end
            << "," << entries[i] << "," << resident_bytes(run.results[p], i) << "\n";
      }
    }
  });

  write_file_atomically(dir + "/requests.csv", [&](std::ostream& out) {
    out << "request,policy,spec,prompt_tokens,generated_tokens,footprint_normalized,peak_entries,peak_bytes\n";
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const auto& r = run.results[p];
      out << run.request.id << "," << p << ",\"" << r.spec << "\"," << run.request.prompt_tokens << ","
          << run.request.generated_tokens << "," << r.footprint_normalized << "," << r.peak_entries << ","
          << r.peak_bytes << "\n";
    }
  });
}

void print_run_table(std::ostream& out, const ScenarioRun& run) {
  auto cell = [](const auto& maybe, double value) {
    char buf[32];
    if (!maybe) return std::string("-");
    std::snprintf(buf, sizeof buf, "%.4f", value);
    return std::string(buf);
  };
  int width = 6;
  for (const auto& r : run.results) width = std::max(width, static_cast<int>(r.spec.size()));
  char line[1024];
  const bool timed = !run.timings.empty();
  std::snprintf(line, sizeof line, "%-*s %9s %9s %9s %9s %9s %9s %9s%s\n", width, "policy", "footprint", "peak",
                "peak_GiB", "recall", "recall_p5", "out_err", "needles", timed ? "   TTFT_ms   TPOT_ms" : "");
  out << line;
  for (const auto& r : run.results) {
    const auto& recall = r.attention_recall;
    const auto& error = r.output_error;
    std::snprintf(line, sizeof line, "%-*s %9.4f %9.4f %9.3f %9s %9s %9s %9s\n", width, r.spec.c_str(),
                  r.footprint_normalized, r.peak_normalized,
                  static_cast<double>(r.peak_bytes) / (1024.0 * 1024.0 * 1024.0),
                  cell(recall, recall ? recall->mean : 0.0).c_str(), cell(recall, recall ? recall->tail : 0.0).c_str(),
                  cell(error, error ? error->mean : 0.0).c_str(),
                  cell(r.needle_retention, r.needle_retention.value_or(0.0)).c_str());
    std::string text = line;
    if (timed) {
      const PolicyTiming& t = run.timings[static_cast<std::size_t>(&r - run.results.data())];
      char times[64];
      std::snprintf(times, sizeof times, " %9.2f %9.3f", t.ttft_s.p50 * 1e3, t.decode_s > 0 ? t.tpot_s.p50 * 1e3 : 0.0);
      text.insert(text.size() - 1, times);
    }
    out << text;
  }
}

}  // namespace kvsim

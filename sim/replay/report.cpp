#include "sim/replay/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

void write_scenario(JsonWriter& json, const Scenario& s, const ScenarioDraws& draws) {
  const ScenarioRun& run = draws.first();
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
  if (s.synthetic() && draws.seeds.size() > 1) {
    json.key("seeds");
    json.begin_array();
    for (const std::uint64_t seed : draws.seeds) json.value(seed);
    json.end_array();
    json.field("interval", "student_t_95");  // what the policies' <metric>_ci95 half-widths are
  } else if (s.synthetic()) {
    json.field("seed", static_cast<std::uint64_t>(s.seed));
  }
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
void write_policy(JsonWriter& json, const ScenarioDraws& draws, std::size_t policy) {
  json.begin_object();
  json.field("spec", draws.first().results[policy].spec);
  std::vector<std::string> open;  // the nested objects currently open, outermost first
  for (const Metric& m : policy_metrics(draws, policy)) {
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

void write_run_outputs(const std::string& dir, const Scenario& scenario, const ScenarioDraws& draws) {
  StagedFolder folder(dir, run_output_names());
  write_run_files(folder.path(), scenario, draws);
  folder.commit();
}

void write_run_files(const std::string& dir, const Scenario& scenario, const ScenarioDraws& draws) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail_input(dir, "cannot create output folder: " + ec.message());
  const ScenarioRun& first = draws.first();
  // Several draws: each row says its draw, so that the per-draw data stay next to the summary's means.
  const bool many = draws.runs.size() > 1;
  const auto seed_cell = [&](std::size_t d) { return many ? std::to_string(draws.seeds.at(d)) + "," : std::string(); };

  write_file_atomically(dir + "/summary.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.key("scenario");
    write_scenario(json, scenario, draws);
    json.key("policies");
    json.begin_array();
    for (std::size_t p = 0; p < first.results.size(); ++p) {
      write_policy(json, draws, p);
    }
    json.end_array();
    json.end_object();
  });

  // Resident KV during each forward pass. time_s joins when the hardware model exists; until then
  // the pass index and positions are the clock.
  write_file_atomically(dir + "/timeline.csv", [&](std::ostream& out) {
    const bool timed = !first.timings.empty();
    out << (many ? "seed," : "") << (timed ? "time_s,duration_s," : "")
        << "policy,pass,phase,position_begin,position_end,resident_entries,"
        << (timed ? first.hardware->device.compute_tier + "_kv_bytes" : "resident_bytes") << "\n";
    for (std::size_t d = 0; d < draws.runs.size(); ++d) {
      const ScenarioRun& run = draws.runs[d];
      for (std::size_t p = 0; p < run.results.size(); ++p) {
        const auto& entries = run.results[p].pass_entries;
        for (std::size_t i = 0; i < entries.size(); ++i) {
          const Pass& pass = run.plan.passes[i];
          out << seed_cell(d);
          if (timed) out << run.timings[p].pass_start_s[i] << "," << run.timings[p].passes[i].time_s << ",";
          out << p << "," << i << "," << (pass.prefill ? "prefill" : "decode") << "," << pass.begin << "," << pass.end
              << "," << entries[i] << "," << resident_bytes(run.results[p], i) << "\n";
        }
      }
    }
  });

  write_file_atomically(dir + "/requests.csv", [&](std::ostream& out) {
    out << "request," << (many ? "seed," : "")
        << "policy,spec,prompt_tokens,generated_tokens,footprint_normalized,peak_entries,peak_bytes\n";
    for (std::size_t d = 0; d < draws.runs.size(); ++d) {
      const ScenarioRun& run = draws.runs[d];
      for (std::size_t p = 0; p < run.results.size(); ++p) {
        const auto& r = run.results[p];
        out << run.request.id << "," << seed_cell(d) << p << ",\"" << r.spec << "\"," << run.request.prompt_tokens
            << "," << run.request.generated_tokens << "," << r.footprint_normalized << "," << r.peak_entries << ","
            << r.peak_bytes << "\n";
      }
    }
  });
}

namespace {

void print_single_draw_table(std::ostream& out, const ScenarioRun& run) {
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

// Several draws: "mean+-half-width" from policy_metrics(draws, p), the value alone where the draws
// agree to the digits shown, "-" where the metric is absent.
void print_draws_table(std::ostream& out, const ScenarioDraws& draws) {
  const std::size_t n = draws.seeds.size();
  bool consecutive = true;
  for (std::size_t d = 1; d < n; ++d) consecutive = consecutive && draws.seeds[d] == draws.seeds[d - 1] + 1;
  std::string seeds;
  if (consecutive) {
    seeds = std::to_string(draws.seeds.front()) + ".." + std::to_string(draws.seeds.back());
  } else {
    for (const std::uint64_t seed : draws.seeds) seeds += (seeds.empty() ? "" : ",") + std::to_string(seed);
  }
  out << "mean +- half-width of the 95% Student-t interval over " << n << " draws (seeds " << seeds
      << "); a value without +- does not vary between draws at the digits shown\n";
  struct Column {
    const char* title;
    const char* metric;
    double scale;
    const char* format;
  };
  std::vector<Column> columns = {{"footprint", "footprint_normalized", 1, "%.4f"},
                                 {"peak", "peak_normalized", 1, "%.4f"},
                                 {"peak_GiB", "peak_bytes", 1.0 / (1024.0 * 1024.0 * 1024.0), "%.3f"},
                                 {"recall", "attention_recall_mean", 1, "%.4f"},
                                 {"recall_p5", "attention_recall_p5", 1, "%.4f"},
                                 {"out_err", "output_error_mean", 1, "%.4f"},
                                 {"needles", "needle_retention", 1, "%.4f"}};
  if (!draws.first().timings.empty()) {
    columns.push_back({"TTFT_ms", "ttft_s_p50", 1e3, "%.2f"});
    columns.push_back({"TPOT_ms", "tpot_s_p50", 1e3, "%.3f"});
  }
  std::size_t width = 6;
  for (const auto& r : draws.first().results) width = std::max(width, r.spec.size());
  constexpr int kCell = 15;
  char text[128];
  std::string line = "policy" + std::string(width - 6, ' ');
  for (const Column& c : columns) {
    std::snprintf(text, sizeof text, " %*s", kCell, c.title);
    line += text;
  }
  out << line << "\n";
  for (std::size_t p = 0; p < draws.first().results.size(); ++p) {
    const std::vector<Metric> metrics = policy_metrics(draws, p);
    const auto find = [&](const std::string& column) -> const Metric* {
      for (const Metric& m : metrics) {
        if (m.column() == column && m.present) return &m;
      }
      return nullptr;
    };
    const std::string& spec = draws.first().results[p].spec;
    line = spec + std::string(width - spec.size(), ' ');
    for (const Column& c : columns) {
      const Metric* mean = find(c.metric);
      const Metric* ci = find(std::string(c.metric) + "_ci95");
      std::string cell = "-";
      if (mean != nullptr && ci != nullptr) {
        const double value = mean->kind == MetricKind::real ? mean->real : static_cast<double>(mean->integer);
        std::snprintf(text, sizeof text, c.format, value * c.scale);
        cell = text;
        // A half-width that rounds to 0 at the digits shown (the full cache's recall, 1 - 1e-9) is
        // left out like an exact 0.
        std::snprintf(text, sizeof text, c.format, ci->real * c.scale);
        if (std::strtod(text, nullptr) > 0) cell += std::string("+-") + text;
      }
      std::snprintf(text, sizeof text, " %*s", kCell, cell.c_str());
      line += text;
    }
    out << line << "\n";
  }
}

}  // namespace

void print_run_table(std::ostream& out, const ScenarioDraws& draws) {
  if (draws.runs.size() > 1) print_draws_table(out, draws);
  else print_single_draw_table(out, draws.first());
}

}  // namespace kvsim

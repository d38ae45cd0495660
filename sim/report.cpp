#include "sim/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <utility>

#include "sim/placement.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json.h"

namespace kvsim {

namespace {

void write_scenario(JsonWriter& json, const Scenario& s, const ScenarioRun& run) {
  json.begin_object();
  json.field("path", s.path);
  json.key("model");
  json.begin_object();
  json.field("name", run.model.name);
  json.field("num_layers", run.model.num_layers);
  json.field("num_q_heads", run.model.num_q_heads);
  json.field("num_kv_heads", run.model.num_kv_heads);
  json.field("head_dim", run.model.head_dim);
  json.field("kv_bits", run.model.kv_bits);
  json.field("rope_theta", run.model.rope_theta);
  json.end_object();
  json.key("workload");
  json.begin_object();
  json.field("trace", s.trace);
  json.field("trace_source", run.trace_source);
  json.field("request", run.request.id);
  json.field("prompt_tokens", run.request.prompt_tokens);
  json.field("generated_tokens", run.request.generated_tokens);
  json.field("chunk_tokens", s.chunk_tokens_for(run.request.prompt_tokens));
  if (s.synthetic()) json.field("seed", static_cast<std::uint64_t>(s.seed));
  json.key("traced_layers");
  json.begin_array();
  for (int layer : run.traced_layers) json.value(layer);
  json.end_array();
  json.end_object();
  if (run.hardware) {
    json.key("hardware");
    json.begin_object();
    json.field("preset", s.hardware_preset);
    json.field("device", run.hardware->device.name);
    json.key("attach");
    json.begin_array();
    for (const auto& a : s.hardware_attach) json.value(a);
    json.end_array();
    json.field("tp", s.tensor_parallel);
    json.field("placement", parse_placement(s.placement, s.path).spec());
    json.end_object();
  }
  json.key("sim");
  json.begin_object();
  json.field("fidelity_queries", s.fidelity_queries);
  json.end_object();
  json.end_object();
}

void write_percentiles(JsonWriter& json, const char* key, const Percentiles& p) {
  json.key(key);
  json.begin_object();
  json.field("p50", p.p50);
  json.field("p90", p.p90);
  json.field("p99", p.p99);
  json.end_object();
}

// A per-query metric: absent when not computed (DESIGN.md §7: never a placeholder).
void write_summary(JsonWriter& json, const char* key, const char* tail_key, const std::optional<Summary>& summary) {
  if (!summary) return;
  json.key(key);
  json.begin_object();
  json.field("mean", summary->mean);
  json.field(tail_key, summary->tail);
  json.end_object();
}

void write_timing(JsonWriter& json, const PolicyTiming& t) {
  write_percentiles(json, "ttft_s", t.ttft_s);
  if (!t.passes.empty() && t.decode_s > 0) write_percentiles(json, "tpot_s", t.tpot_s);
  write_percentiles(json, "e2e_s", t.e2e_s);
  json.field("prefill_s", t.prefill_s);
  json.field("decode_s", t.decode_s);
  json.field("compute_bound_passes", t.compute_bound_passes);
  json.field("weight_bytes", t.weight_bytes);
  json.field("peak_hbm_bytes", t.peak_hbm_bytes);
  json.field("fits_hbm", t.fits_hbm);
  json.field("offloaded_entries", t.offloaded_entries);
  json.field("evicted_entries", t.evicted_entries);
  // One object per metric, keyed by tier.
  static const std::pair<const char*, double TierTraffic::*> kTierMetrics[] = {
      {"bytes_read", &TierTraffic::bytes_read},
      {"bytes_written", &TierTraffic::bytes_written},
      {"byte_seconds", &TierTraffic::byte_seconds},
      {"peak_kv_bytes", &TierTraffic::peak_kv_bytes},
      {"mean_read_bandwidth_bytes_per_s", &TierTraffic::mean_read_bytes_per_s},
      {"peak_read_bandwidth_bytes_per_s", &TierTraffic::peak_read_bytes_per_s}};
  for (const auto& [name, member] : kTierMetrics) {
    json.key(name);
    json.begin_object();
    for (const TierTraffic& tier : t.tiers) json.field(tier.tier, tier.*member);
    json.end_object();
  }
  if (!t.links.empty()) {
    json.key("links_per_tp_rank");
    json.begin_object();
    for (const LinkTraffic& link : t.links) {
      json.key(link.link);
      json.begin_object();
      json.field("bytes", link.bytes);
      json.field("mean_bandwidth_bytes_per_s", link.mean_bytes_per_s);
      json.field("peak_bandwidth_bytes_per_s", link.peak_bytes_per_s);
      json.end_object();
    }
    json.end_object();
  }
}

void write_policy(JsonWriter& json, const PolicyResult& r, const PolicyTiming* timing) {
  json.begin_object();
  json.field("spec", r.spec);
  json.field("footprint_entry_steps", r.footprint_entry_steps);
  json.field("footprint_normalized", r.footprint_normalized);
  json.field("peak_entries", r.peak_entries);
  json.field("peak_bytes", r.peak_bytes);
  json.field("peak_normalized", r.peak_normalized);
  write_summary(json, "attention_recall", "p5", r.attention_recall);
  write_summary(json, "output_error", "p95", r.output_error);
  if (r.needle_retention) json.field("needle_retention", *r.needle_retention);
  if (timing != nullptr) write_timing(json, *timing);
  json.end_object();
}

}  // namespace

void write_run_outputs(const std::string& dir, const Scenario& scenario, const ScenarioRun& run) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail_input(dir, "cannot create output folder: " + ec.message());
  const std::int64_t entry_bytes = run.model.entry_bytes();

  write_file_atomically(dir + "/summary.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.key("scenario");
    write_scenario(json, scenario, run);
    json.key("policies");
    json.begin_array();
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      write_policy(json, run.results[p], run.timings.empty() ? nullptr : &run.timings[p]);
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
            << "," << entries[i] << "," << entries[i] * entry_bytes << "\n";
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

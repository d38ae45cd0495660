#include "sim/serving/report.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "sim/replay/report.h"
#include "sim/scenario_json.h"
#include "sim/serving/metrics.h"
#include "util/atomic_file.h"
#include "util/atomic_folder.h"
#include "util/error.h"
#include "util/json.h"

namespace kvsim {

namespace {

// A request's missed bounds and their causes, e.g. "ttft:queueing tpot:compute"; empty if none.
std::string slo_breaches_of(const ServingRequestResult& q, const Slo& slo) {
  if (q.rejected) return "";
  const RequestBreaches late = request_breaches(q, slo);
  std::string text;
  if (late.late_first_token) text = "ttft:" + slo_breach_cause(q, true);
  if (late.slow_decode) text += (text.empty() ? "" : " ") + ("tpot:" + slo_breach_cause(q, false));
  return text;
}

void write_percentiles(JsonWriter& json, const char* key, const Percentiles& p) {
  json.key(key);
  json.begin_object();
  json.field("p50", p.p50);
  json.field("p90", p.p90);
  json.field("p99", p.p99);
  json.end_object();
}

void write_scenario(JsonWriter& json, const ServingStudy& study, const ServingRun& run) {
  const Scenario& s = study.scenario();
  const Workload& w = study.workload();
  json.begin_object();
  json.field("path", s.path);
  write_model_json(json, s.model);
  json.key("workload");
  json.begin_object();
  json.field("arrivals", w.source);
  json.field("requests", static_cast<std::int64_t>(w.requests.size()));
  if (s.concurrency > 0) {
    json.field("concurrency", s.concurrency);
  } else {
    json.field("duration_s", w.duration_s());
    json.field("mean_arrival_rate_per_s", mean_arrival_rate(w));
    const bool file = w.source.rfind("azure:", 0) == 0 || w.source.rfind("mooncake:", 0) == 0;
    if (file)
      json.field("arrival_process", s.arrival_process == Scenario::ArrivalProcess::kPoisson ? "poisson" : "trace");
  }
  if (w.prefix_block_tokens > 0) {
    json.field("prefix_block_tokens", w.prefix_block_tokens);
    json.field("ideal_prefix_reuse", ideal_prefix_reuse(w));
  }
  json.field("chunk_tokens", s.chunk_tokens);
  json.field("traced_layers", s.traced_layers);
  json.field("seed", static_cast<std::uint64_t>(s.seed));
  json.end_object();
  write_hardware_json(json, s, run.hardware.device.name);
  const ServingConfig& c = s.serving;
  json.key("serving");
  json.begin_object();
  json.field("block_tokens", c.block_tokens);
  json.field("max_batch_tokens", c.max_batch_tokens);
  json.field("max_running", c.max_running);
  json.field("preemption", c.preemption_spec());
  if (!c.prefix_cache_lower_tiers.empty())
    json.field("prefix_cache", c.prefix_cache_spec(run.hardware.device.compute_tier));
  json.field("admission", c.admission == ServingConfig::Admission::kReserve ? "reserve" : "on_demand");
  json.field("mode", c.mode == ServingConfig::Mode::kFast ? "fast" : "exact");
  if (c.mode == ServingConfig::Mode::kFast) {
    json.field("profile_buckets", static_cast<std::int64_t>(study.profile_buckets()));
    json.field("profile_buckets_per_octave", c.profile_buckets_per_octave);
    json.field("profile_decode_tokens", c.profile_decode_tokens);
  }
  json.field("slo", c.slo.spec());
  json.end_object();
  json.end_object();
}

// Per link, the busier direction's bytes over what it could carry in the run (each TP rank has its
// own link; a link carries each direction at its effective rate).
void write_link_utilisation(JsonWriter& json, const ServingResult& r, const Hardware& hw, int tensor_parallel) {
  json.key("link_utilisation");
  json.begin_object();
  for (const auto& [link_name, bytes] : r.link_busier_direction_bytes) {
    const std::string& name = link_name;  // a lambda may not capture a structured binding before C++20's clang 16
    const auto link = std::find_if(hw.links.begin(), hw.links.end(), [&](const Link& l) { return l.name == name; });
    const double capacity_bytes =
        link == hw.links.end() ? 0.0 : link->effective_bytes_per_s() * tensor_parallel * r.makespan_s;
    json.field(name, capacity_bytes > 0 ? bytes / capacity_bytes : 0.0);
  }
  json.end_object();
}

void write_policy(JsonWriter& json, const std::string& spec, const ServingResult& r, bool prefix_caching,
                  const Slo& slo, const std::string& top, const std::string& swap_tier, const std::string& offload_tier,
                  const Hardware& hw, int tensor_parallel) {
  const ServingMetrics m = summarize_serving(r, slo);
  json.begin_object();
  json.field("spec", spec);
  json.field("requests", m.requests);
  json.field("served", m.served);
  json.field("rejected", r.rejected);
  json.field("rejected_over_context_length", r.rejected_over_context);
  if (m.served > 0) {  // with none served there are no latencies: absent, not zero
    write_percentiles(json, "ttft_s", m.ttft_s);
    if (m.has_tpot) write_percentiles(json, "tpot_s", m.tpot_s);
    write_percentiles(json, "e2e_s", m.e2e_s);
    write_percentiles(json, "queue_s", m.queue_s);
  }
  json.field("makespan_s", r.makespan_s);
  json.field("throughput_output_tokens_per_s", m.output_tokens_per_s);
  json.field("throughput_tokens_per_s", m.tokens_per_s);
  json.field("throughput_requests_per_s", m.requests_per_s);
  if (slo.any()) {
    json.field("slo_attainment", m.slo_attainment);
    json.field("goodput_requests_per_s", m.goodput_requests_per_s);
    // What broke the SLO, from the requests that broke it (metrics.h: slo_breach_cause).
    json.key("slo_breaches");
    json.begin_object();
    for (const auto& [name, causes] : {std::pair{"ttft", &m.ttft_breach_causes}, {"tpot", &m.tpot_breach_causes}}) {
      std::int64_t total = 0;
      for (const auto& [cause, count] : *causes) total += count;
      json.key(name);
      json.begin_object();
      json.field("requests", total);
      json.field("top_cause", top_breach_cause(*causes));
      json.key("causes");
      json.begin_object();
      for (const auto& [cause, count] : *causes) json.field(cause, count);
      json.end_object();
      json.end_object();
    }
    json.end_object();
  }
  json.field("limiting_resource", m.limiting_resource);
  json.field("peak_bytes", r.peak_hbm_kv_bytes);
  // One value per tier: the compute tier, the swap tier and the offload tier (summed where the swap
  // and offload tiers are the same one). A peak summed so is an upper bound: the two peaks may
  // come at different times.
  auto per_tier = [&](const char* key, double hbm, double swap, double offload) {
    std::vector<std::pair<std::string, double>> tiers{{top, hbm}};
    const auto add = [&](const std::string& tier, double value) {
      if (tier.empty()) return;
      const auto it = std::find_if(tiers.begin(), tiers.end(), [&](const auto& t) { return t.first == tier; });
      if (it == tiers.end()) tiers.emplace_back(tier, value);
      else it->second += value;
    };
    add(swap_tier, swap);
    add(offload_tier, offload);
    json.key(key);
    json.begin_object();
    for (const auto& [tier, value] : tiers) json.field(tier, value);
    json.end_object();
  };
  per_tier("peak_kv_bytes", r.peak_hbm_kv_bytes, r.peak_swap_bytes, r.peak_offload_bytes);
  per_tier("mean_kv_bytes", r.mean_hbm_kv_bytes, r.mean_swap_bytes, r.mean_offload_bytes);
  per_tier("byte_seconds", r.hbm_kv_byte_seconds, r.swap_byte_seconds, r.offload_byte_seconds);
  per_tier("bytes_read", r.hbm_read_bytes, r.swap_out_bytes > 0 ? r.swap_in_bytes : 0.0, r.offload_read_bytes);
  per_tier("bytes_written", r.hbm_write_bytes, r.swap_out_bytes, r.offload_write_bytes);
  if (!r.link_bytes.empty()) {
    json.key("link_bytes");
    json.begin_object();
    for (const auto& [link, bytes] : r.link_bytes) json.field(link, bytes);
    json.end_object();
    write_link_utilisation(json, r, hw, tensor_parallel);
  }
  json.field("kv_capacity_blocks", r.capacity_blocks);
  if (!offload_tier.empty()) json.field("offload_capacity_blocks", r.offload_capacity_blocks);
  json.field("block_bytes", r.block_bytes);
  json.field("peak_running", r.peak_running);
  json.field("preemptions", r.preemptions);
  json.field("swap_out_bytes", r.swap_out_bytes);
  json.field("swap_in_bytes", r.swap_in_bytes);
  json.field("prefix_caching", prefix_caching);
  if (prefix_caching) json.field("prefix_hit_tokens", m.prefix_hit_tokens);
  if (prefix_caching && !r.prefix_tiers.empty()) {
    // Where the prefix hits came from, what the lower tiers moved, and the time loads took.
    json.key("prefix_cache");
    json.begin_object();
    auto per_lower_tier = [&](const char* key, auto value) {
      json.key(key);
      json.begin_object();
      for (const auto& t : r.prefix_tiers) json.field(t.tier, value(t));
      json.end_object();
    };
    json.key("hits");
    json.begin_object();
    json.field(top, r.prefix_compute_tier_hits);
    for (const auto& t : r.prefix_tiers) json.field(t.tier, t.hits);
    json.end_object();
    per_lower_tier("loaded_bytes", [](const ServingResult::PrefixTier& t) { return t.loaded_bytes; });
    per_lower_tier("written_bytes", [](const ServingResult::PrefixTier& t) { return t.written_bytes; });
    per_lower_tier("peak_bytes", [](const ServingResult::PrefixTier& t) { return t.peak_bytes; });
    json.field("load_s", r.prefix_load_s);
    json.end_object();
  }
  json.field("prompt_tokens_computed", r.prompt_tokens_computed);
  json.field("iterations", r.iterations);
  json.field("memory_blocked_iterations", r.memory_blocked_iterations);
  json.key("iteration_time_s");
  json.begin_object();
  json.field("compute_bound", r.compute_bound_s);
  json.field("memory_bound", r.memory_bound_s);
  json.field(offload_tier.empty() ? "swap_transfers" : "transfers", r.link_s);
  json.end_object();
  json.end_object();
}

std::string csv_number(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", x);
  return buffer;
}

}  // namespace

void write_serving_outputs(const std::string& out_dir, const ServingStudy& study, const ServingRun& run,
                           const std::vector<std::string>& ours,
                           const std::function<void(const std::string& staged_dir)>& also_write) {
  // The three files replace out_dir as one set (util/atomic_folder.h), as kvsim run's do.
  StagedFolder folder(out_dir, ours);
  const std::string& dir = folder.path();
  const Scenario& s = study.scenario();
  const std::string top = run.hardware.device.compute_tier;
  const std::string swap_tier = s.serving.preemption == ServingConfig::Preemption::kSwap ? s.serving.swap_tier : "";
  const std::string offload_tier = s.placement.kind == Placement::Kind::kOffload ? s.placement.tier : "";
  const Slo& slo = s.serving.slo;

  write_file_atomically(dir + "/summary.json", [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.key("scenario");
    write_scenario(json, study, run);
    json.key("policies");
    json.begin_array();
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      write_policy(json, run.specs[p], run.results[p], run.prefix_caching[p] != 0, s.serving.slo, top, swap_tier,
                   offload_tier, run.hardware, s.tensor_parallel);
    }
    json.end_array();
    json.end_object();
  });

  // The lower tiers bytes come back from (swap, offload, prefix cache), one column each.
  std::vector<std::string> loaded_tiers;
  auto add_tier = [&](const std::string& tier) {
    if (!tier.empty() && std::find(loaded_tiers.begin(), loaded_tiers.end(), tier) == loaded_tiers.end())
      loaded_tiers.push_back(tier);
  };
  add_tier(swap_tier);
  add_tier(offload_tier);
  for (const ServingResult& r : run.results) {
    for (const auto& t : r.prefix_tiers) add_tier(t.tier);
  }
  write_file_atomically(dir + "/requests.csv", [&](std::ostream& out) {
    out << "policy,spec,request,arrival_s,prompt_tokens,output_tokens,cached_prompt_tokens,queue_s,ttft_s,tpot_s,"
           "e2e_s,preemptions,rejected,peak_"
        << top << "_kv_bytes,peak_swap_bytes";
    for (const std::string& tier : loaded_tiers) out << ",loaded_" << tier << "_bytes";
    out << (slo.any() ? ",slo_breach" : "") << "\n";
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      for (const ServingRequestResult& q : run.results[p].requests) {
        out << p << ",\"" << run.specs[p] << "\"," << q.id << "," << csv_number(q.arrival_s) << "," << q.prompt_tokens
            << "," << q.output_tokens << "," << q.cached_prompt_tokens << ",";
        if (q.rejected) {
          out << ",,,,";  // never served: no latencies (absent, not zero)
        } else {
          const auto tpot = q.tpot_s();
          out << csv_number(q.queue_s()) << "," << csv_number(q.ttft_s()) << ","
              << (tpot ? csv_number(*tpot) : std::string()) << "," << csv_number(q.e2e_s()) << ",";
        }
        out << q.preemptions << "," << (q.rejected ? 1 : 0) << "," << csv_number(q.peak_hbm_kv_bytes) << ","
            << csv_number(q.peak_swap_bytes);
        const auto& prefix_tiers = run.results[p].prefix_tiers;
        for (const std::string& tier : loaded_tiers) {
          double bytes =
              (tier == swap_tier ? q.swap_in_bytes : 0) + (tier == offload_tier ? q.offload_fetched_bytes : 0);
          for (std::size_t i = 0; i < prefix_tiers.size() && i < q.prefix_loaded_bytes.size(); ++i) {
            if (prefix_tiers[i].tier == tier) bytes += q.prefix_loaded_bytes[i];
          }
          out << "," << csv_number(bytes);
        }
        if (slo.any()) out << "," << slo_breaches_of(q, slo);
        out << "\n";
      }
    }
  });

  write_file_atomically(dir + "/timeline.csv", [&](std::ostream& out) {
    out << "policy,time_s,running,waiting," << top << "_kv_bytes,prefix_cache_bytes,swap_bytes"
        << (offload_tier.empty() ? "" : "," + offload_tier + "_kv_bytes") << "\n";
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      for (const ServingSample& t : run.results[p].timeline) {
        out << p << "," << csv_number(t.time_s) << "," << t.running << "," << t.waiting << ","
            << csv_number(t.hbm_kv_bytes) << "," << csv_number(t.prefix_cache_bytes) << "," << csv_number(t.swap_bytes)
            << (offload_tier.empty() ? "" : "," + csv_number(t.offload_bytes)) << "\n";
      }
    }
  });
  if (also_write) also_write(folder.path());
  folder.commit();
}

void print_serving_table(std::ostream& out, const ServingStudy& study, const ServingRun& run) {
  const Slo& slo = study.scenario().serving.slo;
  const Placement& placement = study.scenario().placement;
  const std::string offload_tier = placement.kind == Placement::Kind::kOffload ? placement.tier : "";
  int width = 6;
  for (const auto& spec : run.specs) width = std::max(width, static_cast<int>(spec.size()));
  char line[1024];
  std::snprintf(line, sizeof line, "%-*s %8s %9s %9s %9s %9s %9s %9s %8s %9s %s\n", width, "policy", "served",
                "TTFT_p50", "TTFT_p99", "TPOT_p50", "TPOT_p99", "out_tok/s", slo.any() ? "goodput" : "req/s", "preempt",
                "peak_GiB", "limit");
  if (!offload_tier.empty()) {
    // peak_GiB is the compute tier's; the offload tier's peak follows each row.
    std::string header = line;
    header.insert(header.size() - 1, "  peak_" + offload_tier + "_GiB");
    out << header;
  } else {
    out << line;
  }
  for (std::size_t p = 0; p < run.results.size(); ++p) {
    const ServingResult& r = run.results[p];
    const ServingMetrics m = summarize_serving(r, slo);
    // Latencies of a policy that served nothing (or no decode) are absent, not zero.
    char latencies[64];
    if (m.served == 0) std::snprintf(latencies, sizeof latencies, "%9s %9s %9s %9s", "-", "-", "-", "-");
    else if (!m.has_tpot)
      std::snprintf(latencies, sizeof latencies, "%8.3fs %8.3fs %9s %9s", m.ttft_s.p50, m.ttft_s.p99, "-", "-");
    else
      std::snprintf(latencies, sizeof latencies, "%8.3fs %8.3fs %7.1fms %7.1fms", m.ttft_s.p50, m.ttft_s.p99,
                    m.tpot_s.p50 * 1e3, m.tpot_s.p99 * 1e3);
    std::snprintf(line, sizeof line, "%-*s %8lld %s %9.0f %9.3f %8lld %9.2f %s\n", width, run.specs[p].c_str(),
                  static_cast<long long>(m.served), latencies, m.output_tokens_per_s,
                  slo.any() ? m.goodput_requests_per_s : m.requests_per_s, static_cast<long long>(r.preemptions),
                  r.peak_hbm_kv_bytes / (1024.0 * 1024.0 * 1024.0), m.limiting_resource.c_str());
    std::string row = line;
    if (!offload_tier.empty()) {
      char extra[64];
      std::snprintf(extra, sizeof extra, "  %.2f", r.peak_offload_bytes / (1024.0 * 1024.0 * 1024.0));
      row.insert(row.size() - 1, extra);
    }
    out << row;
  }
}

}  // namespace kvsim

#include "sim/replay/metrics_row.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "util/confidence.h"

namespace kvsim {

namespace {

class MetricList {
 public:
  void integer(std::vector<std::string> path, std::int64_t value, bool present = true) {
    Metric m{std::move(path), MetricKind::integer, present};
    m.integer = value;
    list_.push_back(std::move(m));
  }
  void real(std::vector<std::string> path, double value, bool present = true) {
    Metric m{std::move(path), MetricKind::real, present};
    // Inputs that could make a metric NaN or infinite are refused before the replay; one that
    // slips through is a bug, reported as such instead of written as null or an empty cell.
    if (present && !std::isfinite(value)) throw std::logic_error("metric " + m.column() + " is not finite");
    m.real = value;
    list_.push_back(std::move(m));
  }
  void boolean(std::vector<std::string> path, bool value, bool present = true) {
    Metric m{std::move(path), MetricKind::boolean, present};
    m.integer = value ? 1 : 0;
    list_.push_back(std::move(m));
  }
  std::vector<Metric> take() { return std::move(list_); }

 private:
  std::vector<Metric> list_;
};

void add_summary(MetricList& out, const char* key, const char* tail_key, const std::optional<Summary>& summary) {
  out.real({key, "mean"}, summary ? summary->mean : 0.0, summary.has_value());
  out.real({key, tail_key}, summary ? summary->tail : 0.0, summary.has_value());
}

void add_percentiles(MetricList& out, const char* key, const Percentiles* p) {
  out.real({key, "p50"}, p ? p->p50 : 0.0, p != nullptr);
  out.real({key, "p90"}, p ? p->p90 : 0.0, p != nullptr);
  out.real({key, "p99"}, p ? p->p99 : 0.0, p != nullptr);
}

}  // namespace

std::string Metric::column() const {
  std::string name;
  for (const std::string& part : path) name += (name.empty() ? "" : "_") + part;
  return name;
}

std::vector<Metric> policy_metrics(const ScenarioRun& run, std::size_t policy) {
  const PolicyResult& r = run.results.at(policy);
  const PolicyTiming* t = run.timings.empty() ? nullptr : &run.timings.at(policy);
  const bool timed = t != nullptr;
  MetricList out;
  out.integer({"footprint_entry_steps"}, r.footprint_entry_steps);
  out.real({"footprint_normalized"}, r.footprint_normalized);
  out.integer({"peak_entries"}, r.peak_entries);
  out.integer({"peak_bytes"}, r.peak_bytes);
  out.real({"peak_normalized"}, r.peak_normalized);
  add_summary(out, "attention_recall", "p5", r.attention_recall);
  add_summary(out, "output_error", "p95", r.output_error);
  out.real({"needle_retention"}, r.needle_retention.value_or(0.0), r.needle_retention.has_value());

  // Time metrics exist only with a [hardware] model; TPOT only when something was decoded.
  add_percentiles(out, "ttft_s", timed ? &t->ttft_s : nullptr);
  const bool decoded = timed && !t->passes.empty() && t->decode_s > 0;
  add_percentiles(out, "tpot_s", decoded ? &t->tpot_s : nullptr);
  add_percentiles(out, "e2e_s", timed ? &t->e2e_s : nullptr);
  out.real({"prefill_s"}, timed ? t->prefill_s : 0.0, timed);
  out.real({"decode_s"}, timed ? t->decode_s : 0.0, timed);
  out.integer({"compute_bound_passes"}, timed ? t->compute_bound_passes : 0, timed);
  out.real({"weight_bytes"}, timed ? t->weight_bytes : 0.0, timed);
  out.real({"peak_hbm_bytes"}, timed ? t->peak_hbm_bytes : 0.0, timed);
  out.boolean({"fits_hbm"}, timed && t->fits_hbm, timed);
  out.real({"offloaded_entries"}, timed ? t->offloaded_entries : 0.0, timed);
  out.real({"evicted_entries"}, timed ? t->evicted_entries : 0.0, timed);
  if (!timed) return out.take();

  static const std::pair<const char*, double TierTraffic::*> kTierMetrics[] = {
      {"bytes_read", &TierTraffic::bytes_read},
      {"bytes_written", &TierTraffic::bytes_written},
      {"byte_seconds", &TierTraffic::byte_seconds},
      {"peak_kv_bytes", &TierTraffic::peak_kv_bytes},
      {"mean_read_bandwidth_bytes_per_s", &TierTraffic::mean_read_bytes_per_s},
      {"peak_read_bandwidth_bytes_per_s", &TierTraffic::peak_read_bytes_per_s}};
  for (const auto& [name, member] : kTierMetrics) {
    for (const TierTraffic& tier : t->tiers) out.real({name, tier.tier}, tier.*member);
  }
  for (const LinkTraffic& link : t->links) {
    out.real({"links_per_tp_rank", link.link, "bytes"}, link.bytes);
    out.real({"links_per_tp_rank", link.link, "mean_bandwidth_bytes_per_s"}, link.mean_bytes_per_s);
    out.real({"links_per_tp_rank", link.link, "peak_bandwidth_bytes_per_s"}, link.peak_bytes_per_s);
  }
  return out.take();
}

std::vector<Metric> policy_metrics(const ScenarioDraws& draws, std::size_t policy) {
  if (draws.runs.empty()) throw std::logic_error("policy_metrics: a scenario without draws");
  if (draws.runs.size() == 1) return policy_metrics(draws.first(), policy);
  std::vector<std::vector<Metric>> per_draw;
  for (const ScenarioRun& run : draws.runs) per_draw.push_back(policy_metrics(run, policy));
  std::vector<Metric> out;
  std::vector<double> values(per_draw.size());
  for (std::size_t i = 0; i < per_draw.front().size(); ++i) {
    Metric m = per_draw.front()[i];
    bool same_integer = true;
    for (std::size_t d = 0; d < per_draw.size(); ++d) {
      const Metric& x = per_draw[d].at(i);
      if (x.path != m.path || x.kind != m.kind) throw std::logic_error("draws of one scenario differ in metrics");
      m.present = m.present && x.present;
      same_integer = same_integer && x.integer == m.integer;
      values[d] = x.kind == MetricKind::real ? x.real : static_cast<double>(x.integer);
    }
    if (m.kind == MetricKind::boolean) {
      m.integer = std::all_of(per_draw.begin(), per_draw.end(), [&](const auto& draw) { return draw[i].integer != 0; });
      out.push_back(std::move(m));
      continue;
    }
    const MeanInterval interval = m.present ? student_t_interval(values) : MeanInterval{};
    // Equal integers stay exact (a double holds them only up to 2^53).
    if (m.kind == MetricKind::integer && !same_integer) m.integer = std::llround(interval.mean);
    if (m.kind == MetricKind::real) m.real = interval.mean;
    Metric ci = m;
    ci.path.back() += "_ci95";
    ci.kind = MetricKind::real;
    ci.integer = 0;
    ci.real = interval.half_width;
    out.push_back(std::move(m));
    out.push_back(std::move(ci));
  }
  return out;
}

}  // namespace kvsim

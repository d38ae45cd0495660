#pragma once
// The per-policy metrics of the output contract (DESIGN.md §7) as one flat, ordered list. Both
// summary.json (nested by `path`) and the sweep tables (one column per metric) are written from
// this list, so the two cannot drift apart: a metric added here appears in both.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/replay/run.h"

namespace kvsim {

enum class MetricKind { integer, real, boolean };

struct Metric {
  std::vector<std::string> path;  // {"attention_recall", "p5"}: summary.json nests objects by it
  MetricKind kind = MetricKind::real;
  bool present = false;      // false: not computed for this scenario (absent, never 0)
  std::int64_t integer = 0;  // integer and boolean (0/1) kinds
  double real = 0.0;         // real kind

  // The table column: the path joined with '_' ("attention_recall_p5", "bytes_read_hbm").
  std::string column() const;
};

// Every metric of policy `policy` (an index into run.results) in summary.json order. Metrics that
// every scenario has a slot for (fidelity, time percentiles, ...) are listed even when absent, so a
// sweep's columns do not depend on which scenario came first; per-tier and per-link metrics are
// listed for the tiers and links the scenario's hardware has.
std::vector<Metric> policy_metrics(const ScenarioRun& run, std::size_t policy);

// The same over a scenario's draws ([workload] seeds). One draw: exactly policy_metrics(draws.first(),
// policy). Several: each metric is the mean over the draws (an integer metric rounded to the
// nearest integer; a boolean true only when it is true in every draw; absent when absent in any),
// and every number is followed by `<name>_ci95`, the half-width of its 95 % Student-t interval
// (util/confidence.h): 0 when every draw gives the same value, as footprint and peak do for a
// policy whose kept counts do not depend on the scores.
std::vector<Metric> policy_metrics(const ScenarioDraws& draws, std::size_t policy);

}  // namespace kvsim

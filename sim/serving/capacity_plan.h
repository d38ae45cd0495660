#pragma once
// Capacity planning (`kvsim plan`, DESIGN.md §6): for each policy and hardware, the highest arrival
// rate (or closed-loop concurrency) whose p99 TTFT and TPOT meet the SLO, found by bisection over
// serving simulations, with the memory it takes and the resource that stops it going higher.
#include <functional>
#include <string>
#include <vector>

#include "hw/hardware.h"
#include "sim/serving/metrics.h"
#include "sim/serving/study.h"

namespace kvsim {

enum class PlanAxis { kRate, kConcurrency };

struct PlanOptions {
  PlanAxis axis = PlanAxis::kRate;
  Slo slo;                  // p99 bounds
  double precision = 0.02;  // rate: stop when the bracket is within this relative width
  int max_concurrency = 1 << 16;
};

struct PlanRow {
  std::string spec;
  std::string hardware;      // preset name
  bool feasible = false;     // false: the SLO fails even at the lowest load tried
  double max_value = 0;      // requests/s, or clients
  ServingMetrics at_max;     // the run at max_value
  double peak_kv_bytes = 0;  // compute tier, at max_value
  double mean_kv_bytes = 0;
  double weight_bytes = 0;  // whole model, all TP ranks
  double kv_capacity_bytes = 0;
  std::string limit;  // what broke the SLO just above max_value
  int simulations = 0;
};

// Whether a run meets the SLO's p99 bounds (rejected requests always miss it).
bool meets_slo(const ServingMetrics& metrics, const Slo& slo);

// One row per (hardware, policy), hardware-major, in the order given.
std::vector<PlanRow> plan_capacity(const ServingStudy& study, const std::vector<std::string>& hardware_presets,
                                   const PlanOptions& options, const std::function<void(const std::string&)>& progress);

}  // namespace kvsim

#pragma once
// Capacity planning (`kvsim plan`, DESIGN.md §6): for each policy and deployment (hardware, tensor
// parallelism, iteration token budget), the highest arrival rate (or closed-loop concurrency) whose
// p99 TTFT and TPOT meet the SLO, found by bisection over serving simulations, with the memory it
// takes, the resource that stops it going higher, its rate per GPU and cost per million tokens; where
// no load meets the SLO, the zero-load floor that shows why.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hw/hardware.h"
#include "sim/serving/metrics.h"
#include "sim/serving/scheduler.h"
#include "sim/serving/study.h"

namespace kvsim {

enum class PlanAxis { kRate, kConcurrency };

struct PlanOptions {
  PlanAxis axis = PlanAxis::kRate;
  Slo slo;                  // p99 bounds
  double precision = 0.02;  // rate: stop when the bracket is within this relative width
  int max_concurrency = 1 << 16;
};

// The zero-load floor of a deployment: the workload's requests each alone on the idle deployment (a
// closed loop of one client: no queueing, no batching with others), and which resource makes it.
struct ZeroLoadFloor {
  double ttft_p99_s = 0;
  double tpot_p99_s = 0;
  bool has_tpot = false;
  // "prefill compute", "prefill hbm_bandwidth", "decode compute", "decode hbm_bandwidth",
  // "link_bandwidth", "context length", "KV capacity", or "arrival bursts" when each request alone
  // meets the SLO but requests the trace sends together do not.
  std::string resource;
  std::string reason;  // one sentence with the numbers
};

// One serving simulation the search ran: the load tried and its p99 latencies, so that a plot can
// show how latency grows with load around the chosen value (tools/plot.py on a plan folder).
struct PlanTrial {
  double load = 0;  // requests/s, or clients
  double ttft_p99_s = 0;
  double tpot_p99_s = 0;
  bool has_tpot = false;
  bool meets_slo = false;
};

struct PlanRow {
  std::string spec;
  std::size_t policy = 0;  // index in the study
  std::string hardware;    // preset name
  int tensor_parallel = 1;
  std::int64_t max_batch_tokens = 0;
  std::int64_t chunk_tokens = 0;  // the study's [workload] chunk_tokens (0: unchunked)
  bool feasible = false;          // false: the SLO fails even at the lowest load tried
  double max_value = 0;           // requests/s, or clients
  double max_value_per_gpu = 0;   // max_value / tensor_parallel
  ServingMetrics at_max;          // the run at max_value
  double peak_kv_bytes = 0;       // compute tier, at max_value, all GPUs
  double mean_kv_bytes = 0;
  double weight_bytes = 0;       // whole model, all TP ranks
  double kv_capacity_bytes = 0;  // the block pool, all GPUs (plus the offload tier under placement offload)
  GpuMemory memory;              // the compute tier of each GPU
  // Output tokens per second served at max_value: by rate, the rate times the workload's mean output
  // tokens per request (what the deployment sustains); by concurrency, the measured throughput.
  double output_tokens_per_s = 0;
  double usd_per_gpu_hour = 0;               // [cost] of the hardware file; 0: no price
  double usd_per_million_output_tokens = 0;  // usd_per_gpu_hour x tp / output tokens per hour x 1e6; 0: unknown
  std::string limit;                         // what broke the SLO just above max_value
  std::optional<ZeroLoadFloor> floor;        // when not feasible
  int simulations = 0;
  std::vector<PlanTrial> trials;  // the search's simulations in the order run (not the zero-load floor)
};

// A deployment whose weights leave no KV block in its GPUs: not simulated.
struct SkippedDeployment {
  std::string hardware;
  int tensor_parallel = 1;
  GpuMemory memory;
  std::string reason;
};

// Whether a run meets the SLO's p99 bounds (rejected requests always miss it).
bool meets_slo(const ServingMetrics& metrics, const Slo& slo);

// Every combination of the presets, tensor-parallel degrees and token budgets, hardware-major, each
// preset with the scenario's attachments. Throws InputError naming `kvsim plan --hardware` for a
// preset that does not load, `tp_where` ("kvsim plan --tp", or the scenario's [hardware] tp when
// the degrees are its own) and the degree for one the model or hardware cannot run (heads not
// divisible, no tp_bandwidth), before any simulation.
std::vector<Deployment> deployment_grid(const Scenario& scenario, const std::vector<std::string>& presets,
                                        const std::vector<int>& tensor_parallel,
                                        const std::vector<std::int64_t>& max_batch_tokens,
                                        const std::string& tp_where = "kvsim plan --tp");

// How each GPU of `deployment` splits its compute tier for the study's model, block size and reserve.
GpuMemory deployment_memory(const ServingStudy& study, const Deployment& deployment);

// The zero-load floor of `policy` on `deployment` (one serving simulation at concurrency 1).
ZeroLoadFloor zero_load_floor(const ServingStudy& study, std::size_t policy, const Deployment& deployment,
                              const Slo& slo, PlanAxis axis);

// One row per (deployment, policy), deployment-major, in the order given; deployments whose
// weights leave no KV block are left out and, when `skipped` is given, listed there.
std::vector<PlanRow> plan_capacity(const ServingStudy& study, const std::vector<Deployment>& deployments,
                                   const PlanOptions& options, const std::function<void(const std::string&)>& progress,
                                   std::vector<SkippedDeployment>* skipped = nullptr);

// The same on each preset at the scenario's tp and max_batch_tokens.
std::vector<PlanRow> plan_capacity(const ServingStudy& study, const std::vector<std::string>& hardware_presets,
                                   const PlanOptions& options, const std::function<void(const std::string&)>& progress);

// For each policy (in order of first appearance), the index of its best feasible row: the lowest
// cost per million output tokens when every feasible row of the policy has a price, else the most
// load per GPU. A policy without a feasible row gets no entry.
std::vector<std::size_t> best_deployments(const std::vector<PlanRow>& rows);

}  // namespace kvsim

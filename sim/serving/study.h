#pragma once
// A serving scenario end to end (DESIGN.md §6): the workload, the policies' retention curves
// (measured once), and one serving simulation per policy on the scenario's hardware. `kvsim run`
// on a scenario with [workload] arrivals and `kvsim plan` both go through here.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hw/hardware.h"
#include "policies/policy.h"
#include "sim/scenario.h"
#include "sim/serving/retention_profiles.h"
#include "sim/serving/scheduler.h"
#include "traces/workload.h"

namespace kvsim {

// The scenario's arrivals with its limits; arrival times rescaled to [workload] arrival_rate.
Workload load_scenario_workload(const Scenario& scenario);

// `workload` with arrival times scaled so that its mean rate is `rate_per_s`.
Workload with_arrival_rate(const Workload& workload, double rate_per_s);
// The same requests in the same order, arriving as a Poisson process at the workload's mean rate
// (the first at 0), drawn from `seed`: [workload] arrival_process = poisson.
Workload with_poisson_arrivals(const Workload& workload, std::uint64_t seed);

// Requests over the span of their arrivals (the first arrives at 0): (n - 1) / last arrival.
double mean_arrival_rate(const Workload& workload);

// What a serving study runs on, where `kvsim plan` varies it: the hardware, the tensor-parallel
// degree and the iteration's token budget ([serving] max_batch_tokens). Everything else of the
// scenario ([serving], placement) applies unchanged. ServingStudy::deployment() is the scenario's own.
struct Deployment {
  std::string hardware_name;  // the preset or path as given, for tables
  Hardware hardware;
  int tensor_parallel = 1;
  std::int64_t max_batch_tokens = 2048;
};

class ServingStudy {
 public:
  // Loads the workload and measures every policy's retention curves (the expensive part), or reads
  // them from the scenario's profile cache (sim/serving/profile_cache.h). `warn` gets the cache's
  // warnings (a damaged file, a folder that cannot be written); empty: `progress` gets them.
  ServingStudy(const Scenario& scenario, const std::function<void(const std::string&)>& progress,
               const std::function<void(const std::string&)>& warn = {});

  const Scenario& scenario() const { return scenario_; }
  const Workload& workload() const { return workload_; }
  const ModelShape& model() const { return scenario_.model; }
  std::size_t num_policies() const { return policies_.size(); }
  std::string spec(std::size_t policy) const { return policies_[policy]->spec(); }
  // Prefix blocks are shared only under a policy that keeps every entry (see scheduler.h).
  bool prefix_caching(std::size_t policy) const;
  std::size_t profile_buckets() const { return profiles_ ? profiles_->buckets() : 0; }

  // One serving simulation of `workload` (this study's, or a rescaled copy of it); `concurrency`
  // < 0 takes the scenario's.
  // `record_iterations`: keep the first N iterations' times in the result (--timeline).
  ServingResult simulate(std::size_t policy, const Workload& workload, const Hardware& hardware, int concurrency = -1,
                         const std::function<void(const BlockPool&)>& after_event = {},
                         std::int64_t record_iterations = 0) const;
  // The same on `deployment` instead of the scenario's hardware, tp and max_batch_tokens.
  ServingResult simulate(std::size_t policy, const Workload& workload, const Deployment& deployment,
                         int concurrency = -1, const std::function<void(const BlockPool&)>& after_event = {},
                         std::int64_t record_iterations = 0) const;
  // The scenario's hardware (preset + attachments), tp and max_batch_tokens.
  Deployment deployment() const;

 private:
  RetentionCurve curve(std::size_t policy, std::size_t request) const;

  Scenario scenario_;
  Workload workload_;
  std::vector<std::unique_ptr<Policy>> policies_;
  std::optional<RetentionProfiles> profiles_;       // fast mode
  std::vector<std::vector<RetentionCurve>> exact_;  // exact mode: [request][policy]
  std::vector<char> keeps_everything_;              // per policy
};

struct ServingRun {
  Hardware hardware;
  std::vector<std::string> specs;
  std::vector<ServingResult> results;  // one per policy, `full` first
  std::vector<char> prefix_caching;
};

// Every policy of the study on its workload; `record_iterations` as in ServingStudy::simulate.
ServingRun run_serving(const ServingStudy& study, std::int64_t record_iterations = 0);

// The scenario's hardware (preset + attachments), errors naming the scenario's [hardware].
Hardware load_scenario_hardware(const Scenario& scenario);

}  // namespace kvsim

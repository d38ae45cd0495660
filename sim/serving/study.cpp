#include "sim/serving/study.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <utility>

#include "hw/cost_model.h"
#include "hw/hierarchy.h"
#include "sim/placement.h"
#include "sim/scenario_sources.h"
#include "sim/serving/profile_cache.h"
#include "util/error.h"
#include "util/rng.h"

namespace kvsim {

Workload load_scenario_workload(const Scenario& s) {
  WorkloadLimits limits;
  limits.max_requests = s.max_requests;
  // s.arrivals is already resolved against the scenario's folder.
  Workload w;
  try {
    w = load_workload(s.arrivals, "", s.seed, limits, s.path + ": [workload] arrivals");
  } catch (const InputError& e) {
    const std::string what = e.what();
    if (what.rfind(s.path, 0) == 0) throw;  // already names the scenario
    fail_input(s.path + ": [workload] arrivals", what);
  }
  if (w.requests.empty()) fail_input(s.path + ": [workload] arrivals", "no requests in " + s.arrivals);
  if (s.arrival_process == Scenario::ArrivalProcess::kPoisson) {
    if (w.requests.size() < 2 || w.duration_s() <= 0) {
      fail_input(s.path + ": [workload] arrival_process",
                 "poisson needs a mean rate: at least two requests arriving at different times");
    }
    w = with_poisson_arrivals(w, s.seed);
  }
  if (s.arrival_rate_per_s > 0) {
    if (w.requests.size() < 2 || w.duration_s() <= 0) {
      fail_input(s.path + ": [workload] arrival_rate", "needs at least two requests arriving at different times");
    }
    w = with_arrival_rate(w, s.arrival_rate_per_s);
  }
  return w;
}

Workload with_poisson_arrivals(const Workload& w, std::uint64_t seed) {
  Workload out = w;
  const double rate_per_s = mean_arrival_rate(w);
  // Its own stream: the trace synthesiser draws from the same seed.
  KeyedRng rng(hash_key(seed, 0x706F6973736F6EULL /* "poisson" */));
  double now_s = 0;
  for (std::size_t i = 0; i < out.requests.size(); ++i) {
    if (i > 0) now_s += -std::log(rng.uniform()) / rate_per_s;  // exponential gaps
    out.requests[i].arrival_s = now_s;
  }
  return out;
}

double mean_arrival_rate(const Workload& w) {
  if (w.requests.size() < 2 || w.duration_s() <= 0) return 0;
  return static_cast<double>(w.requests.size() - 1) / w.duration_s();
}

Workload with_arrival_rate(const Workload& w, double rate_per_s) {
  Workload out = w;
  const double scale = mean_arrival_rate(w) / rate_per_s;
  for (WorkloadRequest& r : out.requests) r.arrival_s *= scale;
  return out;
}

Hardware load_scenario_hardware(const Scenario& s) {
  try {
    return load_hardware(s.hardware_preset, s.hardware_attach);
  } catch (const InputError& e) {
    fail_input(s.path + ": [hardware] preset", e.what());
  }
}

ServingStudy::ServingStudy(const Scenario& scenario, const std::function<void(const std::string&)>& progress,
                           const std::function<void(const std::string&)>& warn)
    : scenario_(scenario), workload_(load_scenario_workload(scenario)), policies_(make_scenario_policies(scenario)) {
  check_scenario_tiers(scenario, load_scenario_hardware(scenario));  // before the retention replays
  if (!scenario.serving.prefix_cache_lower_tiers.empty()) {
    // Lower prefix-cache tiers that nothing could use are refused, not ignored.
    const std::string at = scenario.path + ": [serving] prefix_cache";
    if (workload_.prefix_block_tokens <= 0) {
      fail_input(at, "workload " + workload_.source +
                         " has no prefix hashes (Mooncake hash_ids), so no prefix is ever cached");
    }
    if (workload_.prefix_block_tokens % scenario.serving.block_tokens != 0) {
      fail_input(at, "prefix blocks of " + std::to_string(workload_.prefix_block_tokens) +
                         " tokens are not a whole number of " + std::to_string(scenario.serving.block_tokens) +
                         "-token KV blocks, so prefix caching is off");
    }
    if (scenario.serving.admission != ServingConfig::Admission::kOnDemand) {
      fail_input(at, "prefix caching needs [serving] admission = on_demand");
    }
  }
  std::vector<const Policy*> ptrs;
  for (const auto& p : policies_) ptrs.push_back(p.get());
  const ProfileCache cache(profile_cache_dir(scenario), warn ? warn : progress);
  const std::size_t n = workload_.requests.size();
  if (scenario.serving.mode == ServingConfig::Mode::kFast) {
    std::vector<std::int64_t> lengths;
    for (const WorkloadRequest& r : workload_.requests) lengths.push_back(r.prompt_tokens);
    profiles_.emplace(scenario_, ptrs, lengths, progress, &cache);
  } else {
    // Requests of equal lengths share one replay (its curves are a function of the lengths).
    std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> distinct;
    for (const WorkloadRequest& r : workload_.requests)
      distinct.emplace(std::pair(r.prompt_tokens, r.output_tokens), 0);
    std::vector<std::pair<std::int64_t, std::int64_t>> lengths;
    for (auto& [pair, index] : distinct) {
      index = lengths.size();
      lengths.push_back(pair);
    }
    if (progress) {
      progress("exact mode: replaying " + std::to_string(n) + " requests (" + std::to_string(lengths.size()) +
               " distinct lengths) x " + std::to_string(ptrs.size()) + " policies");
    }
    const std::vector<std::vector<RetentionCurve>> measured =
        measure_retention_set(scenario_, ptrs, lengths, &cache, progress);
    exact_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const WorkloadRequest& r = workload_.requests[i];
      exact_[i] = measured[distinct.at(std::pair(r.prompt_tokens, r.output_tokens))];
    }
  }
  keeps_everything_.assign(policies_.size(), 1);
  for (std::size_t p = 0; p < policies_.size(); ++p) {
    for (std::size_t i = 0; i < n && keeps_everything_[p]; ++i) {
      if (!curve(p, i).keeps_everything()) keeps_everything_[p] = 0;
    }
  }
}

bool ServingStudy::prefix_caching(std::size_t policy) const {
  return keeps_everything_[policy] && workload_.prefix_block_tokens > 0;
}

RetentionCurve ServingStudy::curve(std::size_t policy, std::size_t request) const {
  if (profiles_) return profiles_->curve(policy, workload_.requests[request].prompt_tokens);
  return exact_[request][policy];
}

ServingResult ServingStudy::simulate(std::size_t policy, const Workload& workload, const Hardware& hardware,
                                     int concurrency, const std::function<void(const BlockPool&)>& after_event,
                                     std::int64_t record_iterations) const {
  const Deployment d{scenario_.hardware_preset, hardware, scenario_.tensor_parallel,
                     scenario_.serving.max_batch_tokens};
  return simulate(policy, workload, d, concurrency, after_event, record_iterations);
}

Deployment ServingStudy::deployment() const {
  return Deployment{scenario_.hardware_preset, load_scenario_hardware(scenario_), scenario_.tensor_parallel,
                    scenario_.serving.max_batch_tokens};
}

ServingResult ServingStudy::simulate(std::size_t policy, const Workload& workload, const Deployment& deployment,
                                     int concurrency, const std::function<void(const BlockPool&)>& after_event,
                                     std::int64_t record_iterations) const {
  const Scenario& s = scenario_;
  const CostModel cost(deployment.hardware, s.model, deployment.tensor_parallel, s.path + ": [hardware]");
  const Hierarchy hierarchy(deployment.hardware);
  ServingConfig config = s.serving;
  config.max_batch_tokens = deployment.max_batch_tokens;
  ServingInput input{config,
                     workload,
                     concurrency < 0 ? s.concurrency : concurrency,
                     cost,
                     hierarchy,
                     s.model,
                     deployment.tensor_parallel,
                     s.placement,
                     {},
                     prefix_caching(policy),
                     after_event};
  input.curve = [&](std::size_t request) { return curve(policy, request); };
  input.record_iterations = record_iterations;
  try {
    return simulate_serving(input);
  } catch (const InputError& e) {
    fail_input(s.path + ": [serving]", e.what());
  }
}

ServingRun run_serving(const ServingStudy& study, std::int64_t record_iterations) {
  ServingRun run;
  run.hardware = load_scenario_hardware(study.scenario());
  const std::size_t n = study.num_policies();
  run.results.resize(n);
  tbb::parallel_for(std::size_t{0}, n, [&](std::size_t p) {
    run.results[p] = study.simulate(p, study.workload(), run.hardware, -1, {}, record_iterations);
  });
  for (std::size_t p = 0; p < n; ++p) {
    run.specs.push_back(study.spec(p));
    run.prefix_caching.push_back(study.prefix_caching(p) ? 1 : 0);
  }
  return run;
}

}  // namespace kvsim

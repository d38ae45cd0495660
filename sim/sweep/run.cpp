#include "sim/sweep/run.h"

#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <set>

#include "hw/hardware.h"
#include "sim/replay/run.h"
#include "sim/sweep/store.h"
#include "util/error.h"
#include "util/threads.h"

namespace kvsim {

namespace {

// The scenario's error, naming which scenario of the sweep it is.
InputError in_scenario(const Sweep& sweep, std::size_t index, const InputError& e) {
  if (sweep.scenarios.size() == 1) return e;
  return InputError(std::string(e.what()) + " (in " + sweep.describe(index) + ")");
}

}  // namespace

std::vector<Scenario> load_sweep_scenarios(const Sweep& sweep) {
  std::vector<Scenario> scenarios;
  scenarios.reserve(sweep.scenarios.size());
  std::set<std::vector<std::string>> hardware_checked;
  for (const SweepScenario& s : sweep.scenarios) {
    try {
      scenarios.push_back(load_scenario_text(sweep.text(s.index), sweep.path));
      if (scenarios.back().serving_mode()) {
        // run_sweep_scenarios replays one request per scenario; serving results have other tables.
        fail_input(sweep.path + ": [workload] arrivals",
                   "serving scenarios cannot be swept yet (kvsim sweep replays single requests); use kvsim plan");
      }
      make_scenario_policies(scenarios.back());  // validates the specs; the policies are built again per run
      // run_scenario reads the hardware only after the replay: a bad preset would cost a whole run.
      const Scenario& scenario = scenarios.back();
      std::vector<std::string> hardware = {scenario.hardware_preset};
      hardware.insert(hardware.end(), scenario.hardware_attach.begin(), scenario.hardware_attach.end());
      if (!scenario.hardware_preset.empty() && hardware_checked.insert(hardware).second) {
        try {
          load_hardware(scenario.hardware_preset, scenario.hardware_attach);
        } catch (const InputError& e) {
          fail_input(sweep.path + ": [hardware] preset", e.what());
        }
      }
    } catch (const InputError& e) {
      throw in_scenario(sweep, s.index, e);
    }
  }
  return scenarios;
}

void run_sweep_scenarios(const std::string& dir, const Sweep& sweep, const std::vector<Scenario>& scenarios,
                         const std::vector<std::size_t>& indices, int jobs, const ScenarioFinished& finished) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;  // guards `error` and `finished`
  std::exception_ptr error;

  // One worker per job pulls scenarios in order. Each scenario runs isolated: a worker waiting for
  // its scenario's parallel loops helps only with those, never starts another scenario, so at most
  // `jobs` scenarios (and their traces) are in memory at once.
  auto worker = [&] {
    while (!stop) {
      const std::size_t k = next++;
      if (k >= indices.size()) return;
      const std::size_t index = indices[k];
      try {
        const auto start = std::chrono::steady_clock::now();
        const Scenario& scenario = scenarios.at(index);
        // The scenarios' own [sim] threads do not apply: the sweep's cap is `jobs` (kvsim sweep caps
        // the process at it), and a lower one from a scenario would starve the other workers.
        tbb::this_task_arena::isolate([&] {
          const ScenarioDraws draws = run_scenario_draws(scenario, /*keep_masks=*/false);
          write_scenario_result(dir, sweep, index, scenario, draws);
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const std::lock_guard<std::mutex> lock(mutex);
        if (finished && !stop) finished(index, seconds);
      } catch (const InputError& e) {
        const std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::make_exception_ptr(in_scenario(sweep, index, e));
        stop = true;
      } catch (...) {
        const std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        stop = true;
      }
    }
  };
  // Lets the arena have `jobs` threads even above the core count; without it oneTBB caps the
  // workers at the cores and prints a "TBB Warning" on stderr (also under --quiet).
  cap_worker_threads(jobs);
  tbb::task_arena arena(jobs);
  arena.execute([&] {
    tbb::task_group group;
    for (int j = 0; j < jobs; ++j) group.run(worker);
    group.wait();
  });
  if (error) std::rethrow_exception(error);
}

}  // namespace kvsim

#include "sim/serving/chrome_trace.h"

#include "util/json.h"
#include "util/trace_events.h"

namespace kvsim {

using trace_events::metadata;
using trace_events::slice;

void write_serving_chrome_trace(const std::string& path, const ServingRun& run,
                                const std::function<void(const std::string&)>& warn) {
  for (std::size_t p = 0; p < run.results.size(); ++p) {
    const ServingResult& r = run.results[p];
    if (r.iterations_not_recorded > 0 && warn) {
      warn("--timeline: " + run.specs[p] + ": the first " + std::to_string(r.iterations_recorded.size()) + " of " +
           std::to_string(r.iterations) + " iterations (the counters cover the whole run)");
    }
  }
  trace_events::write_trace_file(path, [&](JsonWriter& json) {
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const ServingResult& r = run.results[p];
      const int pid = static_cast<int>(p);
      std::string process = run.specs[p];
      if (r.iterations_not_recorded > 0) {
        process += " (first " + std::to_string(r.iterations_recorded.size()) + " of " + std::to_string(r.iterations) +
                   " iterations)";
      }
      metadata(json, "process_name", pid, 0, process);
      metadata(json, "thread_name", pid, 0, "compute (" + run.hardware.device.name + ")");
      metadata(json, "thread_name", pid, 1, "transfers waited for (links)");
      for (const ServingIteration& it : r.iterations_recorded) {
        const std::string name = std::to_string(it.prefills) + " prefill + " + std::to_string(it.decodes) +
                                 " decode, " + std::to_string(it.tokens) + " tokens, " +
                                 (it.compute_bound ? "compute" : "hbm_bandwidth") + " bound";
        slice(json, pid, 0, name, it.start_s, it.time_s);
        if (it.link_s > 0) slice(json, pid, 1, "KV transfer", it.start_s, it.link_s);
      }
      for (const ServingSample& t : r.timeline) {
        trace_events::counter(json, pid, "KV bytes", t.time_s,
                              {{run.hardware.device.compute_tier, t.hbm_kv_bytes},
                               {"of which prefix cache", t.prefix_cache_bytes},
                               {"swap", t.swap_bytes},
                               {"offload", t.offload_bytes}});
        trace_events::counter(
            json, pid, "requests", t.time_s,
            {{"running", static_cast<double>(t.running)}, {"waiting", static_cast<double>(t.waiting)}});
      }
    }
  });
}

}  // namespace kvsim

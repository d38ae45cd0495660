#include "sim/replay/chrome_trace.h"

#include "util/error.h"
#include "util/json.h"
#include "util/trace_events.h"

namespace kvsim {

using trace_events::metadata;
using trace_events::slice;

void write_chrome_trace(const std::string& path, const ScenarioRun& run) {
  if (run.timings.empty())
    fail_input(path, "--timeline needs a [hardware] section in the scenario (time comes from it)");
  const double entry_bytes = static_cast<double>(run.model.entry_bytes());
  trace_events::write_trace_file(path, [&](JsonWriter& json) {
    for (std::size_t p = 0; p < run.results.size(); ++p) {
      const int pid = static_cast<int>(p);
      const PolicyTiming& t = run.timings[p];
      metadata(json, "process_name", pid, 0, run.results[p].spec);
      metadata(json, "thread_name", pid, 0, "compute (" + run.hardware->device.name + ")");
      for (std::size_t l = 0; l < t.links.size(); ++l) {
        metadata(json, "thread_name", pid, 1 + static_cast<int>(l), "link " + t.links[l].link);
      }
      for (std::size_t i = 0; i < t.passes.size(); ++i) {
        const Pass& pass = run.plan.passes[i];
        const std::string name =
            pass.prefill ? "prefill chunk " + std::to_string(pass.index) : "decode step " + std::to_string(pass.index);
        slice(json, pid, 0, name, t.pass_start_s[i], t.passes[i].time_s);
        if (t.ledger[i].transfer_s > 0) {
          for (std::size_t l = 0; l < t.links.size(); ++l) {
            slice(json, pid, 1 + static_cast<int>(l), "KV transfer", t.pass_start_s[i], t.ledger[i].transfer_s);
          }
        }
        if (t.tiers.size() > 1) {
          trace_events::counter(json, pid, "resident KV bytes", t.pass_start_s[i],
                                {{t.tiers[0].tier, t.ledger[i].hbm_entries * entry_bytes},
                                 {t.tiers[1].tier, t.ledger[i].lower_entries * entry_bytes}});
        } else {
          trace_events::counter(json, pid, "resident KV bytes", t.pass_start_s[i],
                                {{t.tiers[0].tier, t.ledger[i].hbm_entries * entry_bytes}});
        }
      }
    }
  });
}

}  // namespace kvsim

#include "sim/replay/chrome_trace.h"

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json.h"

namespace kvsim {

namespace {

constexpr double kMicroseconds = 1e6;  // the trace format's time unit

void metadata(JsonWriter& json, const char* what, int pid, int tid, const std::string& name) {
  json.begin_object();
  json.field("ph", "M");
  json.field("name", what);
  json.field("pid", pid);
  json.field("tid", tid);
  json.key("args");
  json.begin_object();
  json.field("name", name);
  json.end_object();
  json.end_object();
}

void slice(JsonWriter& json, int pid, int tid, const std::string& name, double start_s, double duration_s) {
  json.begin_object();
  json.field("ph", "X");
  json.field("name", name);
  json.field("pid", pid);
  json.field("tid", tid);
  json.field("ts", start_s * kMicroseconds);
  json.field("dur", duration_s * kMicroseconds);
  json.end_object();
}

}  // namespace

void write_chrome_trace(const std::string& path, const ScenarioRun& run) {
  if (run.timings.empty())
    fail_input(path, "--timeline needs a [hardware] section in the scenario (time comes from it)");
  const double entry_bytes = static_cast<double>(run.model.entry_bytes());
  write_file_atomically(path, [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.field("displayTimeUnit", "ms");
    json.key("traceEvents");
    json.begin_array();
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
        json.begin_object();
        json.field("ph", "C");
        json.field("name", "resident KV bytes");
        json.field("pid", pid);
        json.field("ts", t.pass_start_s[i] * kMicroseconds);
        json.key("args");
        json.begin_object();
        json.field(t.tiers[0].tier, t.ledger[i].hbm_entries * entry_bytes);
        if (t.tiers.size() > 1) json.field(t.tiers[1].tier, t.ledger[i].lower_entries * entry_bytes);
        json.end_object();
        json.end_object();
      }
    }
    json.end_array();
    json.end_object();
  });
}

}  // namespace kvsim

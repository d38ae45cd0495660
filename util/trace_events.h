#pragma once
// Events of the Chrome / Perfetto trace format (chrome://tracing, ui.perfetto.dev) written through
// JsonWriter: the vocabulary of `kvsim run --timeline` for single requests and serving runs.
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>

#include "util/atomic_file.h"
#include "util/json.h"

namespace kvsim::trace_events {

constexpr double kMicroseconds = 1e6;  // the format's time unit

// Names a process (`what` = "process_name") or a thread ("thread_name").
inline void metadata(JsonWriter& json, const char* what, int pid, int tid, const std::string& name) {
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

// A slice on a thread's track, from start_s for duration_s.
inline void slice(JsonWriter& json, int pid, int tid, const std::string& name, double start_s, double duration_s) {
  json.begin_object();
  json.field("ph", "X");
  json.field("name", name);
  json.field("pid", pid);
  json.field("tid", tid);
  json.field("ts", start_s * kMicroseconds);
  json.field("dur", duration_s * kMicroseconds);
  json.end_object();
}

// Counter `name` of a process from time_s on, one series per (label, value).
inline void counter(JsonWriter& json, int pid, const std::string& name, double time_s,
                    std::initializer_list<std::pair<std::string, double>> series) {
  json.begin_object();
  json.field("ph", "C");
  json.field("name", name);
  json.field("pid", pid);
  json.field("ts", time_s * kMicroseconds);
  json.key("args");
  json.begin_object();
  for (const auto& [label, value] : series) json.field(label, value);
  json.end_object();
  json.end_object();
}

// Writes `path` (atomically) as a trace file whose event array `events` fills.
inline void write_trace_file(const std::string& path, const std::function<void(JsonWriter&)>& events) {
  write_file_atomically(path, [&](std::ostream& out) {
    JsonWriter json(out);
    json.begin_object();
    json.field("displayTimeUnit", "ms");
    json.key("traceEvents");
    json.begin_array();
    events(json);
    json.end_array();
    json.end_object();
  });
}

}  // namespace kvsim::trace_events

#pragma once
// HDF5 attention trace files, format version 1 (DESIGN.md §3).
#include <functional>
#include <memory>
#include <string>

#include "traces/trace.h"

namespace kvsim {

// Opens and validates the file's structure (root attributes, requests, layer groups, dataset
// shapes and types, query positions sorted and in range). Throws InputError naming the file and
// the dataset or attribute for anything wrong. Value checks (finite numbers) happen when a layer
// is loaded, before anything uses it.
std::unique_ptr<TraceSource> open_trace_file(const std::string& path);

// Reads every layer of every request and checks values too (finite, shapes). For `kvsim inspect`.
// `on_layer` is called after each layer is checked (progress output).
void validate_trace_file(const std::string& path,
                         const std::function<void(const std::string& request, int layer)>& on_layer = {});

struct TraceWriteOptions {
  bool float16 = false;  // store K/V/Q as float16 instead of float32
  int gzip_level = 0;    // 0: no compression
};

// Writes all requests and traced layers of `source` to `path` atomically (a temporary file in the
// same directory, renamed on success; removed on failure). `on_layer` reports progress.
void write_trace_file(const std::string& path, const TraceSource& source, const TraceWriteOptions& options,
                      const std::function<void(const std::string& request, int layer)>& on_layer = {});

}  // namespace kvsim

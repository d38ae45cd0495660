#pragma once
// Pieces shared by the trace file reader's translation units (not part of the public API).
#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "traces/trace.h"

namespace kvsim::detail {

// Where a layer group lives and what its datasets must agree with.
struct LayerContext {
  std::string file;        // path for messages
  std::string group_path;  // "/requests/<id>/layer_<L>"
  const ModelShape* model = nullptr;
  std::int64_t total_tokens = 0;  // prompt + generated
  std::int64_t prompt_tokens = 0;
  int layer = 0;
};

// The small parts of a layer group, checked: dataset kinds and shapes, query positions sorted and
// in range, needle heads and archetypes consistent with the model.
struct LayerLayout {
  std::int64_t num_queries = 0;
  std::int64_t num_recon_queries = 0;
  bool has_recon_queries = false;
  // Format 1.1 reconstruction passes (all three datasets or none; only with recon_queries).
  bool has_recon_passes = false;
  std::int64_t num_recon_keys = 0;  // R
  std::vector<ReconPass> recon_passes;
  std::vector<std::int64_t> recon_query_rows;
  std::vector<std::int64_t> query_positions;
  std::vector<int> needle_heads;
  std::vector<std::string> head_archetypes;
};

LayerLayout read_layer_layout(const H5::Group& group, const LayerContext& context);

// The whole layer, with every float checked finite. H5::Exception propagates to the caller.
LayerTrace read_layer(const H5::Group& group, const LayerContext& context);

// Reads and checks the root attributes and every request (including each layer's layout).
TraceHeader read_trace_header(const H5::H5File& file, const std::string& path);

}  // namespace kvsim::detail

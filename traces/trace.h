#pragma once
// In-memory form of an attention trace (DESIGN.md §3) and the interface every trace source
// (HDF5 file, on-the-fly synthesiser) implements.
#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "traces/model_shape.h"

namespace kvsim {

// [tokens, head_dim] for one head; rows are token positions.
using HeadMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A planted needle: token positions [begin, end), 0-based.
struct NeedleSpan {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

struct RequestInfo {
  std::string id;
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;
  std::vector<NeedleSpan> needles;  // synthetic traces only; empty otherwise

  std::int64_t total_tokens() const { return prompt_tokens + generated_tokens; }
};

struct TraceHeader {
  ModelShape model;
  std::string source;              // "recorded" or "synthetic"
  std::vector<int> traced_layers;  // sorted, each in [0, num_layers)
  std::vector<RequestInfo> requests;
  // Free-form generator parameters (synthetic files), written as root attributes.
  std::map<std::string, std::string> generator;
  std::uint64_t seed = 0;  // synthetic only
  // Format minor version (root attribute version_minor, absent = 0): minor versions add optional
  // data only, so every 1.x file is read. 1 added the reconstruction passes (LayerTrace::recon_passes).
  std::int64_t version_minor = 0;
  // Request id -> its traced layers that store recon_queries (sorted; absent: none), so a policy
  // that scores with them is refused before any layer is loaded. Derived from the layers, not
  // written as an attribute.
  std::map<std::string, std::vector<int>> recon_query_layers;
  // Likewise the layers that also store the reconstruction passes (recon_passes, recon_keys,
  // recon_query_rows; format 1.1), which KVzip's chunked scoring needs.
  std::map<std::string, std::vector<int>> recon_pass_layers;
  // Request id -> traced layer -> positions of its stored queries (sorted), likewise so that a
  // replay needing a query the file lacks is refused up front. Trace files only (empty for a
  // synthetic source, which stores every query its policies need).
  std::map<std::string, std::map<int, std::vector<std::int64_t>>> query_positions;
};

// One pass of a chunked context reconstruction (KVzip's self_task: the model re-reads one context
// chunk after a repeat prompt): it re-reads prompt positions [context_begin, context_end), and its
// own tokens (the repeat prompt, then the copy of the chunk) are recon_keys rows [key_begin, key_end).
struct ReconPass {
  std::int64_t context_begin = 0;
  std::int64_t context_end = 0;
  std::int64_t key_begin = 0;
  std::int64_t key_end = 0;
  bool operator==(const ReconPass&) const = default;
};

// One traced layer of one request.
struct LayerTrace {
  int layer = 0;
  std::vector<HeadMatrix> keys;               // [num_kv_heads] of [n+m, head_dim], post-RoPE
  std::vector<HeadMatrix> values;             // [num_kv_heads] of [n+m, head_dim]
  std::vector<HeadMatrix> queries;            // [num_q_heads] of [T_q, head_dim], post-RoPE
  std::vector<std::int64_t> query_positions;  // [T_q], sorted ascending, 0-based
  std::vector<HeadMatrix> recon_queries;      // [num_q_heads] of [T_r, head_dim]; empty if absent
  // Format 1.1, optional with recon_queries: the reconstruction passes, the post-RoPE keys of every
  // token of every pass ([num_kv_heads] of [R, head_dim], passes in order), and for each
  // recon_queries row the recon_keys row of its own token (sorted), which places it in its pass and
  // bounds its causal mask. All three empty if absent.
  std::vector<ReconPass> recon_passes;
  std::vector<HeadMatrix> recon_keys;
  std::vector<std::int64_t> recon_query_rows;  // [T_r]
  // Synthetic traces: KV heads whose queries attend to the planted needles (for needle retention),
  // and the archetype of each KV head ("sink", "local", "retrieval", "heavy_hitter", "diffuse").
  std::vector<int> needle_heads;
  std::vector<std::string> head_archetypes;
  // Where the layer came from, for messages: "<file>: /requests/<id>/layer_<L>" for a trace file;
  // empty for a synthesised layer.
  std::string origin;

  // Row index of `position` in `queries`, or -1 if that position was not stored.
  std::int64_t query_row(std::int64_t position) const;
  // `origin`, or "trace layer <L>" when it is empty: the start of an error about this layer's data.
  std::string where() const;
};

// A source of traces. load_layer may be slow (file I/O, generation); callers load one layer at a
// time so a long trace never needs all layers in memory. Implementations need not be thread-safe
// (HDF5 is not): the engine calls load_layer from one thread.
class TraceSource {
 public:
  virtual ~TraceSource() = default;
  virtual const TraceHeader& header() const = 0;
  // REQUIRES: request_id names a request of header(), layer is one of header().traced_layers.
  virtual LayerTrace load_layer(const std::string& request_id, int layer) const = 0;
};

}  // namespace kvsim

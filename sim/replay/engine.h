#pragma once
// Replays one request under a set of policies on the same trace and measures each (DESIGN.md §2).
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "policies/pass_plan.h"
#include "policies/policy.h"
#include "traces/trace.h"
#include "util/percentiles.h"

namespace kvsim {

struct Summary {  // mean and a tail percentile of per-query samples
  double mean = 0.0;
  double tail = 0.0;
};

struct PolicyResult {
  std::string spec;
  std::int64_t footprint_entry_steps = 0;   // sum over layers, KV heads and positions of V(t)
  double footprint_normalized = 0.0;        // footprint / (A(n+m) * layers * KV heads)
  std::int64_t peak_entries = 0;            // most entries resident during a pass, all layers and heads
  std::int64_t peak_bytes = 0;              // most bytes resident during a pass (precision-aware)
  double footprint_byte_steps = 0.0;        // sum_t bytes(V(t)); = footprint_entry_steps x entry bytes
                                            // unless the policy compresses (Policy::stored)
  double peak_normalized = 0.0;             // peak_entries / ((n+m) * layers * KV heads)
  std::optional<Summary> attention_recall;  // tail = 5th percentile
  std::optional<Summary> output_error;      // tail = 95th percentile
  std::optional<double> needle_retention;
  std::vector<std::int64_t> pass_entries;               // entries resident during each pass, all layers
  std::vector<std::int64_t> pass_entry_steps;           // sum of V(t) over each pass's queries, all layers
  std::vector<double> pass_bytes;                       // bytes resident during each pass, all layers
  std::map<int, std::vector<std::uint8_t>> kept_masks;  // traced layer -> [kv_heads][n+m], row-major
};

struct ReplayOptions {
  std::int64_t chunk_tokens = 0;  // 0: unchunked prefill
  int max_eval_queries = 64;      // decode positions used for fidelity, evenly spaced
  bool keep_masks = false;
  std::function<void(const std::string&)> progress;  // one line per layer, may be empty
};

// Replays `request` along `plan` (make_pass_plan of its lengths; options.chunk_tokens is not read).
// REQUIRES: policies non-empty; request is one of source.header().requests.
// Throws InputError if the trace lacks a query position a policy or the fidelity needs.
std::vector<PolicyResult> replay_request(const TraceSource& source, const RequestInfo& request, const PassPlan& plan,
                                         std::span<const Policy* const> policies, const ReplayOptions& options);
// The same along the plan of options.chunk_tokens.
std::vector<PolicyResult> replay_request(const TraceSource& source, const RequestInfo& request,
                                         std::span<const Policy* const> policies, const ReplayOptions& options);

// Positions of the evaluation queries: up to `max_queries` decode positions, evenly spaced,
// always including the first and the last.
std::vector<std::int64_t> evaluation_positions(const RequestInfo& request, int max_queries);

// The replay keeps, per layer and policy, a count per pass and the final kept set (untraced layers
// too): about layers x policies x (passes + tokens) words. Throws InputError("<where>: ...") when
// that exceeds memory (the --max-memory cap, else this machine's), before any of it is allocated.
// `where` names the file and key that set the layer count.
void check_replay_fits(const ModelShape& model, const RequestInfo& request, const PassPlan& plan,
                       std::size_t num_policies, const std::string& where);

}  // namespace kvsim

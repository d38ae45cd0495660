#pragma once
// Synthetic attention traces with realistic head behaviour (DESIGN.md §3, issue 3).
//
// Each KV head of each traced layer follows one archetype, mixed per layer by depth: attention
// sinks, local/recency heads, retrieval heads that attend sharply to planted needle spans,
// heavy-hitter heads and diffuse heads. The archetypes are not labels: keys and queries are built
// in pre-RoPE space so that softmax(Q·K/sqrt(d)) *has* the pattern after RoPE is applied, and the
// query heads of a GQA group share their KV head's keys and values.
//
// Every element is a pure function of (seed, layer, head, position, dim) (util/rng.h), so a layer,
// a head or a single query position can be generated alone and comes out identical.
#include <cstdint>
#include <memory>
#include <vector>

#include "traces/head_map.h"
#include "traces/trace.h"

namespace kvsim {

struct SynthParams {
  ModelShape model;
  std::int64_t prompt_tokens = 0;
  std::int64_t generated_tokens = 0;
  std::vector<int> traced_layers;  // empty: all layers
  std::uint64_t seed = 1;
  // Queries are stored for the last `query_window_tokens` prompt positions and every decode
  // position, plus `extra_query_positions` (e.g. the last window of every prefill chunk, which
  // chunked SnapKV scores with).
  std::int64_t query_window_tokens = 64;
  std::vector<std::int64_t> extra_query_positions;
  int num_needles = 2;
  std::int64_t needle_tokens = 16;
  // Tokens at the end of the prompt that act as the "question": retrieval heads attend to the
  // needles from these positions and from every decode position.
  std::int64_t question_tokens = 32;
  // Queries of a context-reconstruction pass (KVzip), stored as recon_queries when > 0:
  // T_r = min(recon_query_tokens, prompt_tokens) steps, step i re-reading prompt position
  // floor((2i+1)·n / (2·T_r)) (every position when T_r = n, else evenly strided). 0: none, and
  // the trace is byte-identical to one made without this field.
  std::int64_t recon_query_tokens = 0;
  // Measured per-head archetypes (traces/head_map.h) in place of the depth mix; null: depth mix.
  // Recorded in the trace as the root attribute gen_head_map (absent without one, so traces
  // made without a map keep their exact bytes).
  std::shared_ptr<const HeadMap> head_map;
};

// The T_r a scenario synthesises when a policy needs recon queries: a 32K-token prompt is re-read
// every 16th position, and one llama-3.1-8b layer's recon_queries are 32 MiB (float32).
inline constexpr std::int64_t kDefaultReconQueryTokens = 2048;

// The prompt positions the reconstruction steps re-read (see SynthParams::recon_query_tokens).
std::vector<std::int64_t> recon_target_positions(std::int64_t prompt_tokens, std::int64_t recon_query_tokens);

// Every field of `params` as one line (the model by model_shape_key, long position lists by count
// and hash): two parameter sets with the same key synthesise the same trace. Part of the key of the
// retention profile cache (sim/serving/profile_key.cpp); a new field of SynthParams must join it.
std::string synth_params_key(const SynthParams& params);

// Throws InputError (naming `where`) for impossible parameters.
void validate_synth_params(const SynthParams& params, const std::string& where);

// A TraceSource that generates layers on demand; one request, id "0".
std::unique_ptr<TraceSource> make_synthetic_source(const SynthParams& params);

}  // namespace kvsim

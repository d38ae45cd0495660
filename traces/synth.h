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
  // Queries of a chunked context-reconstruction pass (KVzip's self_task), stored as recon_queries
  // with its passes and keys (format 1.1) when > 0; 0: none, and the trace is byte-identical to
  // one made without this field. The context [kSinkTokens, n - question_tokens) is re-read in
  // passes of kReconChunkTokens; T_r = min(recon_query_tokens, context) queries are stored, query i
  // that of the copy of context position c_0 + floor((2i+1)·C / (2·T_r)) (C the context length).
  std::int64_t recon_query_tokens = 0;
  // Measured per-head archetypes (traces/head_map.h) in place of the depth mix; null: depth mix.
  // Recorded in the trace as the root attribute gen_head_map (absent without one, so traces
  // made without a map keep their exact bytes).
  std::shared_ptr<const HeadMap> head_map;
};

// The T_r a scenario synthesises when a policy needs recon queries: a 32K-token prompt is re-read
// every 16th position, and one llama-3.1-8b layer's recon_queries are 32 MiB (float32).
inline constexpr std::int64_t kDefaultReconQueryTokens = 2048;

// The context positions [begin, begin + context_tokens) whose copies' queries are stored (see
// SynthParams::recon_query_tokens): min(recon_query_tokens, context_tokens) centred strides.
std::vector<std::int64_t> recon_target_positions(std::int64_t context_tokens, std::int64_t recon_query_tokens,
                                                 std::int64_t begin = 0);

// KVzip's context chunk per reconstruction pass (snu-mllab/KVzip model/wrapper.py self_task,
// chunk_size=2000; kvpress uses 2048).
inline constexpr std::int64_t kReconChunkTokens = 2000;
// Tokens of a synthetic repeat prompt before the chunk's copy: KVzip's "\n\nRepeat the previous
// context exactly." and the chat template's postfix are about 16 Llama-3 tokens; later passes also
// repeat the previous chunk's last 8 ids (prev_postfix_size=8).
inline constexpr std::int64_t kReconPromptTokens = 16;
inline constexpr std::int64_t kReconPrevTokens = 8;

// The synthetic reconstruction: its passes, the RoPE position each recon_keys row is rotated to
// (the position a copy re-reads; a repeat prompt's token, its pass's first context position; a
// repeated previous-chunk id, that id's position), whether the row copies a context token, the
// context position each stored query re-reads and its recon_keys row.
struct SynthReconPlan {
  std::vector<ReconPass> passes;
  std::vector<std::int64_t> key_positions;  // [R]
  std::vector<std::int64_t> targets;        // [T_r]
  std::vector<std::int64_t> query_rows;     // [T_r]
};
SynthReconPlan synth_recon_plan(const SynthParams& params);

// Every field of `params` as one line (the model by model_shape_key, long position lists by count
// and hash): two parameter sets with the same key synthesise the same trace. Part of the key of the
// retention profile cache (sim/serving/profile_key.cpp); a new field of SynthParams must join it.
std::string synth_params_key(const SynthParams& params);

// Throws InputError (naming `where`) for impossible parameters.
void validate_synth_params(const SynthParams& params, const std::string& where);

// A TraceSource that generates layers on demand; one request, id "0".
std::unique_ptr<TraceSource> make_synthetic_source(const SynthParams& params);

}  // namespace kvsim

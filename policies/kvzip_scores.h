#pragma once
// KVzip's importance scores (Kim et al. 2025, arXiv 2505.23416): after the prompt, the model
// re-reads its context in a reconstruction pass; KV pair (h, j) scores the largest attention any
// reconstruction query of head h's GQA group pays to prompt position j.
//
// scoring=chunk (the original: snu-mllab/KVzip @5d84729 attention/score.py KVScore._get_score,
// model/wrapper.py ModelKVzip.scoring/self_task): each pass re-reads one context chunk
// [c_b, c_e) (trace recon_passes); its queries' softmax spans [sink keys 0..s | the chunk's keys |
// the pass's own keys (recon_keys), causal among themselves], and only the chunk's entries take
// a score from it. s = min(sinks, c_b): the original's chunks start at the system prompt's end,
// which is its sink count; a trace whose chunks start earlier has its overlap counted once.
// Prompt positions no pass re-reads score 0.
// scoring=whole (kvsim's earlier reading): the softmax spans every prompt key, no repeat keys,
// every reconstruction query scores every position.
#include <cstdint>
#include <memory>
#include <vector>

#include "traces/trace.h"

namespace kvsim {

enum class KvzipScoring { kChunk, kWhole };

struct KvzipScores {
  std::int64_t prompt_tokens = 0;
  std::vector<std::vector<float>> pair;  // [kv_head][prompt position]: max attention received
};

// Scores of one layer (computed in float32, parallel over KV heads and blocks of queries or
// passes; the result does not depend on the thread count). REQUIRES: trace.recon_queries holds
// num_q_heads matrices, and for kChunk the reconstruction passes (LayerTrace::recon_passes).
KvzipScores compute_kvzip_scores(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens,
                                 KvzipScoring scoring, std::int64_t sinks);

// compute_kvzip_scores, memoised: the scores are a pure function of the layer's keys, recon data
// and (scoring, sinks), and every kvzip policy of a run (several budgets, levels, eviction points)
// scores the same layer with them. A small process-wide cache keyed by a hash of that content (not
// by address) computes them once per layer; concurrent callers wait for the one computing.
std::shared_ptr<const KvzipScores> kvzip_scores(const LayerTrace& trace, const ModelShape& model,
                                                std::int64_t prompt_tokens, KvzipScoring scoring, std::int64_t sinks);

}  // namespace kvsim

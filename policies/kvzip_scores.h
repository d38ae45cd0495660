#pragma once
// KVzip's importance scores (Kim et al. 2025, arXiv 2505.23416; snu-mllab/KVzip
// attention/score.py KVScore._get_score): after the prompt, the model re-reads it in a
// context-reconstruction pass; KV pair (h, j) scores the largest attention any reconstruction
// query of head h's GQA group pays to prompt position j.
//
// kvsim's softmax spans every prompt key, without causal mask (the reconstruction pass comes after
// the whole prompt). KVzip computes it chunk by chunk over [sink keys | the 2K-token chunk being
// re-read | the repeat prompt's own keys]: the trace has neither the repeat prompt's keys nor which
// chunk a reconstruction query re-reads (DESIGN.md §3 stores only the queries), so each query's
// denominator here is the whole prompt.
#include <cstdint>
#include <memory>
#include <vector>

#include "traces/trace.h"

namespace kvsim {

struct KvzipScores {
  std::int64_t prompt_tokens = 0;
  std::vector<std::vector<float>> pair;  // [kv_head][prompt position]: max attention received
};

// Scores of one layer from trace.recon_queries (computed in float32: one GEMM per block of
// reconstruction queries, parallel over KV heads and blocks; the result does not depend on the
// thread count). REQUIRES: trace.recon_queries holds num_q_heads matrices.
KvzipScores compute_kvzip_scores(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens);

// compute_kvzip_scores, memoised: the scores are a pure function of the layer's keys and recon
// queries, and every kvzip policy of a run (several budgets, levels, eviction points) scores the
// same layer with them. A small process-wide cache keyed by a hash of that content (not by address)
// computes them once per layer; concurrent callers wait for the one computing.
std::shared_ptr<const KvzipScores> kvzip_scores(const LayerTrace& trace, const ModelShape& model,
                                                std::int64_t prompt_tokens);

}  // namespace kvsim

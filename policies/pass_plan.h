#pragma once
// The forward passes of one request: prefill in chunks of `chunk_tokens` (the last one may be
// shorter), then one pass per generated token (DESIGN.md §2).
#include <cstdint>
#include <vector>

namespace kvsim {

struct Pass {
  std::int64_t begin = 0;  // first position processed, 0-based
  std::int64_t end = 0;    // one past the last
  bool prefill = true;
  int index = 0;  // chunk index in prefill, step index in decode

  std::int64_t tokens() const { return end - begin; }
};

struct PassPlan {
  std::vector<Pass> passes;  // prefill chunks first, then decode steps
  int num_prefill = 0;
  std::int64_t chunk_tokens = 0;  // the prefill chunk size, resolved (the whole prompt when unchunked)

  std::int64_t prompt_tokens() const {
    return num_prefill > 0 ? passes[static_cast<std::size_t>(num_prefill) - 1].end : 0;
  }
  std::int64_t generated_tokens() const { return static_cast<std::int64_t>(passes.size()) - num_prefill; }
  const Pass* prefill_begin() const { return passes.data(); }
  const Pass* prefill_end() const { return passes.data() + num_prefill; }
};

// The prefill chunk size of a prompt: `chunk_tokens`, or the whole prompt when it is 0 (unchunked).
// The one place this rule lives.
inline std::int64_t resolved_chunk_tokens(std::int64_t chunk_tokens, std::int64_t prompt_tokens) {
  return chunk_tokens > 0 ? chunk_tokens : prompt_tokens;
}

// REQUIRES: prompt_tokens >= 1, generated_tokens >= 0, chunk_tokens >= 0 (0 or >= prompt: unchunked).
PassPlan make_pass_plan(std::int64_t prompt_tokens, std::int64_t generated_tokens, std::int64_t chunk_tokens);

}  // namespace kvsim

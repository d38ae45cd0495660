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
  int index = 0;           // chunk index in prefill, step index in decode

  std::int64_t tokens() const { return end - begin; }
};

struct PassPlan {
  std::vector<Pass> passes;  // prefill chunks first, then decode steps
  int num_prefill = 0;

  const Pass* prefill_begin() const { return passes.data(); }
  const Pass* prefill_end() const { return passes.data() + num_prefill; }
};

// REQUIRES: prompt_tokens >= 1, generated_tokens >= 0, chunk_tokens >= 1 (chunk >= prompt: unchunked).
PassPlan make_pass_plan(std::int64_t prompt_tokens, std::int64_t generated_tokens, std::int64_t chunk_tokens);

}  // namespace kvsim

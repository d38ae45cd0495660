#include "policies/pass_plan.h"

#include <algorithm>

namespace kvsim {

PassPlan make_pass_plan(std::int64_t prompt_tokens, std::int64_t generated_tokens, std::int64_t chunk_tokens) {
  PassPlan plan;
  chunk_tokens = resolved_chunk_tokens(chunk_tokens, prompt_tokens);
  plan.chunk_tokens = chunk_tokens;
  int index = 0;
  for (std::int64_t a = 0; a < prompt_tokens; a += chunk_tokens) {
    plan.passes.push_back({a, std::min(a + chunk_tokens, prompt_tokens), true, index++});
  }
  plan.num_prefill = static_cast<int>(plan.passes.size());
  for (std::int64_t s = 0; s < generated_tokens; ++s) {
    const std::int64_t t = prompt_tokens + s;
    plan.passes.push_back({t, t + 1, false, static_cast<int>(s)});
  }
  return plan;
}

}  // namespace kvsim

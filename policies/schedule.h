#pragma once
// Parameters shared by every policy: when it evicts (DESIGN.md §4 "when") and how big its budget is.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "policies/params.h"
#include "policies/policy.h"

namespace kvsim {

// Reads `prefill=none|post_fill|chunk` and `decode=none|step|every:K|length:K` (defaults: the
// policy's table); the canonical spec writes decode as none, step, every:K with K >= 2 or length:K.
// every:K evicts after decode steps K, 2K, ...; length:K after the step whose token lands at a
// position that is a multiple of K (R-KV's step_length rule, keyed to the sequence length).
EvictionPoints read_eviction_points(PolicyArgs& args);

// Reads `prefill=post_fill|chunk` for a policy that compresses instead of evicting (precision
// policies): once after the prompt, or each prefill chunk once it is done. It has no decode point.
PrefillEviction read_compression_point(PolicyArgs& args);

// The prompt spans such a policy compresses, one at a time and in order: the prefill chunks with
// prefill=chunk (a non-empty `prefill`), else the whole prompt as one span. The result is itself a
// valid `prefill` for Budget::capacity.
std::vector<Pass> compression_spans(const RequestInfo& request, std::span<const Pass> prefill, PrefillEviction mode);

// Index of the last span that ends within the first `count` positions (those spans are
// compressed), or -1 if none does yet. Spans cover the prompt, so any count >= the prompt gives
// the last one.
int last_compressed_span(std::span<const Pass> spans, std::int64_t count);

// A budget: a fraction b in (0, 1) of the prompt (plus the protected window), or a token count
// B >= 1 that includes the window (SnapKV's convention).
struct Budget {
  bool is_fraction = true;
  double fraction = 1.0;
  std::int64_t tokens = 0;

  // Reads `key` (default: the policy's table); the canonical spec writes format().
  static Budget read(PolicyArgs& args, const std::string& key);
  std::string format() const;

  // Capacity (entries per head) after the pass that just ran, per DESIGN.md §4:
  //  prefill=chunk, after chunk j:  sum_{i<=j} min(round(b*c_i) + w, c_i)   (round half to even)
  //  prefill=post_fill:             min(round(b*n) + w, n)
  //  decode (either):               the capacity at the end of prefill (a fixed-size cache)
  // An integer budget B gives min(B, prompt + generated) everywhere.
  std::int64_t capacity(const Pass& pass, std::span<const Pass> prefill, PrefillEviction mode,
                        std::int64_t window_tokens) const;
};

// Round half to even, the convention of the footprint paper's code (Python's round()).
std::int64_t round_half_even(double x);

}  // namespace kvsim

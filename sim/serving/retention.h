#pragma once
// How many KV entries a policy keeps resident over one request's life, as the serving simulator
// needs it (DESIGN.md §6): entries per (layer, KV head) after each pass, measured by replaying the
// policy on a trace (scores decide which entries stay, the policy's budget how many).
#include <cstdint>
#include <vector>

namespace kvsim {

// Resident entries per (layer, KV head), as a function of the tokens processed so far. Between
// eviction points every processed token adds one entry; at an eviction point (a knot) the policy
// shrinks the cache to `after`.
class RetentionCurve {
 public:
  struct Knot {
    std::int64_t position = 0;  // tokens processed when the policy evicted
    double after = 0;           // entries per (layer, KV head) left resident
  };

  RetentionCurve() = default;
  // REQUIRES: knots sorted by position, positions >= 1, after <= position.
  // `measured_until`: positions beyond it extrapolate with `decode_slope` entries per token.
  RetentionCurve(std::int64_t prompt_tokens, std::vector<Knot> knots, std::int64_t measured_until, double decode_slope);

  std::int64_t prompt_tokens() const { return prompt_tokens_; }
  const std::vector<Knot>& knots() const { return knots_; }
  std::int64_t measured_until() const { return measured_until_; }
  double decode_slope() const { return decode_slope_; }
  // True if the policy never evicted (every processed token stays resident).
  bool keeps_everything() const { return knots_.empty(); }

  // Resident entries after processing `position` tokens (after any eviction at that position).
  double resident_after(std::int64_t position) const;
  // The first eviction point strictly after `position`, or -1 if none is known: the scheduler does
  // not let one iteration cross it, so evictions happen where the policy puts them.
  std::int64_t next_knot_after(std::int64_t position) const;

  // Most entries resident at once while processing positions 1..`until` in passes that stop at
  // every knot: the value just before each eviction, and the value at `until`.
  double peak_resident(std::int64_t until) const;

  // The curve of a prompt of `prompt_tokens` from one measured at a nearby length (fast mode),
  // prefilled in chunks of `chunk_tokens` (0: unchunked): a policy that evicted after every chunk
  // evicts after each of the new prompt's chunks, one that evicted after the prompt after the new
  // one; the fraction kept follows the measured one at the same relative position in the prompt;
  // decode growth after prefill is kept as measured.
  RetentionCurve rescaled(std::int64_t prompt_tokens, std::int64_t chunk_tokens) const;

 private:
  std::int64_t prompt_tokens_ = 0;
  std::vector<Knot> knots_;
  std::int64_t measured_until_ = 0;
  double decode_slope_ = 1.0;
};

}  // namespace kvsim

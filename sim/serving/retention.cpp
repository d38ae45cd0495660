#include "sim/serving/retention.h"

#include <algorithm>
#include <cmath>

#include "policies/pass_plan.h"

namespace kvsim {

RetentionCurve::RetentionCurve(std::int64_t prompt_tokens, std::vector<Knot> knots, std::int64_t measured_until,
                               double decode_slope)
    : prompt_tokens_(prompt_tokens),
      knots_(std::move(knots)),
      measured_until_(measured_until),
      decode_slope_(decode_slope) {}

double RetentionCurve::resident_after(std::int64_t position) const {
  if (position <= measured_until_ || knots_.empty()) {
    const auto it = std::upper_bound(knots_.begin(), knots_.end(), position,
                                     [](std::int64_t p, const Knot& k) { return p < k.position; });
    if (it == knots_.begin()) return static_cast<double>(position);
    const Knot& k = *std::prev(it);
    return k.after + static_cast<double>(position - k.position);
  }
  return resident_after(measured_until_) + decode_slope_ * static_cast<double>(position - measured_until_);
}

std::int64_t RetentionCurve::next_knot_after(std::int64_t position) const {
  const auto it = std::upper_bound(knots_.begin(), knots_.end(), position,
                                   [](std::int64_t p, const Knot& k) { return p < k.position; });
  if (it != knots_.end()) return it->position;
  // Beyond the measured range a policy with a flat decode slope evicts at every step.
  if (position >= measured_until_ && decode_slope_ < 1.0 && !knots_.empty()) return position + 1;
  return -1;
}

double RetentionCurve::peak_resident(std::int64_t until) const {
  double peak = resident_after(until);
  // Past the measured range a flat curve still holds one extra entry during each decode pass.
  if (until > measured_until_ && decode_slope_ < 1.0) peak += 1.0;
  double previous_after = 0;
  std::int64_t previous_position = 0;
  for (const Knot& k : knots_) {
    if (k.position > until) break;
    peak = std::max(peak, previous_after + static_cast<double>(k.position - previous_position));
    previous_after = k.after;
    previous_position = k.position;
  }
  return peak;
}

RetentionCurve RetentionCurve::rescaled(std::int64_t prompt_tokens, std::int64_t chunk_tokens) const {
  if (prompt_tokens == prompt_tokens_) return *this;
  const double scale = static_cast<double>(prompt_tokens) / static_cast<double>(prompt_tokens_);
  std::vector<Knot> prefill, decode;
  for (const Knot& k : knots_) (k.position <= prompt_tokens_ ? prefill : decode).push_back(k);

  // Where the new prompt's evictions happen: at each of its own chunk ends if the policy evicted
  // after every chunk of the measured prompt, once at its end if only after the measured prompt,
  // otherwise at the measured positions scaled.
  auto chunk_ends = [chunk_tokens](std::int64_t prompt) {
    std::vector<std::int64_t> ends;
    const std::int64_t c = resolved_chunk_tokens(chunk_tokens, prompt);
    for (std::int64_t e = c; e < prompt; e += c) ends.push_back(e);
    ends.push_back(prompt);
    return ends;
  };
  std::vector<std::int64_t> measured;
  for (const Knot& k : prefill) measured.push_back(k.position);
  std::vector<std::int64_t> positions;
  if (!measured.empty() && measured == chunk_ends(prompt_tokens_)) {
    positions = chunk_ends(prompt_tokens);
  } else if (measured.size() == 1 && measured[0] == prompt_tokens_) {
    positions = {prompt_tokens};
  } else {
    for (const std::int64_t q : measured) {
      const std::int64_t p = std::clamp<std::int64_t>(std::llround(static_cast<double>(q) * scale), 1, prompt_tokens);
      if (positions.empty() || p > positions.back()) positions.push_back(p);
    }
  }
  // The fraction kept at an eviction, as a function of how far into the prompt it happens.
  auto kept_fraction = [&](double x) {
    auto at = [&](std::size_t i) { return prefill[i].after / static_cast<double>(prefill[i].position); };
    auto x_of = [&](std::size_t i) {
      return static_cast<double>(prefill[i].position) / static_cast<double>(prompt_tokens_);
    };
    if (x <= x_of(0)) return at(0);
    for (std::size_t i = 1; i < prefill.size(); ++i) {
      if (x <= x_of(i)) return at(i - 1) + (at(i) - at(i - 1)) * (x - x_of(i - 1)) / (x_of(i) - x_of(i - 1));
    }
    return at(prefill.size() - 1);
  };
  std::vector<Knot> knots;
  for (const std::int64_t p : positions) {
    const double x = static_cast<double>(p) / static_cast<double>(prompt_tokens);
    knots.push_back({p, std::min(static_cast<double>(p), kept_fraction(x) * static_cast<double>(p))});
  }
  // Decode keeps its measured growth relative to the end of prefill.
  const double prefill_end_measured = resident_after(prompt_tokens_);
  const RetentionCurve prefill_only(prompt_tokens, knots, prompt_tokens, 1.0);
  const double prefill_end = prefill_only.resident_after(prompt_tokens);
  const std::int64_t shift = prompt_tokens - prompt_tokens_;
  for (const Knot& k : decode) {
    const std::int64_t position = k.position + shift;
    knots.push_back(
        {position, std::min(static_cast<double>(position), prefill_end + (k.after - prefill_end_measured))});
  }
  return RetentionCurve(prompt_tokens, std::move(knots), measured_until_ + shift, decode_slope_);
}

}  // namespace kvsim

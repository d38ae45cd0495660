#include "policies/schedule.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "util/error.h"

namespace kvsim {

bool EvictionPoints::after(const Pass& pass, int num_prefill) const {
  if (pass.prefill) {
    if (prefill == PrefillEviction::kChunk) return true;
    return prefill == PrefillEviction::kPostFill && pass.index == num_prefill - 1;
  }
  if (decode_every <= 0) return false;
  if (decode_by_position) return pass.begin % decode_every == 0;
  return (pass.index + 1) % decode_every == 0;
}

namespace {

std::string decode_name(const EvictionPoints& points) {
  if (points.decode_by_position) return "length:" + std::to_string(points.decode_every);
  const int every = points.decode_every;
  return every == 0 ? "none" : every == 1 ? "step" : "every:" + std::to_string(every);
}

// K of `every:K` or `length:K` (decode.substr(skip)); 0 if it is not an integer >= 1.
int decode_period(const std::string& decode, std::size_t skip) {
  int k = 0;
  const char* begin = decode.data() + skip;
  const char* end = decode.data() + decode.size();
  const auto [ptr, ec] = std::from_chars(begin, end, k);
  return ec != std::errc() || ptr != end || k < 1 ? 0 : k;
}

}  // namespace

EvictionPoints read_eviction_points(PolicyArgs& args) {
  EvictionPoints points;
  const std::string prefill = args.get_choice("prefill", {"none", "post_fill", "chunk"});
  points.prefill = prefill == "none"        ? PrefillEviction::kNone
                   : prefill == "post_fill" ? PrefillEviction::kPostFill
                                            : PrefillEviction::kChunk;
  const std::string decode = args.get_string("decode");
  if (decode == "none") {
    points.decode_every = 0;
  } else if (decode == "step") {
    points.decode_every = 1;
  } else if (decode.rfind("every:", 0) == 0 || decode.rfind("length:", 0) == 0) {
    points.decode_by_position = decode[0] == 'l';
    points.decode_every = decode_period(decode, points.decode_by_position ? 7 : 6);
    if (points.decode_every == 0) {
      args.fail("decode", "expected none|step|every:K|length:K with K >= 1, got '" + decode + "'");
    }
  } else {
    args.fail("decode", "expected none|step|every:K|length:K, got '" + decode + "'");
  }
  args.set_canonical("decode", decode_name(points));
  return points;
}

PrefillEviction read_compression_point(PolicyArgs& args) {
  return args.get_choice("prefill", {"post_fill", "chunk"}) == "chunk" ? PrefillEviction::kChunk
                                                                       : PrefillEviction::kPostFill;
}

std::vector<Pass> compression_spans(const RequestInfo& request, std::span<const Pass> prefill, PrefillEviction mode) {
  if (mode == PrefillEviction::kChunk && !prefill.empty()) return {prefill.begin(), prefill.end()};
  return {Pass{0, request.prompt_tokens, true, 0}};
}

int last_compressed_span(std::span<const Pass> spans, std::int64_t count) {
  std::size_t done = 0;  // spans that end within `count`
  while (done < spans.size() && spans[done].end <= count) ++done;
  return static_cast<int>(done) - 1;
}

std::int64_t round_half_even(double x) {
  const double r = std::round(x);  // half away from zero
  if (std::abs(x - std::trunc(x)) == 0.5) return static_cast<std::int64_t>(2.0 * std::round(x / 2.0));
  return static_cast<std::int64_t>(r);
}

Budget Budget::read(PolicyArgs& args, const std::string& key) {
  Budget budget;
  const double value = args.get_double(key);
  if (!(value > 0.0)) args.fail(key, "must be > 0 (a fraction below 1 or a token count >= 1)");
  if (value < 1.0) {
    budget.fraction = value;
  } else {
    if (value != std::floor(value)) args.fail(key, "a budget >= 1 is a token count and must be an integer");
    // Beyond this no request exists, and the count must fit an integer (found by fuzz_policy_spec).
    if (value > static_cast<double>(kMaxSpecInteger)) args.fail(key, "a token budget must be at most 10^12");
    budget.is_fraction = false;
    budget.tokens = static_cast<std::int64_t>(value);
    args.note_token_budget(budget.tokens);
  }
  args.set_canonical(key, budget.format());
  return budget;
}

std::string Budget::format() const { return is_fraction ? format_spec_number(fraction) : std::to_string(tokens); }

std::int64_t Budget::capacity(const Pass& pass, std::span<const Pass> prefill, PrefillEviction mode,
                              std::int64_t window_tokens) const {
  const std::int64_t prompt = prefill.empty() ? 0 : prefill.back().end;
  if (!is_fraction) return tokens;
  auto chunk_capacity = [&](std::int64_t c) { return std::min(round_half_even(fraction * c) + window_tokens, c); };
  if (mode == PrefillEviction::kChunk) {
    const int last = pass.prefill ? pass.index : static_cast<int>(prefill.size()) - 1;
    std::int64_t total = 0;
    for (int i = 0; i <= last; ++i) total += chunk_capacity(prefill[i].tokens());
    return total;
  }
  return chunk_capacity(prompt);
}

}  // namespace kvsim

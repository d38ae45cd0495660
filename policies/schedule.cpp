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
  return decode_every > 0 && (pass.index + 1) % decode_every == 0;
}

namespace {

const char* prefill_name(PrefillEviction mode) {
  switch (mode) {
    case PrefillEviction::kNone: return "none";
    case PrefillEviction::kPostFill: return "post_fill";
    case PrefillEviction::kChunk: return "chunk";
  }
  return "none";
}

}  // namespace

EvictionPoints read_eviction_points(SpecArgs& args, EvictionPoints defaults) {
  EvictionPoints points = defaults;
  const std::string prefill =
      args.get_choice("prefill", prefill_name(defaults.prefill), {"none", "post_fill", "chunk"});
  points.prefill = prefill == "none"        ? PrefillEviction::kNone
                   : prefill == "post_fill" ? PrefillEviction::kPostFill
                                            : PrefillEviction::kChunk;
  const std::string decode = args.get_string("decode", "");
  if (decode == "none") {
    points.decode_every = 0;
  } else if (decode == "step") {
    points.decode_every = 1;
  } else if (decode.rfind("every:", 0) == 0) {
    int k = 0;
    const char* begin = decode.data() + 6;
    const char* end = decode.data() + decode.size();
    const auto [ptr, ec] = std::from_chars(begin, end, k);
    if (ec != std::errc() || ptr != end || k < 1) args.fail("decode", "expected none|step|every:K with K >= 1, got '" + decode + "'");
    points.decode_every = k;
  } else if (!decode.empty()) {
    args.fail("decode", "expected none|step|every:K, got '" + decode + "'");
  }
  return points;
}

std::string format_eviction_points(const EvictionPoints& points) {
  std::string decode = points.decode_every == 0   ? "none"
                       : points.decode_every == 1 ? "step"
                                                  : "every:" + std::to_string(points.decode_every);
  return std::string("prefill=") + prefill_name(points.prefill) + ", decode=" + decode;
}

PrefillEviction read_compression_point(SpecArgs& args, PrefillEviction default_mode) {
  const std::string mode = args.get_choice("prefill", prefill_name(default_mode), {"post_fill", "chunk"});
  return mode == "chunk" ? PrefillEviction::kChunk : PrefillEviction::kPostFill;
}

std::string format_compression_point(PrefillEviction mode) { return std::string("prefill=") + prefill_name(mode); }

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

Budget Budget::read(SpecArgs& args, const std::string& key, double default_fraction) {
  Budget budget;
  const double value = args.get_double(key, default_fraction);
  if (!(value > 0.0)) args.fail(key, "must be > 0 (a fraction below 1 or a token count >= 1)");
  if (value < 1.0) {
    budget.fraction = value;
  } else {
    if (value != std::floor(value)) args.fail(key, "a budget >= 1 is a token count and must be an integer");
    // Beyond this no request exists, and the count must fit an integer (found by fuzz_policy_spec).
    if (value > static_cast<double>(kMaxSpecInteger)) args.fail(key, "a token budget must be at most 10^12");
    budget.is_fraction = false;
    budget.tokens = static_cast<std::int64_t>(value);
  }
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

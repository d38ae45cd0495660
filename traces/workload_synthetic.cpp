// Synthetic workloads: Poisson or gamma (bursty) arrivals, lognormal prompt and output lengths.
//
// Determinism: every request draws from its own counter-based generator keyed by (seed, stream,
// request index), so request i is the same whatever the request count. Arrival times are summed
// in whole microseconds and lengths are whole tokens: a last-bit difference between two C
// libraries' log/exp/cos could only change a value that falls within ~1e-10 of a rounding boundary,
// so the same spec and seed give the identical workload on any platform in practice.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "traces/workload.h"
#include "traces/workload_random.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/spec_text.h"

namespace kvsim {

namespace {

constexpr const char* kForms = "poisson(rate=R, requests=N, ...) or gamma(rate=R, cv=C, requests=N, ...)";
constexpr double kMaxRate = 1e5;  // requests/s; arrivals are kept in microseconds
constexpr double kMaxCv = 10.0;
constexpr double kMaxSpanS = 1e10;  // 317 years: the microsecond sum stays far from overflow
constexpr double kMicrosPerSecond = 1e6;
constexpr double kMaxArrivalUs = 1e18;  // 1e12 s, well inside int64 microseconds
// Keys of the generator streams (any distinct constants; changing one changes every workload).
constexpr std::uint64_t kArrivalStream = 0xA7;
constexpr std::uint64_t kPromptStream = 0x9E;
constexpr std::uint64_t kOutputStream = 0x0D;

std::string unknown_text(const std::string& name) {
  return "unknown workload '" + name + "'; expected a file ending in .csv (Azure) or .jsonl (Mooncake), or " + kForms;
}

// 100000 rather than format_spec_number's 1e+05: bounds are read by people.
std::string bound_text(double x) {
  return x == std::floor(x) && std::abs(x) < 1e15 ? std::to_string(static_cast<std::int64_t>(x))
                                                  : format_spec_number(x);
}

// Typed, range-checked access to a workload spec's arguments; errors name the spec and the key.
class WorkloadSpec {
 public:
  WorkloadSpec(const std::string& text, const std::string& where)
      : context_(context(text, where)), spec_(parse(text, context_)) {}

  const std::string& name() const { return spec_.name(); }
  [[noreturn]] void fail(const std::string& what) const { fail_input(context_, what); }

  // A number in [lowest, highest] (lowest excluded when `open`); `fallback` when absent, or an
  // error when there is none.
  double number(const std::string& key, std::optional<double> fallback, double lowest, double highest,
                bool open = false) {
    const std::string* text = find(key);
    if (text == nullptr) {
      if (!fallback) fail("missing parameter '" + key + "' (expected " + kForms + ")");
      return *fallback;
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    const std::string range = (open ? "(" : "[") + bound_text(lowest) + ", " + bound_text(highest) + "]";
    if (ec != std::errc() || end != text->data() + text->size() || !std::isfinite(value) ||
        (open ? value <= lowest : value < lowest) || value > highest) {
      fail("parameter '" + key + "': expected a number in " + range + ", got '" + *text + "'");
    }
    return value;
  }

  std::int64_t integer(const std::string& key, std::optional<std::int64_t> fallback, std::int64_t lowest,
                       std::int64_t highest) {
    const std::string* text = find(key);
    if (text == nullptr) {
      if (!fallback) fail("missing parameter '" + key + "' (expected " + kForms + ")");
      return *fallback;
    }
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < lowest || value > highest) {
      fail("parameter '" + key + "': expected a whole number in [" + std::to_string(lowest) + ", " +
           std::to_string(highest) + "], got '" + *text + "'");
    }
    return value;
  }

  void finish() const {
    if (const std::string* key = spec_.first_unknown()) {
      fail("unknown parameter '" + *key + "' for " + spec_.name() + " (known: " + spec_.known_list() + ")");
    }
  }

 private:
  static std::string context(const std::string& text, const std::string& where) {
    return (where.empty() ? "" : where + ": ") + "workload spec '" + text + "'";
  }
  static SpecFields parse(const std::string& text, const std::string& context) {
    // A bare word that is not a name ("data/trace.json") is most likely a mistyped file.
    if (text.find('(') == std::string::npos) {
      try {
        return SpecFields(parse_spec(text, context));
      } catch (const InputError&) {
        fail_input(context, unknown_text(text));
      }
    }
    return SpecFields(parse_spec(text, context));
  }
  const std::string* find(const std::string& key) { return spec_.find(key); }

  std::string context_;
  SpecFields spec_;
};

struct LengthModel {
  double mean = 0;
  double cv = 0;
  std::int64_t max = 0;
};

LengthModel read_lengths(WorkloadSpec& spec, const std::string& prefix, double mean, std::int64_t max) {
  LengthModel m;
  m.mean = spec.number(prefix + "_mean", mean, 1, static_cast<double>(kMaxWorkloadTokens));
  m.cv = spec.number(prefix + "_cv", 1.0, 0, kMaxCv);
  m.max = spec.integer(prefix + "_max", max, 1, kMaxWorkloadTokens);
  if (m.mean > static_cast<double>(m.max)) {
    spec.fail(prefix + "_mean=" + format_spec_number(m.mean) + " is above " + prefix + "_max=" + std::to_string(m.max));
  }
  return m;
}

std::int64_t draw_length(const LengthModel& m, std::uint64_t key) {
  KeyedRng rng(key);
  const double x = std::min(workload_random::lognormal(rng, m.mean, m.cv), static_cast<double>(m.max));
  return std::clamp<std::int64_t>(std::llround(x), 1, m.max);
}

std::string lengths_text(const std::string& prefix, const LengthModel& m) {
  return ", " + prefix + "_mean=" + format_spec_number(m.mean) + ", " + prefix + "_cv=" + format_spec_number(m.cv) +
         ", " + prefix + "_max=" + std::to_string(m.max);
}

}  // namespace

Workload make_synthetic_workload(const std::string& text, std::uint64_t seed, const std::string& where,
                                 const WorkloadLimits& limits) {
  if (limits.max_requests < 0 || limits.max_prompt_tokens < 0) {
    throw std::invalid_argument("WorkloadLimits: max_requests and max_prompt_tokens must be >= 0");
  }
  WorkloadSpec spec(text, where);
  const bool bursty = spec.name() == "gamma";
  if (!bursty && spec.name() != "poisson") {
    spec.fail(unknown_text(spec.name()));
  }
  const double rate = spec.number("rate", std::nullopt, 0, kMaxRate, /*open=*/true);
  const double cv = bursty ? spec.number("cv", std::nullopt, 0, kMaxCv) : 1.0;
  std::int64_t requests = spec.integer("requests", std::nullopt, 1, kMaxSyntheticRequests);
  const LengthModel prompt = read_lengths(spec, "prompt", 1024, 8192);
  const LengthModel output = read_lengths(spec, "output", 200, 2048);
  spec.finish();
  if (static_cast<double>(requests) / rate > kMaxSpanS) {
    spec.fail("requests/rate = " + format_spec_number(static_cast<double>(requests) / rate) +
              " s is longer than 1e10 s; raise rate or lower requests");
  }
  if (limits.max_prompt_tokens > 0 && prompt.max > limits.max_prompt_tokens) {
    spec.fail("prompt_max=" + std::to_string(prompt.max) + " exceeds the limit of " +
              std::to_string(limits.max_prompt_tokens) + " prompt tokens");
  }
  // Request i does not depend on the count, so the first N of a longer spec are the spec with N.
  if (limits.max_requests > 0) requests = std::min(requests, limits.max_requests);

  Workload w;
  w.seed = seed;
  w.source = spec.name() + "(rate=" + format_spec_number(rate) + (bursty ? ", cv=" + format_spec_number(cv) : "") +
             ", requests=" + std::to_string(requests) + lengths_text("prompt", prompt) +
             lengths_text("output", output) + ")";
  w.requests.reserve(static_cast<std::size_t>(requests));
  const double mean_gap_s = 1.0 / rate;
  std::int64_t arrival_us = 0;
  for (std::int64_t i = 0; i < requests; ++i) {
    const auto index = static_cast<std::uint64_t>(i);
    if (i > 0) {
      KeyedRng rng(hash_key(seed, kArrivalStream, index));
      // Gamma with shape 1/cv^2 has mean shape * scale = 1/rate and coefficient of variation cv.
      const double gap_s = !bursty   ? workload_random::exponential(rng, mean_gap_s)
                           : cv == 0 ? mean_gap_s
                                     : workload_random::gamma(rng, 1.0 / (cv * cv), mean_gap_s * cv * cv);
      const double gap_us = std::round(gap_s * kMicrosPerSecond);
      // A heavy gamma tail can draw one gap far above the mean; refuse rather than overflow.
      if (gap_us > kMaxArrivalUs - static_cast<double>(arrival_us)) {
        spec.fail("request " + std::to_string(i) + " would arrive more than 1e12 s after the first; raise rate");
      }
      arrival_us += static_cast<std::int64_t>(gap_us);
    }
    WorkloadRequest r;
    r.id = i;
    r.arrival_s = static_cast<double>(arrival_us) / kMicrosPerSecond;
    r.prompt_tokens = draw_length(prompt, hash_key(seed, kPromptStream, index));
    r.output_tokens = draw_length(output, hash_key(seed, kOutputStream, index));
    w.requests.push_back(std::move(r));
  }
  return w;
}

}  // namespace kvsim

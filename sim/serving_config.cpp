#include "sim/serving_config.h"

#include <algorithm>
#include <string_view>

#include "policies/spec.h"
#include "util/error.h"
#include "util/strings.h"
#include "util/units.h"

namespace kvsim {

std::string Slo::spec() const {
  std::string out;
  if (ttft_s > 0) out += "ttft=" + format_spec_number(ttft_s) + "s";
  if (tpot_s > 0) out += std::string(out.empty() ? "" : ", ") + "tpot=" + format_spec_number(tpot_s) + "s";
  return out.empty() ? "none" : out;
}

std::string ServingConfig::preemption_spec() const {
  return preemption == Preemption::kRecompute ? "recompute" : "swap(tier=" + swap_tier + ")";
}

void parse_preemption(const std::string& text, const std::string& where, ServingConfig* config) {
  try {
    SpecArgs args(parse_spec(text, "preemption '" + text + "'"), "preemption");
    if (args.name() == "recompute") {
      config->preemption = ServingConfig::Preemption::kRecompute;
    } else if (args.name() == "swap") {
      config->preemption = ServingConfig::Preemption::kSwap;
      config->swap_tier = args.get_string("tier", "dram");
    } else {
      args.fail("", "unknown preemption '" + args.name() + "' (known: recompute, swap(tier=NAME))");
    }
    args.finish();
  } catch (const InputError& e) {
    fail_input(where, e.what());
  }
}

void parse_prefix_cache(const std::string& text, const std::string& where, ServingConfig* config) {
  std::vector<std::string> tiers;
  for (std::size_t start = 0;;) {
    const std::size_t plus = text.find('+', start);
    const std::string name(
        trim(std::string_view(text).substr(start, plus == std::string::npos ? std::string::npos : plus - start)));
    if (name.empty() || name.find_first_of(" \t,()=") != std::string::npos) {
      fail_input(where, "expected tier names joined by '+', the compute tier first (e.g. hbm or hbm+dram), got '" +
                            text + "'");
    }
    if (std::find(tiers.begin(), tiers.end(), name) != tiers.end())
      fail_input(where, "tier '" + name + "' is listed twice");
    tiers.push_back(name);
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  config->prefix_cache_lower_tiers.assign(tiers.begin() + 1, tiers.end());
  config->prefix_cache_compute_tier = tiers.front();
}

std::string ServingConfig::prefix_cache_spec(const std::string& compute_tier) const {
  std::string spec = compute_tier;
  for (const std::string& tier : prefix_cache_lower_tiers) spec += "+" + tier;
  return spec;
}

Slo parse_slo(const std::string& text, const std::string& where) {
  Slo slo;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    const auto first = item.find_first_not_of(" \t");
    const auto last = item.find_last_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    start = comma + 1;
    if (item.empty()) {
      if (comma == text.size()) break;
      fail_input(where, "empty item in '" + text + "' (expected e.g. ttft_p99=2s, tpot_p99=100ms)");
    }
    const auto eq = item.find('=');
    if (eq == std::string::npos) fail_input(where, "expected KEY=TIME, got '" + item + "'");
    std::string key = item.substr(0, eq);
    while (!key.empty() && key.back() == ' ') key.pop_back();
    const double seconds = parse_quantity(item.substr(eq + 1), UnitKind::kSeconds, where + " " + key);
    if (!(seconds > 0)) fail_input(where + " " + key, "must be > 0");
    if (key == "ttft" || key == "ttft_p99") {
      slo.ttft_s = seconds;
    } else if (key == "tpot" || key == "tpot_p99") {
      slo.tpot_s = seconds;
    } else {
      fail_input(where, "unknown SLO '" + key + "' (known: ttft_p99, tpot_p99)");
    }
  }
  if (!slo.any()) fail_input(where, "no bound given (expected e.g. ttft_p99=2s, tpot_p99=100ms)");
  return slo;
}

}  // namespace kvsim

#include "policies/spec.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "util/error.h"

namespace kvsim {

ParsedSpec parse_policy_spec(std::string_view text) {
  return parse_spec(text, "policy spec '" + std::string(text) + "'");
}

SpecArgs::SpecArgs(ParsedSpec spec, std::string label) : spec_(std::move(spec)), label_(std::move(label)) {}

void SpecArgs::fail(const std::string& key, const std::string& what) const {
  std::string text = spec_.name + "(";
  for (std::size_t i = 0; i < spec_.args.size(); ++i) {
    text += (i ? ", " : "") + spec_.args[i].first + "=" + spec_.args[i].second;
  }
  fail_input(label_ + " '" + text + ")'", key.empty() ? what : "parameter '" + key + "': " + what);
}

const std::string* SpecArgs::find(const std::string& key) {
  known_.insert(key);
  for (const auto& [k, v] : spec_.args) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool SpecArgs::has(const std::string& key) const {
  for (const auto& [k, v] : spec_.args) {
    if (k == key) return true;
  }
  return false;
}

double SpecArgs::get_double(const std::string& key, double default_value) {
  const std::string* text = find(key);
  if (text == nullptr) return default_value;
  double value = 0.0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || !std::isfinite(value)) {
    fail(key, "expected a number, got '" + *text + "'");
  }
  return value;
}

std::int64_t SpecArgs::get_int(const std::string& key, std::int64_t default_value) {
  const std::string* text = find(key);
  if (text == nullptr) return default_value;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) fail(key, "expected an integer, got '" + *text + "'");
  // No count a policy takes (tokens, heads, steps) comes near this; the bound keeps the sums and
  // products the policies form from it (window + budget, K x steps) from overflowing int64.
  if (value > kMaxSpecInteger || value < -kMaxSpecInteger) {
    fail(key, "expected an integer of magnitude at most 10^12, got '" + *text + "'");
  }
  return value;
}

std::string SpecArgs::get_string(const std::string& key, const std::string& default_value) {
  const std::string* text = find(key);
  return text == nullptr ? default_value : *text;
}

std::string SpecArgs::get_choice(const std::string& key, const std::string& default_value,
                                 const std::vector<std::string>& choices) {
  const std::string* text = find(key);
  if (text == nullptr) return default_value;
  for (const auto& c : choices) {
    if (*text == c) return c;
  }
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  fail(key, "expected one of " + list + ", got '" + *text + "'");
}

void SpecArgs::finish() const {
  for (const auto& [k, v] : spec_.args) {
    if (known_.count(k) == 0) {
      std::string list;
      for (const auto& name : known_) list += (list.empty() ? "" : ", ") + name;
      fail(k, "unknown parameter for '" + spec_.name + "' (known: " + (list.empty() ? "none" : list) + ")");
    }
  }
}

}  // namespace kvsim

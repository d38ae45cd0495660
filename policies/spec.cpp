#include "policies/spec.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "util/error.h"

namespace kvsim {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_identifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace

std::string format_spec_number(double x) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, x);
  return std::string(buffer, end);
}

ParsedSpec parse_policy_spec(std::string_view text) {
  const std::string where = "policy spec '" + std::string(text) + "'";
  const std::string_view s = trim(text);
  ParsedSpec spec;
  const auto open = s.find('(');
  if (open == std::string_view::npos) {
    if (!is_identifier(s)) fail_input(where, "expected name or name(key=value, ...)");
    spec.name = std::string(s);
    return spec;
  }
  if (s.back() != ')') fail_input(where, "missing closing ')'");
  spec.name = std::string(trim(s.substr(0, open)));
  if (!is_identifier(spec.name)) fail_input(where, "expected a policy name before '('");
  std::string_view body = s.substr(open + 1, s.size() - open - 2);
  if (body.find_first_of("()") != std::string_view::npos) fail_input(where, "nested parentheses are not allowed");
  if (trim(body).empty()) return spec;
  while (true) {
    const auto comma = body.find(',');
    const std::string_view item = trim(body.substr(0, comma));
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) fail_input(where, "expected key=value, got '" + std::string(item) + "'");
    const std::string key(trim(item.substr(0, eq)));
    const std::string value(trim(item.substr(eq + 1)));
    if (!is_identifier(key)) fail_input(where, "bad parameter name '" + key + "'");
    if (value.empty()) fail_input(where, "parameter '" + key + "' has no value");
    for (const auto& [k, v] : spec.args) {
      if (k == key) fail_input(where, "parameter '" + key + "' given twice");
    }
    spec.args.emplace_back(key, value);
    if (comma == std::string_view::npos) break;
    body = body.substr(comma + 1);
  }
  return spec;
}

SpecArgs::SpecArgs(ParsedSpec spec) : spec_(std::move(spec)) {}

void SpecArgs::fail(const std::string& key, const std::string& what) const {
  std::string text = spec_.name + "(";
  for (std::size_t i = 0; i < spec_.args.size(); ++i) {
    text += (i ? ", " : "") + spec_.args[i].first + "=" + spec_.args[i].second;
  }
  fail_input("policy spec '" + text + ")'", key.empty() ? what : "parameter '" + key + "': " + what);
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

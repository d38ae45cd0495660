#include "util/spec_text.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "util/error.h"
#include "util/strings.h"

namespace kvsim {

namespace {

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

ParsedSpec parse_spec(std::string_view text, const std::string& where) {
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
  if (!is_identifier(spec.name)) fail_input(where, "expected a name before '('");
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

const std::string* SpecFields::find(const std::string& key) {
  const auto at = std::lower_bound(known_.begin(), known_.end(), key);
  if (at == known_.end() || *at != key) known_.insert(at, key);
  for (const auto& [k, v] : spec_.args) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool SpecFields::has(const std::string& key) const {
  return std::any_of(spec_.args.begin(), spec_.args.end(), [&](const auto& kv) { return kv.first == key; });
}

const std::string* SpecFields::first_unknown() const {
  for (const auto& [k, v] : spec_.args) {
    if (!std::binary_search(known_.begin(), known_.end(), k)) return &k;
  }
  return nullptr;
}

std::string SpecFields::known_list() const {
  std::string list;
  for (const auto& k : known_) list += (list.empty() ? "" : ", ") + k;
  return list;
}

}  // namespace kvsim

#include "policies/params.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>

namespace kvsim {

namespace {

const PolicyParam* find_param(std::span<const PolicyParam> table, const std::string& key) {
  for (const PolicyParam& p : table) {
    if (p.name == key) return &p;
  }
  return nullptr;
}

// A table default parsed as a T; a default that does not parse is a bug in the table.
template <typename T>
T parse_default(const std::string& policy, const PolicyParam& param, const std::string& text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw std::logic_error("policy '" + policy + "': the default '" + text + "' of parameter '" + param.name +
                           "' is not a number of the type its getter reads");
  }
  return value;
}

}  // namespace

std::string documented_default(const PolicyParam& param, std::span<const PolicyParam> table) {
  if (param.default_value.empty()) return "(none)";
  if (param.default_if.empty()) return param.default_value;
  const PolicyParam* other = find_param(table, param.default_if.front().key);
  std::string text = param.default_value + " (" + (other ? other->default_value : std::string("?")) + ")";
  for (const ParamDefaultIf& d : param.default_if) text += ", " + d.default_value + " (" + d.value + ")";
  return text;
}

std::string format_printf_g(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", x);
  return text;
}

PolicyArgs::PolicyArgs(SpecArgs args, std::span<const PolicyParam> table) : args_(std::move(args)), table_(table) {}

const PolicyParam& PolicyArgs::param(const std::string& key) const {
  const PolicyParam* p = find_param(table_, key);
  if (p == nullptr) {
    throw std::logic_error("policy '" + name() + "' reads parameter '" + key + "', which its parameter table lacks");
  }
  return *p;
}

std::string PolicyArgs::default_text(const PolicyParam& p) const {
  for (const ParamDefaultIf& d : p.default_if) {
    const auto other = canonical_.find(d.key);
    if (other == canonical_.end()) {
      throw std::logic_error("policy '" + name() + "': the default of '" + p.name + "' depends on '" + d.key +
                             "', which must be read first");
    }
    if (other->second == d.value) return d.default_value;
  }
  return p.default_value;
}

std::int64_t PolicyArgs::get_int(const std::string& key) {
  const PolicyParam& p = param(key);
  const std::int64_t value = args_.get_int(key, parse_default<std::int64_t>(name(), p, default_text(p)));
  canonical_[key] = std::to_string(value);
  return value;
}

double PolicyArgs::get_double(const std::string& key) {
  const PolicyParam& p = param(key);
  const double value = args_.get_double(key, parse_default<double>(name(), p, default_text(p)));
  canonical_[key] = format_spec_number(value);
  return value;
}

std::string PolicyArgs::get_choice(const std::string& key, const std::vector<std::string>& choices) {
  const PolicyParam& p = param(key);
  const std::string default_value = default_text(p);
  if (std::find(choices.begin(), choices.end(), default_value) == choices.end()) {
    throw std::logic_error("policy '" + name() + "': the default '" + default_value + "' of parameter '" + key +
                           "' is not one of its choices");
  }
  std::string value = args_.get_choice(key, default_value, choices);
  canonical_[key] = value;
  return value;
}

std::string PolicyArgs::get_string(const std::string& key) {
  const PolicyParam& p = param(key);
  std::string value = args_.get_string(key, default_text(p));
  canonical_[key] = value;
  return value;
}

void PolicyArgs::set_canonical(const std::string& key, std::string text) {
  const auto it = canonical_.find(key);
  if (it == canonical_.end()) {
    throw std::logic_error("policy '" + name() + "': set_canonical('" + key + "') before reading it");
  }
  it->second = std::move(text);
}

std::string PolicyArgs::canonical() const {
  std::string list;
  for (const PolicyParam& p : table_) {
    const auto it = canonical_.find(p.name);
    if (it == canonical_.end()) {
      throw std::logic_error("policy '" + name() + "': parameter '" + p.name + "' is in its table but never read");
    }
    if (!it->second.empty()) list += (list.empty() ? "" : ", ") + p.name + "=" + it->second;
  }
  return list.empty() ? name() : name() + "(" + list + ")";
}

}  // namespace kvsim

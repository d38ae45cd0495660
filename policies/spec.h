#pragma once
// Policy specs (DESIGN.md §4): the spec text of util/spec_text.h, read with typed, checked access.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/spec_text.h"

namespace kvsim {

// Throws InputError("policy spec '<text>': ...") on malformed text or a repeated key.
ParsedSpec parse_policy_spec(std::string_view text);

// Largest magnitude get_int accepts (and Budget's token counts): 10^12.
inline constexpr std::int64_t kMaxSpecInteger = 1'000'000'000'000;

// Typed access to a spec's arguments. Every get_* marks a key as used; finish() rejects keys that
// no get_* asked for, listing the known ones, so a typo never silently falls back to a default.
class SpecArgs {
 public:
  // `label` names the kind of spec in errors: "<label> 'name(k=v)': parameter 'k': ...".
  explicit SpecArgs(ParsedSpec spec, std::string label = "policy spec");

  const std::string& name() const { return spec_.name; }
  double get_double(const std::string& key, double default_value);
  std::int64_t get_int(const std::string& key, std::int64_t default_value);
  std::string get_choice(const std::string& key, const std::string& default_value,
                         const std::vector<std::string>& choices);
  std::string get_string(const std::string& key, const std::string& default_value);
  bool has(const std::string& key) const;
  void finish() const;
  // Error naming the spec and the key.
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  const std::string* find(const std::string& key);
  ParsedSpec spec_;
  std::set<std::string> known_;
  std::string label_;
};

}  // namespace kvsim

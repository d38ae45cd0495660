#pragma once
// Policy spec strings: `name(key=value, key=value)` or just `name` (DESIGN.md §4).
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

struct ParsedSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> args;  // in order written
};

// A number as canonical specs write it: the shortest text that reads back to the same double
// (0.2, 0.125, 1e-05), so a spec printed by kvsim names exactly the value it ran with.
std::string format_spec_number(double x);

// Throws InputError("policy spec '<text>': ...") on malformed text or a repeated key.
ParsedSpec parse_policy_spec(std::string_view text);

// Largest magnitude get_int accepts (and Budget's token counts): 10^12.
inline constexpr std::int64_t kMaxSpecInteger = 1'000'000'000'000;

// Typed access to a spec's arguments. Every get_* marks a key as used; finish() rejects keys that
// no get_* asked for, listing the known ones, so a typo never silently falls back to a default.
class SpecArgs {
 public:
  explicit SpecArgs(ParsedSpec spec);

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
};

}  // namespace kvsim

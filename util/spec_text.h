#pragma once
// Spec strings: `name(key=value, key=value)` or just `name`. Policies (DESIGN.md §4), placements,
// preemption modes and synthetic workloads are all written this way; each caller names its kind of
// spec in the errors.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvsim {

struct ParsedSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> args;  // in order written
};

// Throws InputError("<context>: ...") on malformed text or a repeated key, where `context` says
// what is parsed, e.g. "policy spec 'snapkv(budget=)'".
ParsedSpec parse_spec(std::string_view text, const std::string& context);

// A parsed spec whose keys are each read once: find() marks a key as asked for, so that the keys
// nobody asked for can be refused (a typo never silently falls back to a default).
class SpecFields {
 public:
  explicit SpecFields(ParsedSpec spec) : spec_(std::move(spec)) {}

  const std::string& name() const { return spec_.name; }
  const ParsedSpec& parsed() const { return spec_; }
  // The value written for `key`, or null; either way `key` is known from now on.
  const std::string* find(const std::string& key);
  bool has(const std::string& key) const;
  // The first key written that no find() asked for, or null.
  const std::string* first_unknown() const;
  // The keys asked for so far, sorted, comma-separated.
  std::string known_list() const;

 private:
  ParsedSpec spec_;
  std::vector<std::string> known_;  // sorted
};

// A number as canonical specs write it: the shortest text that reads back to the same double
// (0.2, 0.125, 1e-05), so a spec printed by kvsim names exactly the value it ran with.
std::string format_spec_number(double x);

}  // namespace kvsim

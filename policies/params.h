#pragma once
// A policy's parameters, each declared once (issue 16 §4): one table row per parameter (name,
// default, help) feeds
//  - the docs: `kvsim policies` prints the table;
//  - the parsing: PolicyArgs' getters take each default from the table, never from a literal;
//  - the canonical spec: PolicyArgs records the canonical text of every value it read and
//    canonical() writes `name(key=value, ...)` in table order; the policy returns that as spec().
// A getter for a key that is not in the table, or a table row that no getter read, is a bug
// (std::logic_error), so the table and the parser cannot drift apart.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "policies/spec.h"

namespace kvsim {

// A default that applies while a parameter read earlier has a given value (kvzip: budget 0.6 with
// level=head).
struct ParamDefaultIf {
  std::string key;    // the other parameter
  std::string value;  // its canonical text
  std::string default_value;
};

struct PolicyParam {
  std::string name;
  // Canonical text, as the spec prints it (0.2, 1024, every:128). Empty: absent unless given, and
  // then left out of the canonical spec (headmask's mask=PATH).
  std::string default_value;
  std::string help;
  std::vector<ParamDefaultIf> default_if = {};
};

// The default as `kvsim policies` prints it: "0.2"; "(none)" for an empty default; with
// default_if, each value followed by the other parameter's value it holds for:
// "0.3 (token), 0.6 (head)".
std::string documented_default(const PolicyParam& param, std::span<const PolicyParam> table);

// The text printf's %g gives (6 significant digits), which some canonical specs have always
// printed (lava floor_alpha, compactor blending); new parameters use
// format_spec_number, which reads back to the same double.
std::string format_printf_g(double x);

// A spec's arguments read against the policy's parameter table. The getters behave as SpecArgs'
// (same parsing and error text), their default being the table's.
class PolicyArgs {
 public:
  PolicyArgs(SpecArgs args, std::span<const PolicyParam> table);

  const std::string& name() const { return args_.name(); }
  std::int64_t get_int(const std::string& key);
  double get_double(const std::string& key);
  std::string get_choice(const std::string& key, const std::vector<std::string>& choices);
  std::string get_string(const std::string& key);
  bool has(const std::string& key) const { return args_.has(key); }

  // How the canonical spec writes `key` (already read), where that is not the text read: a value
  // the policy normalises (decode=every:1 is step, prompt_queries=010 is 10). Empty: left out
  // (a parameter that does not apply to this configuration).
  void set_canonical(const std::string& key, std::string text);
  // `name(key=value, ...)` with every table row in table order (just `name` without any).
  std::string canonical() const;

  // A token budget read by Budget::read (0: a fraction or none), for Policy::token_budget().
  void note_token_budget(std::int64_t tokens) { token_budget_ = tokens; }
  std::int64_t token_budget() const { return token_budget_; }

  void finish() const { args_.finish(); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const { args_.fail(key, what); }

 private:
  // The table row of `key` and its default text here (default_if applied).
  const PolicyParam& param(const std::string& key) const;
  std::string default_text(const PolicyParam& param) const;

  SpecArgs args_;
  std::span<const PolicyParam> table_;
  std::map<std::string, std::string> canonical_;  // key -> canonical text of the value read
  std::int64_t token_budget_ = 0;
};

}  // namespace kvsim

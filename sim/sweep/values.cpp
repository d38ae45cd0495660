#include "sim/sweep/values.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <set>

#include "util/error.h"
#include "util/strings.h"

namespace kvsim {

namespace {

// A typo such as 1..1e9 +1 must not eat the machine.
constexpr std::size_t kMaxValues = 100000;

constexpr const char* kRangeForms =
    "expected A..B +STEP (arithmetic), A..B xFACTOR (geometric) or A..B (integers, step 1)";

bool is_integer_literal(std::string_view s) {
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  if (s.empty()) return false;
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool parse_integer(std::string_view s, std::int64_t& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool parse_real(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(out);
}

// 12 significant digits: enough for any value a user types, few enough to hide the rounding of
// start + i * step (0.30000000000000004 prints 0.3).
std::string format_real(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.12g", x);
  const std::string text = buffer;
  return text == "-0" ? "0" : text;
}

std::vector<std::string> integer_range(std::int64_t from, std::int64_t to, char op, std::int64_t step,
                                       const std::string& bad) {
  std::vector<std::string> values;
  if (from > to) fail_input(bad, "the start is above the end (ranges go upwards)");
  if (op == '+') {
    if (step < 1) fail_input(bad, "the step must be > 0");
    for (std::int64_t v = from;; v += step) {
      values.push_back(std::to_string(v));
      if (values.size() > kMaxValues) fail_input(bad, "more than " + std::to_string(kMaxValues) + " values");
      if (to - v < step) break;  // the next value would pass the end (written so it cannot overflow)
    }
  } else {
    if (step < 2) fail_input(bad, "the factor must be > 1");
    if (from < 1) fail_input(bad, "a geometric range must start above 0");
    for (std::int64_t v = from;; v *= step) {
      values.push_back(std::to_string(v));
      if (v > to / step) break;
    }
  }
  return values;
}

std::vector<std::string> real_range(double from, double to, char op, double step, const std::string& bad) {
  std::vector<std::string> values;
  if (from > to) fail_input(bad, "the start is above the end (ranges go upwards)");
  if (op == '+') {
    if (!(step > 0)) fail_input(bad, "the step must be > 0");
    // Each value from the start, never by accumulation, so the error does not grow with i.
    const double count = std::floor((to - from) / step + 1e-9) + 1;
    if (count > static_cast<double>(kMaxValues)) fail_input(bad, "more than " + std::to_string(kMaxValues) + " values");
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(count); ++i) {
      values.push_back(format_real(from + static_cast<double>(i) * step));
    }
  } else {
    if (!(step > 1)) fail_input(bad, "the factor must be > 1");
    if (!(from > 0)) fail_input(bad, "a geometric range must start above 0");
    for (int i = 0;; ++i) {
      const double v = from * std::pow(step, i);
      if (v > to * (1 + 1e-9)) break;
      values.push_back(format_real(v));
      if (values.size() > kMaxValues) fail_input(bad, "more than " + std::to_string(kMaxValues) + " values");
    }
  }
  return values;
}

}  // namespace

std::vector<std::string> split_top_level(std::string_view text, const std::string& where) {
  std::vector<std::string> items;
  if (trim(text).empty()) return {std::string()};
  int depth = 0;
  bool quoted = false;
  std::size_t start = 0;
  auto push = [&](std::size_t end) {
    const std::string_view item = trim(text.substr(start, end - start));
    if (item.empty()) fail_input(where, "empty item in the list '" + std::string(trim(text)) + "'");
    items.emplace_back(item);
    start = end + 1;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      quoted = c != '"';
    } else if (c == '"') {
      quoted = true;
    } else if (c == '(' || c == '[' || c == '{') {
      ++depth;
    } else if (c == ')' || c == ']' || c == '}') {
      // Unbalanced text is left whole: the scenario's own parser names the problem precisely.
      if (depth > 0) --depth;
    } else if (c == ',' && depth == 0) {
      push(i);
    }
  }
  if (quoted) fail_input(where, "unterminated quote in '" + std::string(trim(text)) + "'");
  push(text.size());
  return items;
}

std::vector<std::string> expand_item(std::string_view item, const std::string& where) {
  item = trim(item);
  if (!item.empty() && item.front() == '"') {
    const std::string_view inner = item.size() >= 2 && item.back() == '"' ? item.substr(1, item.size() - 2) : "\"";
    if (inner.find('"') != std::string_view::npos) {
      fail_input(where, "bad quoted value " + std::string(item) + "; expected \"text\" (no quotes inside)");
    }
    return {std::string(inner)};
  }
  // A range starts with a number and '..'; a path such as ../traces/a.h5 does not.
  const auto dots = item.find("..");
  double number = 0;
  if (dots == std::string_view::npos || !parse_real(trim(item.substr(0, dots)), number)) return {std::string(item)};

  const std::string bad = where + ": bad range '" + std::string(item) + "'";
  const std::string_view from_text = trim(item.substr(0, dots));
  std::string_view rest = trim(item.substr(dots + 2));
  const auto space = rest.find_first_of(" \t");
  const std::string_view to_text = rest.substr(0, space);
  const std::string_view step_text = space == std::string_view::npos ? "" : trim(rest.substr(space));
  char op = '+';
  std::string_view amount = "1";
  if (!step_text.empty()) {
    op = step_text.front();
    amount = trim(step_text.substr(1));
    if (op != '+' && op != 'x') fail_input(bad, kRangeForms);
  }
  const bool integers = is_integer_literal(from_text) && is_integer_literal(to_text) && is_integer_literal(amount);
  if (step_text.empty() && !integers)
    fail_input(bad, "a range of non-integers needs a step; " + std::string(kRangeForms));
  if (integers) {
    std::int64_t from = 0, to = 0, step = 0;
    if (!parse_integer(from_text, from) || !parse_integer(to_text, to) || !parse_integer(amount, step)) {
      fail_input(bad, "a number is out of range for a 64-bit integer");
    }
    return integer_range(from, to, op, step, bad);
  }
  double from = 0, to = 0, step = 0;
  if (!parse_real(from_text, from) || !parse_real(to_text, to) || !parse_real(amount, step))
    fail_input(bad, kRangeForms);
  return real_range(from, to, op, step, bad);
}

std::vector<std::string> expand_list(std::string_view text, const std::string& where) {
  std::vector<std::string> values;
  std::set<std::string> seen;
  for (const std::string& item : split_top_level(text, where)) {
    for (std::string& value : expand_item(item, where)) {
      if (!seen.insert(value).second) fail_input(where, "value '" + value + "' is listed twice");
      values.push_back(std::move(value));
    }
  }
  return values;
}

std::vector<std::string> expand_braces(std::string_view spec, const std::string& where) {
  std::vector<std::string> specs = {std::string()};
  std::size_t i = 0;
  while (i < spec.size()) {
    const std::size_t open = spec.find_first_of("{}", i);
    const std::string_view literal = spec.substr(i, open == std::string_view::npos ? std::string_view::npos : open - i);
    for (std::string& s : specs) s += literal;
    if (open == std::string_view::npos) break;
    const std::string in_spec = where + ": spec '" + std::string(spec) + "'";
    if (spec[open] == '}') fail_input(in_spec, "'}' without '{'; expected alternatives such as budget={0.1,0.2}");
    const std::size_t close = spec.find_first_of("{}", open + 1);
    if (close == std::string_view::npos) fail_input(in_spec, "'{' without '}'");
    if (spec[close] == '{') fail_input(in_spec, "nested braces are not allowed");
    const std::string_view group = spec.substr(open + 1, close - open - 1);
    if (trim(group).empty()) fail_input(in_spec, "empty braces; expected alternatives such as {0.1,0.2}");
    const std::vector<std::string> alternatives = expand_list(group, in_spec);
    std::vector<std::string> next;
    for (const std::string& s : specs) {
      for (const std::string& alternative : alternatives) next.push_back(s + alternative);
    }
    if (next.size() > kMaxValues) fail_input(in_spec, "expands to more than " + std::to_string(kMaxValues) + " specs");
    specs = std::move(next);
    i = close + 1;
  }
  return specs;
}

}  // namespace kvsim

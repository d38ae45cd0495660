#include "util/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <utility>
#include <vector>

#include "util/error.h"

namespace kvsim {

namespace {

double prefix_scale(std::string_view prefix, bool* ok) {
  static const std::vector<std::pair<std::string_view, double>> kPrefixes = {{"", 1.0},
                                                                             {"k", 1e3},
                                                                             {"K", 1e3},
                                                                             {"M", 1e6},
                                                                             {"G", 1e9},
                                                                             {"T", 1e12},
                                                                             {"P", 1e15},
                                                                             {"Ki", 1024.0},
                                                                             {"Mi", 1048576.0},
                                                                             {"Gi", 1073741824.0},
                                                                             {"Ti", 1099511627776.0}};
  for (const auto& [p, scale] : kPrefixes) {
    if (prefix == p) {
      *ok = true;
      return scale;
    }
  }
  *ok = false;
  return 0.0;
}

const char* examples(UnitKind kind) {
  switch (kind) {
    case UnitKind::kBytes: return "80 GB or 96 GiB";
    case UnitKind::kBytesPerSecond: return "3.35 TB/s or 64 GB/s";
    case UnitKind::kSeconds: return "100 ns, 2 us, 1.5 ms or 0 s";
    case UnitKind::kFlopsPerSecond: return "989 TFLOPS";
  }
  return "";
}

// Splits "<prefix><unit>" for the given kind; returns the prefix, or false if the unit is wrong.
bool split_unit(std::string_view unit, UnitKind kind, std::string_view* prefix) {
  auto strip = [&](std::string_view suffix) {
    if (unit.size() >= suffix.size() && unit.substr(unit.size() - suffix.size()) == suffix) {
      *prefix = unit.substr(0, unit.size() - suffix.size());
      return true;
    }
    return false;
  };
  switch (kind) {
    case UnitKind::kBytes: return strip("B");
    case UnitKind::kBytesPerSecond: return strip("B/s");
    case UnitKind::kFlopsPerSecond: return strip("FLOPS") || strip("FLOP/s");
    case UnitKind::kSeconds:
      if (unit == "s") return *prefix = "", true;
      if (unit == "ms") return *prefix = "m", true;
      if (unit == "us") return *prefix = "u", true;
      if (unit == "ns") return *prefix = "n", true;
      return false;
  }
  return false;
}

}  // namespace

double parse_quantity(const std::string& text, UnitKind kind, const std::string& where) {
  const std::string expected = std::string("expected a number with a unit such as ") + examples(kind);
  std::string_view s(text);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  double value = 0.0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || !std::isfinite(value)) fail_input(where, expected + ", got '" + text + "'");
  std::string_view unit(end, static_cast<std::size_t>(s.data() + s.size() - end));
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.remove_prefix(1);
  if (unit.empty()) fail_input(where, "missing unit: " + expected + ", got '" + text + "'");
  std::string_view prefix;
  if (!split_unit(unit, kind, &prefix)) fail_input(where, "wrong unit '" + std::string(unit) + "': " + expected);
  double scale = 1.0;
  if (kind == UnitKind::kSeconds) {
    scale = prefix == "m" ? 1e-3 : prefix == "u" ? 1e-6 : prefix == "n" ? 1e-9 : 1.0;
  } else {
    bool ok = false;
    scale = prefix_scale(prefix, &ok);
    if (!ok) fail_input(where, "unknown unit prefix in '" + std::string(unit) + "': " + expected);
  }
  return value * scale;
}

std::string format_quantity(double value, UnitKind kind) {
  const char* unit = kind == UnitKind::kBytes            ? "B"
                     : kind == UnitKind::kBytesPerSecond ? "B/s"
                     : kind == UnitKind::kFlopsPerSecond ? "FLOPS"
                                                         : "s";
  char buffer[64];
  if (kind == UnitKind::kSeconds) {
    const double a = std::abs(value);
    if (a == 0.0 || a >= 1.0) std::snprintf(buffer, sizeof buffer, "%.4g s", value);
    else if (a >= 1e-3) std::snprintf(buffer, sizeof buffer, "%.4g ms", value * 1e3);
    else if (a >= 1e-6) std::snprintf(buffer, sizeof buffer, "%.4g us", value * 1e6);
    else std::snprintf(buffer, sizeof buffer, "%.4g ns", value * 1e9);
    return buffer;
  }
  static const char* kPrefix[] = {"", "k", "M", "G", "T", "P"};
  int i = 0;
  double v = value;
  while (i < 5 && std::abs(v) >= 1000.0) {
    v /= 1000.0;
    ++i;
  }
  std::snprintf(buffer, sizeof buffer, "%.4g %s%s", v, kPrefix[i], unit);
  return buffer;
}

}  // namespace kvsim

#pragma once
// A minimal streaming JSON writer: enough for summary.json, with deterministic number formatting
// (shortest round-trip representation), so the same results give byte-identical files.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& out) : out_(out) {}

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }
  void key(std::string_view k) {
    separate();
    string(k);
    out_ << ": ";
    after_key_ = true;
  }
  void value(std::string_view s) {
    separate();
    string(s);
  }
  void value(const char* s) { value(std::string_view(s)); }
  void value(std::int64_t x) {
    separate();
    out_ << x;
  }
  void value(int x) { value(static_cast<std::int64_t>(x)); }
  void value(std::uint64_t x) {
    separate();
    out_ << x;
  }
  void value(double x) {
    separate();
    // JSON has no NaN/Inf, and a null where a number belongs is a silently lost result: a result
    // that is not finite is a bug upstream (inputs that make a metric non-finite are refused).
    if (!std::isfinite(x))
      throw std::logic_error("a non-finite number (" + std::to_string(x) + ") reached a JSON file");
    char buffer[32];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, x);
    out_ << std::string_view(buffer, static_cast<std::size_t>(end - buffer));
  }
  void value(bool b) {
    separate();
    out_ << (b ? "true" : "false");
  }
  template <typename T>
  void field(std::string_view k, const T& v) {
    key(k);
    value(v);
  }

 private:
  void open(char c) {
    separate();
    out_ << c;
    first_.push_back(true);
    ++depth_;
  }
  void close(char c) {
    first_.pop_back();
    --depth_;
    out_ << "\n" << std::string(static_cast<std::size_t>(2 * depth_), ' ') << c;
    if (depth_ == 0) out_ << "\n";
  }
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ << ",";
    first_.back() = false;
    out_ << "\n" << std::string(static_cast<std::size_t>(2 * depth_), ' ');
  }
  void string(std::string_view s) {
    out_ << '"';
    for (char c : s) {
      switch (c) {
        case '"': out_ << "\\\""; break;
        case '\\': out_ << "\\\\"; break;
        case '\n': out_ << "\\n"; break;
        case '\t': out_ << "\\t"; break;
        case '\r': out_ << "\\r"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out_ << buf;
          } else {
            out_ << c;
          }
      }
    }
    out_ << '"';
  }

  std::ostream& out_;
  std::vector<bool> first_;
  int depth_ = 0;
  bool after_key_ = false;
};

}  // namespace kvsim

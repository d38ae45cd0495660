#include "util/exact_number.h"

#include <charconv>

namespace kvsim {

std::string exact_double_text(double value) {
  char buffer[64];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::hex);
  return ec == std::errc() ? std::string(buffer, end) : std::string();  // 64 bytes always suffice
}

std::optional<double> parse_exact_double(std::string_view text) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value, std::chars_format::hex);
  if (ec != std::errc() || stop != end || text.empty()) return std::nullopt;
  return value;
}

}  // namespace kvsim

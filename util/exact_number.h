#pragma once
// Doubles as text that reads back to the same bits: C99 hex floats ("1.8p+3", "-0p+0", "inf"),
// for files whose numbers must round-trip exactly (the retention profile cache).
#include <optional>
#include <string>
#include <string_view>

namespace kvsim {

// The shortest hex-float text of `value` (std::to_chars, chars_format::hex; no "0x").
std::string exact_double_text(double value);

// `text` (all of it) as exact_double_text wrote it; nothing when it is not such a number.
std::optional<double> parse_exact_double(std::string_view text);

}  // namespace kvsim

#pragma once
// Small text helpers shared by every reader of kvsim's text formats.
#include <string_view>

namespace kvsim {

// `s` without leading and trailing whitespace (as std::isspace in the C locale).
std::string_view trim(std::string_view s);

}  // namespace kvsim

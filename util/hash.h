#pragma once
// A stable 64-bit hash of text (FNV-1a, finished with splitmix64 for avalanche): the same bytes
// give the same value on every machine and kvsim version, so it can name files and derive seeds.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "util/rng.h"

namespace kvsim {

inline std::uint64_t text_hash(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return splitmix64(h);
}

// 16 lowercase hex digits.
inline std::string hex64(std::uint64_t value) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

}  // namespace kvsim

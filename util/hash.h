#pragma once
// A stable 64-bit hash of text (FNV-1a, finished with splitmix64 for avalanche): the same bytes
// give the same value on every machine and kvsim version, so it can name files and derive seeds.
#include <cstdint>
#include <string>
#include <string_view>

#include "util/rng.h"

namespace kvsim {

// FNV-1a in pieces: text_hash(a + b) == splitmix64(fnv1a(fnv1a(kFnvBasis, a), b)), so text built
// piece by piece (sweep expansion) is hashed without hashing a shared prefix again.
constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ull;

inline std::uint64_t fnv1a(std::uint64_t h, std::string_view text) {
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

inline std::uint64_t text_hash(std::string_view text) { return splitmix64(fnv1a(kFnvBasis, text)); }

// 16 lowercase hex digits written into `out`, returned as a view of it. By hand, not snprintf, and
// into the caller's buffer: a sweep hashes one per scenario (issue 17 item 9).
inline std::string_view hex64(std::uint64_t value, char (&out)[16]) {
  for (int i = 15; i >= 0; --i, value >>= 4) out[i] = "0123456789abcdef"[value & 15];
  return std::string_view(out, 16);
}

// 16 lowercase hex digits.
inline std::string hex64(std::uint64_t value) {
  char out[16];
  return std::string(hex64(value, out));
}

}  // namespace kvsim

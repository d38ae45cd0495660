#pragma once
// Counter-based random numbers: every value is a pure function of (seed, stream coordinates), so
// any element of a synthetic trace can be generated on its own, in any order, on any thread, and
// come out bit-identical. This is what makes kvsim deterministic at any thread count.
#include <cmath>
#include <cstdint>
#include <numbers>

namespace kvsim {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Hash of a seed and up to four coordinates into one 64-bit key.
inline std::uint64_t hash_key(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0,
                              std::uint64_t d = 0) {
  std::uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ a);
  h = splitmix64(h ^ (b + 0x632BE59BD9B4E019ull));
  h = splitmix64(h ^ (c + 0x85157AF5ull));
  h = splitmix64(h ^ (d + 0x3C6EF372FE94F82Aull));
  return h;
}

// A small sequential generator seeded from a key (xoshiro-like speed, splitmix quality is enough
// for synthetic data).
class KeyedRng {
 public:
  explicit KeyedRng(std::uint64_t key) : state_(key) {}
  std::uint64_t next_u64() {
    state_ += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1): never 0, so log() is safe.
  double uniform() { return (static_cast<double>(next_u64() >> 11) + 0.5) * 0x1.0p-53; }
  // Standard normal by Box-Muller; the second value is discarded to keep the stream stateless.
  double normal() {
    const double u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  // Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

 private:
  std::uint64_t state_;
};

}  // namespace kvsim

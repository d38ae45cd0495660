#pragma once
// Quantities with units, as users write them in hardware files: "80 GB", "3.35 TB/s", "100 ns",
// "989 TFLOPS". A number without its unit is an error: "3.35" could be TB/s or GB/s, and guessing
// silently would give wrong answers by a factor of 1000.
#include <string>

namespace kvsim {

enum class UnitKind { kBytes, kBytesPerSecond, kSeconds, kFlopsPerSecond };

// Parses `text` into SI base units (bytes, bytes/s, seconds, FLOP/s). Decimal prefixes k M G T P
// are powers of 1000; binary prefixes Ki Mi Gi Ti are powers of 1024 (GiB, GiB/s).
// Throws InputError("<where>: expected a number with a unit such as ..., got '<text>'").
double parse_quantity(const std::string& text, UnitKind kind, const std::string& where);

// "3.35 TB/s", "80 GB", "100 ns", "989 TFLOPS": the largest decimal prefix that keeps the value >= 1.
std::string format_quantity(double value, UnitKind kind);

}  // namespace kvsim

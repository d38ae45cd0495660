#pragma once
// IEEE binary16 <-> float conversion. HDF5 1.10 converts float16 in software bit by bit (tens of
// ns per value, minutes for a long trace); these are exact (half -> float) and round to nearest
// even (float -> half), like numpy.
#include <cstdint>

namespace kvsim {

float half_to_float(std::uint16_t half);
// Values of magnitude >= 65520 become infinity; NaN stays NaN.
std::uint16_t float_to_half(float value);
inline bool half_is_finite(std::uint16_t half) { return (half & 0x7c00u) != 0x7c00u; }

}  // namespace kvsim

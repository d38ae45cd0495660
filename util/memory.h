#pragma once
// Refusing work that cannot fit in memory with a clear message, instead of an out-of-memory kill
// or std::bad_alloc half-way through.
#include <string>

namespace kvsim {

// Physical memory of this machine in bytes.
double physical_memory_bytes();

// Throws InputError("<where>: <what> needs N GiB, more than this machine's M GiB") when `bytes`
// exceeds physical memory.
void check_fits_in_memory(double bytes, const std::string& where, const std::string& what);

}  // namespace kvsim

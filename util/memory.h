#pragma once
// Refusing work that cannot fit in memory with a clear message, instead of an out-of-memory kill
// or std::bad_alloc half-way through.
#include <string>

namespace kvsim {

// Physical memory of this machine in bytes.
double physical_memory_bytes();

// Caps the simulator's own memory (kvsim --max-memory): checks below use the cap instead of
// physical memory, and the process data limit (RLIMIT_DATA, which counts heap and anonymous
// mappings) is set to it, so an allocation beyond it fails as std::bad_alloc, which the command
// line reports as one error line. Sanitizer builds keep only the checks (their shadow memory
// would count against the limit).
void set_memory_limit_bytes(double bytes);
double memory_limit_bytes();  // the cap, or physical memory when none is set

// Throws InputError("<where>: <what> needs N GiB, more than this machine's M GiB") when `bytes`
// exceeds physical memory (or the --max-memory cap).
void check_fits_in_memory(double bytes, const std::string& where, const std::string& what);

}  // namespace kvsim

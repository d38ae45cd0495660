#pragma once
// libhdf5 1.10 does not bounds-check every size field it reads: a corrupt global-heap object (the
// storage of variable-length string attributes) makes H5HG_read memcpy far out of bounds and the
// process dies with SIGSEGV, with no error to catch. While an Hdf5CrashGuard lives on a thread, a
// SIGSEGV or SIGBUS raised on that thread prints the one-line error kvsim gives for any corrupt
// file ("kvsim: error: PATH: ...") and exits with status 2; a fault on any other thread, or with
// no guard alive, goes to the handler installed before (the default, or AddressSanitizer's), so a
// bug in kvsim itself still crashes loudly.
#include <string>

namespace kvsim {

class Hdf5CrashGuard {
 public:
  explicit Hdf5CrashGuard(const std::string& path);
  ~Hdf5CrashGuard();
  Hdf5CrashGuard(const Hdf5CrashGuard&) = delete;
  Hdf5CrashGuard& operator=(const Hdf5CrashGuard&) = delete;

 private:
  std::string message_;  // built here: the signal handler may not allocate
  const std::string* previous_;
};

}  // namespace kvsim

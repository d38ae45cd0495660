#include "util/memory.h"

#include <cstdio>
#include <unistd.h>

#include "util/error.h"

namespace kvsim {

double physical_memory_bytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

void check_fits_in_memory(double bytes, const std::string& where, const std::string& what) {
  const double available = physical_memory_bytes();
  if (bytes > available) {
    char text[160];
    std::snprintf(text, sizeof text, " needs %.1f GiB, more than this machine's %.1f GiB", bytes / (1 << 30),
                  available / (1 << 30));
    fail_input(where, what + text);
  }
}

}  // namespace kvsim

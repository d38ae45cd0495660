#include "util/memory.h"

#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>

#include "util/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define KVSIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVSIM_ASAN 1
#endif
#endif

namespace kvsim {

namespace {
double g_limit_bytes = 0;  // 0: none
}  // namespace

double physical_memory_bytes() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

void set_memory_limit_bytes(double bytes) {
  g_limit_bytes = bytes;
#ifndef KVSIM_ASAN
  struct rlimit limit {};
  limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(bytes);
  setrlimit(RLIMIT_DATA, &limit);
#endif
}

double memory_limit_bytes() {
  const double physical = physical_memory_bytes();
  return g_limit_bytes > 0 && g_limit_bytes < physical ? g_limit_bytes : physical;
}

void check_fits_in_memory(double bytes, const std::string& where, const std::string& what) {
  const double available = memory_limit_bytes();
  if (bytes > available) {
    char text[200];
    std::snprintf(
        text, sizeof text, " needs %.1f GiB, more than %s %.1f GiB", bytes / (1 << 30),
        g_limit_bytes > 0 && g_limit_bytes < physical_memory_bytes() ? "the --max-memory limit of" : "this machine's",
        available / (1 << 30));
    fail_input(where, what + text);
  }
}

}  // namespace kvsim

#include "util/threads.h"

#include "util/error.h"
#include "util/memory.h"

namespace kvsim {

void check_thread_count(long long threads, int min_threads, const std::string& where) {
  if (threads < min_threads || threads > kMaxThreads) {
    fail_input(where, "must be in [" + std::to_string(min_threads) + ", " + std::to_string(kMaxThreads) + "]" +
                          (min_threads == 0 ? " (0: all cores)" : "") + ", got " + std::to_string(threads));
  }
  check_fits_in_memory(static_cast<double>(threads) * kThreadStackBytes, where,
                       std::to_string(threads) + " threads' stacks");
}

}  // namespace kvsim

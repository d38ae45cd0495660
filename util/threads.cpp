#include "util/threads.h"

#include <tbb/global_control.h>
#include <tbb/info.h>

#include <mutex>

#include "util/error.h"
#include "util/memory.h"

namespace kvsim {

void cap_worker_threads(int threads) {
  static std::mutex mutex;
  static tbb::global_control* cap = nullptr;  // deliberately never destroyed (see the header)
  const std::lock_guard<std::mutex> lock(mutex);
  const auto count = static_cast<std::size_t>(threads > 0 ? threads : tbb::info::default_concurrency());
  // The new cap first, then the old one goes: oneTBB applies the lowest cap alive.
  auto* next = new tbb::global_control(tbb::global_control::max_allowed_parallelism, count);
  delete cap;
  cap = next;
}

void check_thread_count(long long threads, int min_threads, const std::string& where) {
  if (threads < min_threads || threads > kMaxThreads) {
    fail_input(where, "must be in [" + std::to_string(min_threads) + ", " + std::to_string(kMaxThreads) + "]" +
                          (min_threads == 0 ? " (0: all cores)" : "") + ", got " + std::to_string(threads));
  }
  check_fits_in_memory(static_cast<double>(threads) * kThreadStackBytes, where,
                       std::to_string(threads) + " threads' stacks");
}

}  // namespace kvsim

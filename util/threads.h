#pragma once
// The worker-thread counts a user may ask for: kvsim run --threads, a scenario's [sim] threads and
// kvsim sweep --jobs. A count far above any machine's cores only costs memory (each worker
// reserves a stack) and, past what the threading library can start, crashed inside it.
#include <string>

namespace kvsim {

constexpr int kMaxThreads = 1024;  // above the core count of any one machine kvsim targets

// Each worker thread reserves a stack of this size (oneTBB's default on 64-bit systems).
constexpr double kThreadStackBytes = 4.0 * (1 << 20);

// Caps the worker threads of everything this process runs from now on at `threads` (0: all cores),
// replacing an earlier cap. The commands call it once, before any work. The cap is never torn down
// by itself: oneTBB starts threads when a cap is lifted, and when that happened while an
// out-of-memory error unwound under --max-memory, starting them failed inside a destructor and
// aborted the process (std::terminate) instead of giving the one-line error.
void cap_worker_threads(int threads);

// Throws InputError("<where>: ...") unless min_threads <= threads <= kMaxThreads and the threads'
// stacks fit in memory (the --max-memory cap, else this machine's memory).
void check_thread_count(long long threads, int min_threads, const std::string& where);

}  // namespace kvsim

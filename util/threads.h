#pragma once
// The worker-thread counts a user may ask for: kvsim run --threads, a scenario's [sim] threads and
// kvsim sweep --jobs. A count far above any machine's cores only costs memory (each worker
// reserves a stack) and, past what the threading library can start, crashed inside it.
#include <string>

namespace kvsim {

constexpr int kMaxThreads = 1024;  // above the core count of any one machine kvsim targets

// Each worker thread reserves a stack of this size (oneTBB's default on 64-bit systems).
constexpr double kThreadStackBytes = 4.0 * (1 << 20);

// Throws InputError("<where>: ...") unless min_threads <= threads <= kMaxThreads and the threads'
// stacks fit in memory (the --max-memory cap, else this machine's memory).
void check_thread_count(long long threads, int min_threads, const std::string& where);

}  // namespace kvsim

#pragma once
// Progress of measuring retention profiles, as lines for a command's progress log: what came from
// the cache, then (at most every few seconds) how far the measuring is, with an ETA from the
// prompt tokens measured so far (a bucket's replay time grows with its length).
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace kvsim {

class ProfileProgress {
 public:
  // `jobs` replays to run, `total_tokens` their prompt + decode tokens in all.
  ProfileProgress(std::size_t jobs, std::int64_t total_tokens, std::function<void(const std::string&)> log);

  // A replay of `tokens` finished. Thread-safe.
  void finished(std::int64_t tokens);

 private:
  std::size_t jobs_;
  std::int64_t total_tokens_;
  std::function<void(const std::string&)> log_;
  std::mutex mutex_;
  std::size_t done_ = 0;
  std::int64_t done_tokens_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_line_ = start_;
};

}  // namespace kvsim

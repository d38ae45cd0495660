#include "sim/serving/profile_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvsim {

namespace {

constexpr double kLineEverySeconds = 2.0;

std::string seconds_text(double seconds) {
  char text[32];
  if (seconds < 120) std::snprintf(text, sizeof text, "%.0f s", seconds);
  else std::snprintf(text, sizeof text, "%.0fm%02.0f s", std::floor(seconds / 60), std::fmod(seconds, 60.0));
  return text;
}

}  // namespace

ProfileProgress::ProfileProgress(std::size_t jobs, std::int64_t total_tokens,
                                 std::function<void(const std::string&)> log)
    : jobs_(jobs), total_tokens_(total_tokens), log_(std::move(log)) {}

void ProfileProgress::finished(std::int64_t tokens) {
  const std::lock_guard<std::mutex> lock(mutex_);
  ++done_;
  done_tokens_ += tokens;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (!log_) return;
  if (done_ == jobs_) {
    log_("retention profiles: " + std::to_string(jobs_) + " replays done in " + seconds_text(elapsed));
    return;
  }
  if (std::chrono::duration<double>(now - last_line_).count() < kLineEverySeconds) return;
  last_line_ = now;
  const double eta = elapsed * static_cast<double>(total_tokens_ - done_tokens_) /
                     static_cast<double>(std::max<std::int64_t>(done_tokens_, 1));
  log_("retention profiles: " + std::to_string(done_) + "/" + std::to_string(jobs_) + " replays done, ETA " +
       seconds_text(eta));
}

}  // namespace kvsim

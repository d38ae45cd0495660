#include "tools/kvsim/progress.h"

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>

namespace kvsim::cli {

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buffer[32];
  if (s < 60) std::snprintf(buffer, sizeof buffer, "%lds", s);
  else if (s < 3600) std::snprintf(buffer, sizeof buffer, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  return buffer;
}

Progress::Progress(std::size_t total, std::size_t already_done, bool enabled)
    : total_(total),
      done_(already_done),
      enabled_(enabled),
      terminal_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {
  if (!enabled_ || !terminal_) return;
  const std::lock_guard<std::mutex> lock(mutex_);
  draw("", 0.0);
  ticker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (enabled_) {
      wake_.wait_for(lock, std::chrono::seconds(1));
      if (enabled_) draw("", 0.0);
    }
  });
}

Progress::~Progress() { close(); }

void Progress::finished(const std::string& item, double seconds) {
  const std::lock_guard<std::mutex> lock(mutex_);
  ++done_;
  ++done_now_;
  if (enabled_) draw(item, seconds);
}

void Progress::draw(const std::string& item, double seconds) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::size_t left = total_ - std::min(done_, total_);
  const std::string eta =
      done_now_ == 0 ? "--" : format_duration(elapsed / static_cast<double>(done_now_) * static_cast<double>(left));
  const double fraction = total_ == 0 ? 1.0 : static_cast<double>(done_) / static_cast<double>(total_);
  char counts[128];
  std::snprintf(counts, sizeof counts, "%zu/%zu %3.0f%%  elapsed %s  ETA %s", done_, total_, 100.0 * fraction,
                format_duration(elapsed).c_str(), eta.c_str());
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::cerr << "\r\x1b[K[" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(kWidth - filled), '.') << "] " << counts << std::flush;
  } else {
    char took[32];
    std::snprintf(took, sizeof took, "%.1f s", seconds);
    std::cerr << "[" << counts << "] " << item << " done in " << took << std::endl;
  }
}

void Progress::close() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (enabled_ && terminal_) std::cerr << "\n" << std::flush;
    enabled_ = false;
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

std::function<void(const std::string&)> warning_log() {
  static std::mutex mutex;
  return [](const std::string& line) {
    const std::lock_guard<std::mutex> lock(mutex);
    std::cerr << line << std::endl;
  };
}

std::function<void(const std::string&)> elapsed_log(bool quiet) {
  if (quiet) return [](const std::string&) {};
  struct Clock {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::mutex mutex;
  };
  auto clock = std::make_shared<Clock>();
  return [clock](const std::string& line) {
    const std::lock_guard<std::mutex> lock(clock->mutex);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - clock->start).count();
    std::cerr << "[" << std::fixed << std::setprecision(1) << s << " s] " << line << std::endl;
  };
}

}  // namespace kvsim::cli

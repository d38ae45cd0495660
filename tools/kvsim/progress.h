#pragma once
// Progress of a batch on stderr: on a terminal, one line redrawn in place every second (bar,
// count, percent, elapsed, ETA); otherwise (a log file, a Slurm job) one line per finished item.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace kvsim::cli {

class Progress {
 public:
  // `total` items of which `already_done` were finished before this run (they count in the bar,
  // not in the ETA, which uses this run's rate).
  Progress(std::size_t total, std::size_t already_done, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void finished(const std::string& item, double seconds);
  // Stops redrawing and ends the line.
  void close();

 private:
  void draw(const std::string& item, double seconds);  // REQUIRES: mutex_ held

  std::size_t total_;
  std::size_t done_;
  std::size_t done_now_ = 0;
  bool enabled_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread ticker_;  // redraws the terminal line so elapsed time moves during long items
};

// Progress lines of one command on stderr, "[12.3 s] line", timed from the call; nothing when
// `quiet`. Safe to call from several threads (a line is written whole).
std::function<void(const std::string&)> elapsed_log(bool quiet);

// Warning lines on stderr, also under --quiet (a warning is not progress). Thread-safe.
std::function<void(const std::string&)> warning_log();

// "45s", "3m05s", "1h02m"
std::string format_duration(double seconds);

}  // namespace kvsim::cli

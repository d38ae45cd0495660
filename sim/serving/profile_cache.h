#pragma once
// Retention profiles cached on disk (issue 21 §2): measuring them dominates a serving run, and the
// same profiles come back in every run, plan and rerun of a scenario. One file per profile key
// (sim/serving/profile_key.h), <dir>/retention-profiles/<16 hex digits of the key's hash>.txt, in
// the format of sim/serving/retention_curve_file.h. A file holds its whole key, so a hash collision
// reads as a miss. Files are written atomically (util/atomic_file.h) under temporary names unique
// per process and writer, so concurrent runs may share a folder; a corrupt or truncated file is
// ignored with a warning and measured again. The cache is only ever a shortcut: results are the
// same with it, without it and with a damaged one.
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "sim/scenario.h"
#include "sim/serving/retention.h"

namespace kvsim {

// The scenario's cache folder: [sim] cache_dir, else $XDG_CACHE_HOME/kvsim, else $HOME/.cache/kvsim;
// empty when caching is off (cache_dir = none, or no environment variable names a home).
std::string profile_cache_dir(const Scenario& scenario);

class ProfileCache {
 public:
  // `dir` empty: disabled (load finds nothing, store writes nothing). `warn` gets one line per
  // problem (a corrupt file, a folder that cannot be written).
  ProfileCache(const std::string& dir, std::function<void(const std::string&)> warn);

  bool enabled() const { return !folder_.empty(); }
  const std::string& folder() const { return folder_; }
  // The file of `key`.
  std::string path(const std::string& key) const;

  // The cached curve of `key`, a prompt of `prompt_tokens`; nothing when absent or unreadable.
  std::optional<RetentionCurve> load(const std::string& key, std::int64_t prompt_tokens) const;
  // Writes `curve` as `key`'s file. Failures warn (once per cache) and are otherwise ignored.
  void store(const std::string& key, const RetentionCurve& curve) const;

 private:
  std::string folder_;
  std::function<void(const std::string&)> warn_;
  mutable std::atomic<bool> store_failed_{false};
};

}  // namespace kvsim

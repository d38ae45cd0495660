#include "sim/serving/profile_cache.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sim/serving/retention_curve_file.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/hash.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSubfolder = "retention-profiles";

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

}  // namespace

std::string profile_cache_dir(const Scenario& scenario) {
  if (scenario.cache_dir == "none") return "";
  if (!scenario.cache_dir.empty()) return scenario.cache_dir;
  // XDG Base Directory: a relative $XDG_CACHE_HOME is invalid and to be ignored.
  const std::string xdg = environment("XDG_CACHE_HOME");
  if (!xdg.empty() && fs::path(xdg).is_absolute()) return (fs::path(xdg) / "kvsim").string();
  const std::string home = environment("HOME");
  if (!home.empty()) return (fs::path(home) / ".cache" / "kvsim").string();
  return "";
}

ProfileCache::ProfileCache(const std::string& dir, std::function<void(const std::string&)> warn)
    : folder_(dir.empty() ? "" : (fs::path(dir) / kSubfolder).string()), warn_(std::move(warn)) {
  if (enabled()) remove_dead_temporaries(folder_);  // leftovers of killed writers on this host
}

std::string ProfileCache::path(const std::string& key) const {
  return (fs::path(folder_) / (hex64(text_hash(key)) + ".txt")).string();
}

std::optional<RetentionCurve> ProfileCache::load(const std::string& key, std::int64_t prompt_tokens) const {
  if (!enabled()) return std::nullopt;
  const std::string file = path(key);
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;  // not cached yet
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string problem = "read error";
  std::optional<RetentionCurve> curve;
  if (!in.bad()) curve = read_retention_curve(text, key, prompt_tokens, &problem);
  if (!curve && warn_)
    warn_("warning: " + file + ": ignoring a damaged cached retention profile (" + problem + "); measuring it again");
  return curve;
}

void ProfileCache::store(const std::string& key, const RetentionCurve& curve) const {
  if (!enabled()) return;
  const std::string file = path(key);
  try {
    std::error_code ec;
    fs::create_directories(folder_, ec);
    if (ec) fail_input(folder_, "cannot create the cache folder: " + ec.message());
    write_file_atomically(file, unique_temporary_path_for(file),
                          [&](std::ostream& out) { write_retention_curve(out, key, curve); });
  } catch (const InputError& e) {
    // Only the first failure is reported: a read-only or full disk would fail every profile.
    if (!store_failed_.exchange(true) && warn_) {
      warn_(std::string("warning: not caching retention profiles: ") + e.what());
    }
  }
}

}  // namespace kvsim

#include "util/atomic_folder.h"

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/atomic_file.h"
#include "util/error.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

// "DIR" -> (parent folder, "DIR" as a name); a trailing slash is ignored.
std::pair<std::string, std::string> split(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return {p.parent_path().string(), p.filename().string()};
}

std::string in_folder(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "/" + name;
}

// A writer killed between the two renames of the fallback left DIR absent and its old copy aside:
// put it back, so that the folder keeps its old result set.
void restore_renamed_aside(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dir, ec))) return;
  const auto [parent, name] = split(dir);
  for (const auto& entry : fs::directory_iterator(parent.empty() ? "." : parent, ec)) {
    const std::string entry_name = entry.path().filename().string();
    if (entry_name.rfind(name + ".old.", 0) != 0 || !is_dead_temporary(entry_name)) continue;
    std::error_code ignored;
    fs::rename(entry.path(), dir, ignored);
    return;
  }
}

bool renamed(int status) { return status == 0; }

}  // namespace

void check_replaceable_folder(const std::string& dir, const std::vector<std::string>& ours) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (!fs::exists(status)) return;
  if (!fs::is_directory(status)) fail_input(dir, "--out exists and is not a folder");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool listed = std::find(ours.begin(), ours.end(), name) != ours.end();
    // A temporary file of an older kvsim that wrote DIR's files one by one ("summary.json.tmp.1234").
    const bool leftover =
        std::any_of(ours.begin(), ours.end(), [&](const std::string& o) { return name.rfind(o + ".tmp.", 0) == 0; });
    if (!listed && !leftover) {
      fail_input(dir, "--out exists and holds '" + name +
                          "', which this command does not write; the folder is replaced as a whole, so use a "
                          "new or empty folder");
    }
  }
}

StagedFolder::StagedFolder(std::string dir, const std::vector<std::string>& ours) : dir_(std::move(dir)) {
  const auto [parent, name] = split(dir_);
  if (name.empty() || name == "." || name == "..") {
    fail_input(dir_, "--out must name a folder of its own (it is replaced as a whole)");
  }
  dir_ = in_folder(parent, name);
  std::error_code ec;
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) fail_input(dir_, "cannot create the parent folder: " + ec.message());
  }
  restore_renamed_aside(dir_);
  remove_dead_temporaries(parent, name + ".");
  check_replaceable_folder(dir_, ours);
  temporary_ = temporary_path_for(dir_);
  fs::remove_all(temporary_, ec);
  fs::create_directory(temporary_, ec);
  if (ec) fail_input(dir_, "cannot create the output folder (" + temporary_ + "): " + ec.message());
}

StagedFolder::~StagedFolder() {
  if (done_) return;
  std::error_code ignored;
  fs::remove_all(temporary_, ignored);
}

void StagedFolder::commit() {
  if (done_) throw std::logic_error("StagedFolder::commit called twice");
  done_ = true;
  // Its files were synced as they were written (commit_temporary); the folder's own entries and,
  // after the swap, its parent's make the new set durable as a whole.
  sync_to_disk(temporary_);
  struct SyncParent {
    const std::string& dir;
    ~SyncParent() { sync_parent_folder(dir); }
  } sync_parent{dir_};
  std::string error;
  // A few tries: another run into the same DIR may swap or remove it between two of our calls.
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (renamed(::renameat2(AT_FDCWD, temporary_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_NOREPLACE))) return;
    const int noreplace_error = errno;
    if (noreplace_error == EINVAL || noreplace_error == ENOSYS) {
      // No RENAME_NOREPLACE here: rename() itself replaces an absent or empty DIR.
      if (renamed(::rename(temporary_.c_str(), dir_.c_str()))) return;
      if (errno != EEXIST && errno != ENOTEMPTY) {
        error = std::strerror(errno);
        break;
      }
    } else if (noreplace_error != EEXIST) {
      error = std::strerror(noreplace_error);
      break;
    }
    // DIR exists: swap the two folders in one step, then remove the old set (now at temporary_).
    if (renamed(::renameat2(AT_FDCWD, temporary_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE))) {
      std::error_code ignored;
      fs::remove_all(temporary_, ignored);
      return;
    }
    const int exchange_error = errno;
    if (exchange_error == ENOENT) continue;  // DIR vanished meanwhile: try again
    if (exchange_error != EINVAL && exchange_error != ENOSYS) {
      error = std::strerror(exchange_error);
      break;
    }
    // No RENAME_EXCHANGE (some network file systems): rename the old DIR aside, then ours in.
    const std::string aside = temporary_.substr(0, dir_.size()) + ".old" + temporary_.substr(dir_.size() + 4);
    if (::rename(dir_.c_str(), aside.c_str()) != 0 && errno != ENOENT) {
      error = std::strerror(errno);
      break;
    }
    if (renamed(::rename(temporary_.c_str(), dir_.c_str()))) {
      std::error_code ignored;
      fs::remove_all(aside, ignored);
      return;
    }
    ::rename(aside.c_str(), dir_.c_str());  // another run's DIR came in between: put ours back, try again
  }
  std::error_code ignored;
  fs::remove_all(temporary_, ignored);
  fail_input(dir_, "cannot replace the output folder: " + (error.empty() ? std::string("it keeps changing") : error));
}

}  // namespace kvsim

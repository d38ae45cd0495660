#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "util/error.h"

namespace kvsim {

namespace fs = std::filesystem;

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
  return buffer;
}

std::string temporary_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid()) + "@" + host_name();
}

std::string unique_temporary_path_for(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  return temporary_path_for(path + "." + std::to_string(counter++));
}

bool is_dead_temporary(const std::string& name) {
  const auto at = name.rfind('@');
  if (at == std::string::npos || name.substr(at + 1) != host_name()) return false;
  const auto dot = name.rfind('.', at);
  if (dot == std::string::npos || dot < 4) return false;
  const std::string kind = name.substr(dot - 4, 5);  // ".tmp." or ".old."
  if (kind != ".tmp." && kind != ".old.") return false;
  pid_t pid = 0;
  const char* begin = name.data() + dot + 1;
  const char* end = name.data() + at;
  const auto [stop, error] = std::from_chars(begin, end, pid);
  if (error != std::errc() || stop != end || pid <= 0) return false;
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

int remove_dead_temporaries(const std::string& folder, const std::string& prefix) {
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(folder.empty() ? "." : folder, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || !is_dead_temporary(name)) continue;
    std::error_code ignored;
    if (fs::remove_all(entry.path(), ignored) > 0) ++removed;
  }
  return removed;
}

std::string sync_to_disk(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  const int synced = ::fsync(fd);
  const int sync_error = errno;
  ::close(fd);
  return synced == 0 ? std::string() : std::strerror(sync_error);
}

void sync_parent_folder(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  sync_to_disk(parent.empty() ? "." : parent.string());
}

void commit_temporary(const std::string& temporary, const std::string& path) {
  std::error_code ec;
  // Without this a crash soon after the rename can leave `path` empty: the rename may reach the
  // disk before the data does.
  const std::string sync_error = sync_to_disk(temporary);
  if (!sync_error.empty()) {
    fs::remove(temporary, ec);
    fail_input(path, "cannot write result file (fsync: " + sync_error + ")");
  }
  fs::rename(temporary, path, ec);
  if (ec) {
    fs::remove(temporary, ec);
    fail_input(path, "cannot write result file: " + ec.message());
  }
  sync_parent_folder(path);
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  write_file_atomically(path, temporary_path_for(path), write);
}

void write_file_atomically(const std::string& path, const std::string& temporary,
                           const std::function<void(std::ostream&)>& write) {
  // A writer of `path` killed earlier (kill -9, a node lost mid-write) left its temporary behind.
  const fs::path target(path);
  remove_dead_temporaries(target.parent_path().string(), target.filename().string() + ".");
  try {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail_input(path, "cannot create file (does the folder exist and is it writable?)");
    write(out);
    out.flush();
    if (!out) fail_input(path, "write failed (disk full?)");
    out.close();  // the last buffered bytes are written here: a full disk shows up now or never
    if (!out) fail_input(path, "write failed (disk full?)");
  } catch (...) {
    std::error_code ec;
    fs::remove(temporary, ec);
    throw;
  }
  commit_temporary(temporary, path);
}

}  // namespace kvsim

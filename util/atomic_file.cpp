#include "util/atomic_file.h"

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "util/error.h"

namespace kvsim {

namespace fs = std::filesystem;

std::string temporary_path_for(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

void commit_temporary(const std::string& temporary, const std::string& path) {
  std::error_code ec;
  fs::rename(temporary, path, ec);
  if (ec) {
    fs::remove(temporary, ec);
    fail_input(path, "cannot write result file: " + ec.message());
  }
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string temporary = temporary_path_for(path);
  try {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail_input(path, "cannot create file (does the folder exist and is it writable?)");
    write(out);
    out.flush();
    if (!out) fail_input(path, "write failed (disk full?)");
  } catch (...) {
    std::error_code ec;
    fs::remove(temporary, ec);
    throw;
  }
  commit_temporary(temporary, path);
}

}  // namespace kvsim

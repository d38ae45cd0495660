#pragma once
// Result files appear whole or not at all: written to a temporary name in the same folder, then
// renamed over the target (rename is atomic within a file system).
#include <functional>
#include <ostream>
#include <string>

namespace kvsim {

// Calls `write` with a stream to a temporary file, then renames it to `path`. If `write` throws
// or the stream fails, the temporary file is removed and the error propagates.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// A temporary path next to `path` for writers that need a file name (HDF5).
std::string temporary_path_for(const std::string& path);

// Renames `temporary` to `path`, or removes it and throws InputError naming `path`.
void commit_temporary(const std::string& temporary, const std::string& path);

}  // namespace kvsim

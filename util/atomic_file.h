#pragma once
// Result files appear whole or not at all: written to a temporary name in the same folder, then
// renamed over the target (rename is atomic within a file system).
#include <functional>
#include <ostream>
#include <string>

namespace kvsim {

// Calls `write` with a stream to a temporary file, then commit_temporary()s it to `path`. If `write`
// throws or the stream fails, the temporary file is removed and the error propagates. Temporaries of
// dead writers of the same `path` (killed runs) are removed first.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// The same through the temporary name `temporary` (in `path`'s folder): for writers in one process
// that may write the same `path` at once (temporary_path_for would give them one name).
void write_file_atomically(const std::string& path, const std::string& temporary,
                           const std::function<void(std::ostream&)>& write);

// A temporary path next to `path`, "<path>.tmp.<pid>@<host>": the pid and host let a later run
// tell the leftovers of a killed writer (remove_dead_temporaries) from those of a live one.
std::string temporary_path_for(const std::string& path);

// temporary_path_for(path) made unique within this process, "<path>.<n>.tmp.<pid>@<host>" (n counts
// calls), still recognised by is_dead_temporary.
std::string unique_temporary_path_for(const std::string& path);

// Flushes `temporary`'s data to stable storage, renames it to `path` and flushes the folder's entry,
// so that after a power loss `path` holds the old file or the whole new one, never an empty or
// partial file under the final name. On failure removes `temporary` and throws InputError naming `path`.
void commit_temporary(const std::string& temporary, const std::string& path);

// fsync of a file or folder; the error text, empty on success.
std::string sync_to_disk(const std::string& path);

// Flushes the folder holding `path` (its entries: a rename into it is durable after this). Errors
// are ignored: some file systems cannot sync a folder, and the data itself is already on disk.
void sync_parent_folder(const std::string& path);

// Whether `name` (a file or folder name) ends like temporary_path_for()'s names, ".tmp.<pid>@<host>"
// or ".old.<pid>@<host>", and its writer ran on this host and is dead (kill -9, power loss of a
// shard on this host). Names of other hosts are never judged dead: their pid means nothing here.
bool is_dead_temporary(const std::string& name);

// Removes the entries of `folder` whose name starts with `prefix` and is_dead_temporary(); returns
// how many. Errors are ignored (a leftover that cannot be removed does no harm to a new result).
int remove_dead_temporaries(const std::string& folder, const std::string& prefix = "");

// This machine's host name (for temporary names); "localhost" if unknown.
std::string host_name();

}  // namespace kvsim

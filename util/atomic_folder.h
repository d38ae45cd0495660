#pragma once
// Result folders appear whole (issue 17 item 3): `kvsim run --out DIR` and `kvsim plan --out DIR`
// write their files into a sibling temporary folder, DIR.tmp.<pid>@<host>, then swap it with DIR
// in one rename (renameat2 RENAME_EXCHANGE; where the file system lacks it, DIR is renamed aside
// first, so a reader then sees no DIR for a moment, never a mixture). A reader of DIR therefore
// sees the old result set or the new one, never files of two runs, and a run killed at any moment
// leaves DIR as it was plus a temporary that the next run into DIR (or beside it) removes.
#include <string>
#include <vector>

namespace kvsim {

class StagedFolder {
 public:
  // Checks DIR before any work: it must be absent, an empty folder, or a result folder holding only
  // names in `ours` (the files this command writes, and what tools/plot.py adds) -- anything else
  // is an InputError naming DIR, because the whole folder is replaced. Removes the temporaries of
  // dead writers beside DIR (restoring DIR from its renamed-aside copy if a writer died between
  // the two renames of the fallback), then creates the temporary folder.
  StagedFolder(std::string dir, const std::vector<std::string>& ours);
  // Without commit(): the temporary folder is removed.
  ~StagedFolder();
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  // The temporary folder to write the files into.
  const std::string& path() const { return temporary_; }
  const std::string& dir() const { return dir_; }

  // Replaces DIR by the temporary folder in one rename; the old DIR is removed after.
  void commit();

 private:
  std::string dir_;
  std::string temporary_;
  bool done_ = false;
};

// Checks that `dir` may be replaced by a result set of `ours` (see StagedFolder), without creating
// anything: for commands that check their outputs before the work.
void check_replaceable_folder(const std::string& dir, const std::vector<std::string>& ours);

}  // namespace kvsim

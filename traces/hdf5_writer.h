#pragma once
// HDF5 output files written whole or not at all (issue 17 item 1): the one way kvsim writes an
// HDF5 file (synth traces, --save-kept masks, sweep results.h5).
//
// Why not H5::H5File and handle destructors: with a full disk, HDF5 reports most write failures
// only when a dataset's chunk cache or the metadata cache is flushed, i.e. in H5Dclose/H5Fclose.
// The C++ API's destructors swallow those failures (printing "DataSet::~DataSet - H5Dclose failed"
// to stderr, one line per dataset), and a second H5Fclose after a failed one crashes libhdf5
// 1.10 (SIGSEGV in H5F__close). So the writer owns every group and dataset it hands out, closes
// each through the C API exactly once and checks it, and closes the file itself exactly once.
#include <H5Cpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "traces/hdf5_util.h"

namespace kvsim {

class Hdf5Writer {
 public:
  // Creates a temporary file next to `path` (same folder: the final rename stays atomic). With
  // `track_creation_order`, the root group lists its links in creation order. Nothing records a
  // time, so the same content gives a byte-identical file.
  explicit Hdf5Writer(std::string path, bool track_creation_order = false);
  // Without commit(): every handle and the file are closed quietly and the temporary is removed.
  ~Hdf5Writer();
  Hdf5Writer(const Hdf5Writer&) = delete;
  Hdf5Writer& operator=(const Hdf5Writer&) = delete;

  const std::string& path() const { return path_; }
  const H5::Group& root() const { return *root_; }

  // Groups and datasets stay owned by the writer until close() or commit(); hold them by reference
  // only (a copy would keep the object open past commit(), which commit() refuses as a bug).
  const H5::Group& group(const H5::Group& parent, const std::string& name, bool track_creation_order = false);
  const H5::DataSet& dataset(const H5::Group& parent, const std::string& name, const H5::DataType& type,
                             const H5::DataSpace& space,
                             const H5::DSetCreatPropList& properties = h5::untimed_dataset_properties());

  // Closes one handle now (a finished dataset's chunk cache is flushed and freed); a failure throws
  // InputError naming path().
  void close(const H5::Group& group);
  void close(const H5::DataSet& dataset);

  // Closes every handle still open, then the file, each checked, then renames the temporary to
  // path(). Throws InputError naming path() (one line, e.g. "No space left on device") on any
  // failure, after removing the temporary.
  void commit();

 private:
  struct Handle;
  void close_handle(const std::deque<Handle>::iterator& handle);
  [[noreturn]] void fail(const std::string& what);
  void abandon() noexcept;

  std::string path_;
  std::string temporary_;
  hid_t file_ = -1;
  std::unique_ptr<H5::Group> root_;
  std::deque<Handle> handles_;  // groups and datasets still open, in creation order
  bool done_ = false;
};

// Writes `path` through an Hdf5Writer: `fill` adds the content, then commit(). Any HDF5 failure
// in `fill` (disk full, quota) becomes one InputError naming `path`; nothing is left under `path`
// or the temporary name.
void write_hdf5_file(const std::string& path, const std::function<void(Hdf5Writer&)>& fill,
                     bool track_creation_order = false);

}  // namespace kvsim

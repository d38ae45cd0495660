#include "traces/hdf5_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "util/atomic_file.h"
#include "util/error.h"

namespace kvsim {

namespace {

// The most specific message on HDF5's error stack, then cleared. A failed write(2) is reported as
// "file write failed: time = ..., errno = 28, error message = 'No space left on device', ...":
// only the system's message is kept (the rest names the temporary and a clock time).
std::string stack_text(const std::string& fallback) {
  const std::string innermost = h5::take_innermost_hdf5_error();
  const std::string marker = "error message = '";
  const auto at = innermost.find(marker);
  if (at != std::string::npos) {
    const auto end = innermost.find('\'', at + marker.size());
    if (end != std::string::npos) return innermost.substr(at + marker.size(), end - at - marker.size());
  }
  return innermost.empty() ? fallback : innermost;
}

// Reserves disk blocks for the whole file as HDF5 knows it, keeping its size: the metadata that
// H5Fflush writes then lands in blocks already allocated. libhdf5 1.10 cannot recover from a failed
// metadata flush (its cache is left with "slist already enabled", every later close fails half-way
// and H5close() at exit crashes), so a full disk must be found before the flush, not by it. Returns
// the system's message when the space is not there; "" otherwise, also where the file system
// cannot reserve (then the flush itself reports a full disk).
std::string reserve_file_space(hid_t file) {
  void* handle = nullptr;
  hsize_t size = 0;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == nullptr || H5Fget_filesize(file, &size) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return "";
  }
  const int fd = *static_cast<int*>(handle);
  if (size == 0 || ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) == 0) return "";
  return errno == ENOSPC || errno == EDQUOT ? std::strerror(errno) : "";
}

// `kind`: H5P_GROUP_CREATE, or H5P_FILE_CREATE for the root group.
hid_t untimed_group_properties(bool track_creation_order, hid_t kind = H5P_GROUP_CREATE) {
  const hid_t properties = H5Pcreate(kind);
  if (track_creation_order) H5Pset_link_creation_order(properties, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_obj_track_times(properties, false);
  return properties;
}

}  // namespace

// `id` is the writer's own reference; the C++ object (handed out by reference) holds a second
// one, so destroying it never closes anything and cannot fail.
struct Hdf5Writer::Handle {
  hid_t id = -1;
  std::unique_ptr<H5::Group> group;
  std::unique_ptr<H5::DataSet> dataset;
};

Hdf5Writer::Hdf5Writer(std::string path, bool track_creation_order)
    : path_(std::move(path)), temporary_(temporary_path_for(path_)) {
  H5::Exception::dontPrint();
  const std::filesystem::path folder = std::filesystem::path(path_).parent_path();
  remove_dead_temporaries(folder.string(), std::filesystem::path(path_).filename().string() + ".tmp.");
  const hid_t properties = track_creation_order ? untimed_group_properties(true, H5P_FILE_CREATE) : H5P_DEFAULT;
  file_ = H5Fcreate(temporary_.c_str(), H5F_ACC_TRUNC, properties, H5P_DEFAULT);
  const std::string why = file_ < 0 ? stack_text("H5Fcreate failed") : "";  // before H5Pclose clears the stack
  if (properties != H5P_DEFAULT) H5Pclose(properties);
  if (file_ < 0) {
    std::remove(temporary_.c_str());
    done_ = true;
    fail_input(path_, "cannot create the file (does the folder exist and is it writable?): " + why);
  }
  const hid_t root = H5Gopen2(file_, "/", H5P_DEFAULT);
  if (root < 0) fail("cannot open the root group: " + stack_text("H5Gopen2 failed"));
  root_ = std::make_unique<H5::Group>(root);
  // The C++ object now holds the only reference it needs; drop the one H5Gopen2 returned if the
  // constructor took its own (HDF5 1.10's C++ API does).
  if (H5Iget_ref(root) > 1) H5Idec_ref(root);
}

Hdf5Writer::~Hdf5Writer() { abandon(); }

const H5::Group& Hdf5Writer::group(const H5::Group& parent, const std::string& name, bool track_creation_order) {
  const hid_t properties = untimed_group_properties(track_creation_order);
  const hid_t id = H5Gcreate2(parent.getId(), name.c_str(), H5P_DEFAULT, properties, H5P_DEFAULT);
  H5Pclose(properties);
  if (id < 0) throw H5::GroupIException("Hdf5Writer::group", "cannot create group " + name);
  Handle handle;
  handle.id = id;
  handle.group = std::make_unique<H5::Group>(id);
  if (H5Iget_ref(id) < 2) H5Iinc_ref(id);  // one reference for the C++ object, one for the writer
  handles_.push_back(std::move(handle));
  return *handles_.back().group;
}

const H5::DataSet& Hdf5Writer::dataset(const H5::Group& parent, const std::string& name, const H5::DataType& type,
                                       const H5::DataSpace& space, const H5::DSetCreatPropList& properties) {
  H5Pset_obj_track_times(properties.getId(), false);
  const hid_t id = H5Dcreate2(parent.getId(), name.c_str(), type.getId(), space.getId(), H5P_DEFAULT,
                              properties.getId(), H5P_DEFAULT);
  if (id < 0) throw H5::DataSetIException("Hdf5Writer::dataset", "cannot create dataset " + name);
  Handle handle;
  handle.id = id;
  handle.dataset = std::make_unique<H5::DataSet>(id);
  if (H5Iget_ref(id) < 2) H5Iinc_ref(id);
  handles_.push_back(std::move(handle));
  return *handles_.back().dataset;
}

void Hdf5Writer::close_handle(const std::deque<Handle>::iterator& handle) {
  const hid_t id = handle->id;
  const bool is_group = handle->group != nullptr;
  handles_.erase(handle);  // the C++ object drops its reference: ours is now the last one
  const herr_t status = is_group ? H5Gclose(id) : H5Dclose(id);
  if (status < 0) fail(stack_text(is_group ? "H5Gclose failed" : "H5Dclose failed"));
}

void Hdf5Writer::close(const H5::Group& group) {
  for (auto it = handles_.begin(); it != handles_.end(); ++it) {
    if (it->group.get() == &group) return close_handle(it);
  }
  throw std::logic_error("Hdf5Writer::close: the group is not one of this writer's");
}

void Hdf5Writer::close(const H5::DataSet& dataset) {
  for (auto it = handles_.end(); it != handles_.begin();) {  // the newest first: usually the one just written
    --it;
    if (it->dataset.get() == &dataset) return close_handle(it);
  }
  throw std::logic_error("Hdf5Writer::close: the dataset is not one of this writer's");
}

void Hdf5Writer::commit() {
  if (done_) throw std::logic_error("Hdf5Writer::commit called twice, or after a failure");
  // Datasets first (their chunks are flushed now), then groups innermost first.
  for (auto it = handles_.begin(); it != handles_.end();) {
    if (it->dataset) {
      close_handle(it);
      it = handles_.begin();
    } else {
      ++it;
    }
  }
  while (!handles_.empty()) close_handle(std::prev(handles_.end()));
  root_.reset();
  const ssize_t open = H5Fget_obj_count(file_, H5F_OBJ_ALL | H5F_OBJ_LOCAL);
  if (open != 1) {
    abandon();
    throw std::logic_error("Hdf5Writer::commit: " + std::to_string(open - 1) + " HDF5 objects of " + path_ +
                           " are still open (a handle copied out of the writer)");
  }
  // Everything still cached is written now, into reserved blocks (see reserve_file_space).
  const std::string no_space = reserve_file_space(file_);
  if (!no_space.empty()) fail(no_space);
  if (H5Fflush(file_, H5F_SCOPE_LOCAL) < 0) fail(stack_text("H5Fflush failed"));
  const hid_t file = file_;
  file_ = -1;  // closed once, whatever happens: a second H5Fclose after a failed one crashes libhdf5
  if (H5Fclose(file) < 0) fail(stack_text("H5Fclose failed"));
  done_ = true;
  commit_temporary(temporary_, path_);
}

void Hdf5Writer::fail(const std::string& what) {
  abandon();
  fail_input(path_, "cannot write the HDF5 file: " + what);
}

// After a failed write, libhdf5 1.10 cannot close the file cleanly: H5Fclose fails half-way and
// leaves an ID behind that crashes H5close() at exit. So the file's descriptor (sec2 driver) is
// first pointed at an anonymous in-memory file: the remaining flushes succeed and are thrown away,
// and every close below completes.
static void discard_further_writes(hid_t file) {
  void* handle = nullptr;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == nullptr) return;
  const int fd = *static_cast<int*>(handle);
  const int sink = ::memfd_create("kvsim-discarded-hdf5", 0);
  if (sink < 0) return;
  ::dup2(sink, fd);
  ::close(sink);
}

void Hdf5Writer::abandon() noexcept {
  if (done_) return;
  done_ = true;
  H5E_BEGIN_TRY {
    if (file_ >= 0) discard_further_writes(file_);
    while (!handles_.empty()) {
      const hid_t id = handles_.back().id;
      const bool is_group = handles_.back().group != nullptr;
      handles_.pop_back();
      if (is_group) H5Gclose(id);
      else H5Dclose(id);
    }
    root_.reset();
    if (file_ >= 0) H5Fclose(file_);
  }
  H5E_END_TRY;
  file_ = -1;
  H5Eclear2(H5E_DEFAULT);
  std::remove(temporary_.c_str());
}

void write_hdf5_file(const std::string& path, const std::function<void(Hdf5Writer&)>& fill, bool track_creation_order) {
  Hdf5Writer writer(path, track_creation_order);
  try {
    fill(writer);
  } catch (const H5::Exception& e) {
    fail_input(path, "cannot write the HDF5 file: " + stack_text(e.getDetailMsg()));  // ~Hdf5Writer cleans up
  }
  writer.commit();
}

}  // namespace kvsim

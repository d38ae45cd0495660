// open_trace_file / validate_trace_file: a TraceSource backed by an HDF5 trace file that keeps
// the file open and reads one layer group per load_layer call.
#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include "traces/hdf5_crash_guard.h"
#include "traces/hdf5_util.h"
#include "traces/trace_file.h"
#include "traces/trace_file_internal.h"
#include "util/error.h"

namespace kvsim {
namespace {

class FileTraceSource final : public TraceSource {
 public:
  FileTraceSource(std::string path, const H5::H5File& file, TraceHeader header)
      : path_(std::move(path)), file_(file), header_(std::move(header)) {}

  const TraceHeader& header() const override { return header_; }

  LayerTrace load_layer(const std::string& request_id, int layer) const override {
    const auto request = std::find_if(header_.requests.begin(), header_.requests.end(),
                                      [&](const RequestInfo& r) { return r.id == request_id; });
    if (request == header_.requests.end()) throw std::invalid_argument("load_layer: no request '" + request_id + "'");
    if (!std::binary_search(header_.traced_layers.begin(), header_.traced_layers.end(), layer)) {
      throw std::invalid_argument("load_layer: layer " + std::to_string(layer) + " is not traced");
    }
    const std::string group_path = "/requests/" + request_id + "/layer_" + std::to_string(layer);
    const detail::LayerContext context{
        path_, group_path, &header_.model, request->total_tokens(), request->prompt_tokens, layer};
    const Hdf5CrashGuard guard(path_);
    try {
      return detail::read_layer(file_.openGroup(group_path), context);
    } catch (const H5::Exception& e) {
      fail_input(path_, group_path + ": HDF5 read error (truncated or corrupt file?): " + h5::error_text(e));
    }
  }

 private:
  std::string path_;
  H5::H5File file_;
  TraceHeader header_;
};

H5::H5File open_hdf5(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail_input(path, "file does not exist");
  if (std::filesystem::is_directory(path, ec)) fail_input(path, "is a directory; expected an HDF5 trace file");
  try {
    if (!H5::H5File::isHdf5(path)) {
      fail_input(path, "not an HDF5 file (no HDF5 signature); expected a kvsim trace file, format version 1");
    }
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    fail_input(path, "cannot open as HDF5 (truncated or corrupt file?): " + h5::error_text(e));
  }
}

}  // namespace

std::unique_ptr<TraceSource> open_trace_file(const std::string& path) {
  H5::Exception::dontPrint();  // errors become InputErrors; HDF5's stack dump would be noise
  const Hdf5CrashGuard guard(path);
  H5::H5File file = open_hdf5(path);
  try {
    TraceHeader header = detail::read_trace_header(file, path);
    return std::make_unique<FileTraceSource>(path, std::move(file), std::move(header));
  } catch (const H5::Exception& e) {
    fail_input(path, "HDF5 read error (truncated or corrupt file?): " + h5::error_text(e));
  }
}

void validate_trace_file(const std::string& path,
                         const std::function<void(const std::string& request, int layer)>& on_layer) {
  const std::unique_ptr<TraceSource> source = open_trace_file(path);
  for (const RequestInfo& request : source->header().requests) {
    for (const int layer : source->header().traced_layers) {
      source->load_layer(request.id, layer);  // checks shapes and that every value is finite
      if (on_layer) on_layer(request.id, layer);
    }
  }
}

}  // namespace kvsim

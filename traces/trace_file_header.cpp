// Reading and checking a trace file's root attributes and request groups (DESIGN.md §3).
#include <string_view>

#include "traces/hdf5_util.h"
#include "traces/trace_file_internal.h"
#include "util/error.h"
#include "util/memory.h"

namespace kvsim::detail {
namespace {

constexpr std::int64_t kMaxTraceTokens = std::int64_t{1} << 40;

constexpr const char* kFormat = "kvsim-trace";
constexpr std::int64_t kVersion = 1;
constexpr std::string_view kGeneratorPrefix = "gen_";

// rope_scaling_type and its parameters (a compatible addition to format version 1: absent means
// none, as in every file written before them). ModelShape::validate checks that they agree.
RopeScaling read_rope_scaling(const h5::AttrReader& root) {
  RopeScaling scaling;
  if (root.has("rope_scaling_type")) scaling.type = root.string("rope_scaling_type");
  if (root.has("rope_scaling_factor")) scaling.factor = root.real("rope_scaling_factor");
  if (root.has("rope_scaling_low_freq_factor")) scaling.low_freq_factor = root.real("rope_scaling_low_freq_factor");
  if (root.has("rope_scaling_high_freq_factor")) scaling.high_freq_factor = root.real("rope_scaling_high_freq_factor");
  if (root.has("rope_scaling_original_max_position_embeddings")) {
    scaling.original_max_position_embeddings = root.integer("rope_scaling_original_max_position_embeddings");
  }
  return scaling;
}

ModelShape read_model(const h5::AttrReader& root, const std::string& path) {
  ModelShape model;
  model.name = root.string("model");
  model.num_layers = root.small_integer("num_layers");
  model.num_q_heads = root.small_integer("num_q_heads");
  model.num_kv_heads = root.small_integer("num_kv_heads");
  model.head_dim = root.small_integer("head_dim");
  model.rope_theta = root.real("rope_theta");
  model.rope_scaling = read_rope_scaling(root);
  if (root.has("kv_bits")) model.kv_bits = root.small_integer("kv_bits");
  model.validate(path + ": root attributes");
  return model;
}

std::vector<int> read_traced_layers(const h5::AttrReader& root, int num_layers) {
  std::vector<hsize_t> dims;
  const std::vector<std::int64_t> values = root.integers("traced_layers", &dims);
  if (dims.size() > 1) root.fail("traced_layers", "shape " + h5::shape_text(dims) + "; expected a 1-D integer array");
  if (values.empty()) root.fail("traced_layers", "is empty; expected at least one layer index");
  std::vector<int> layers;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] < 0 || values[i] >= num_layers) {
      root.fail("traced_layers", "layer " + std::to_string(values[i]) +
                                     " is out of range [0, num_layers=" + std::to_string(num_layers) + ")");
    }
    if (i > 0 && values[i] <= values[i - 1]) {
      root.fail("traced_layers", "not sorted and unique (" + std::to_string(values[i]) + " after " +
                                     std::to_string(values[i - 1]) + "); expected ascending layer indices");
    }
    layers.push_back(static_cast<int>(values[i]));
  }
  return layers;
}

std::vector<NeedleSpan> read_needles(const h5::AttrReader& attrs, std::int64_t total_tokens) {
  std::vector<NeedleSpan> needles;
  if (!attrs.has("needle_spans")) return needles;
  std::vector<hsize_t> dims;
  const std::vector<std::int64_t> values = attrs.integers("needle_spans", &dims);
  if (values.empty()) return needles;
  if (dims.size() != 2 || dims[1] != 2) {
    attrs.fail("needle_spans", "shape " + h5::shape_text(dims) + "; expected [num_needles, 2] of [begin, end)");
  }
  for (std::size_t i = 0; i + 1 < values.size(); i += 2) {
    const NeedleSpan span{values[i], values[i + 1]};
    if (span.begin < 0 || span.begin >= span.end || span.end > total_tokens) {
      attrs.fail("needle_spans", "span [" + std::to_string(span.begin) + ", " + std::to_string(span.end) +
                                     ") is not a non-empty range within [0, " + std::to_string(total_tokens) + ")");
    }
    needles.push_back(span);
  }
  return needles;
}

// Creation order when the writer tracked it (kvsim does), else HDF5's name order (h5py's default).
std::vector<std::string> child_names(const H5::Group& group) {
  unsigned flags = 0;
  const hid_t plist = H5Gget_create_plist(group.getId());
  if (plist >= 0) {
    H5Pget_link_creation_order(plist, &flags);
    H5Pclose(plist);
  }
  const H5_index_t index = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  std::vector<std::string> names;
  const hsize_t count = group.getNumObjs();
  for (hsize_t i = 0; i < count; ++i) {
    const ssize_t size = H5Lget_name_by_idx(group.getId(), ".", index, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (size < 0) throw H5::GroupIException("child_names", "H5Lget_name_by_idx failed");
    std::string name(static_cast<std::size_t>(size) + 1, '\0');
    H5Lget_name_by_idx(group.getId(), ".", index, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<std::size_t>(size));
    names.push_back(std::move(name));
  }
  return names;
}

RequestInfo read_request(const H5::Group& requests, const std::string& id, TraceHeader& header,
                         const std::string& path) {
  const std::string group_path = "/requests/" + id;
  if (requests.childObjType(id) != H5O_TYPE_GROUP)
    fail_input(path, group_path + ": is not a group; expected a request group");
  const H5::Group group = requests.openGroup(id);
  const h5::AttrReader attrs(path, group, group_path);
  RequestInfo request;
  request.id = id;
  request.prompt_tokens = attrs.integer("prompt_tokens");
  request.generated_tokens = attrs.integer("generated_tokens");
  // Far above any memory (the memory check below refuses real excess) and enough to keep
  // total_tokens() and the byte counts from overflowing.
  if (request.prompt_tokens < 1 || request.prompt_tokens > kMaxTraceTokens) {
    attrs.fail("prompt_tokens",
               std::to_string(request.prompt_tokens) + "; expected 1.." + std::to_string(kMaxTraceTokens));
  }
  if (request.generated_tokens < 0 || request.generated_tokens > kMaxTraceTokens) {
    attrs.fail("generated_tokens",
               std::to_string(request.generated_tokens) + "; expected 0.." + std::to_string(kMaxTraceTokens));
  }
  request.needles = read_needles(attrs, request.total_tokens());
  // kvsim holds one layer's keys and values (float32) at a time; refuse what cannot fit up front.
  check_fits_in_memory(
      2.0 * header.model.num_kv_heads * static_cast<double>(request.total_tokens()) * header.model.head_dim * 4, path,
      group_path + ": one layer's keys and values (" + std::to_string(request.total_tokens()) + " tokens)");
  for (const int layer : header.traced_layers) {
    const std::string name = "layer_" + std::to_string(layer);
    if (!group.nameExists(name) || group.childObjType(name) != H5O_TYPE_GROUP) {
      fail_input(path, h5::join(group_path, name) + ": missing group; traced_layers lists layer " +
                           std::to_string(layer) + ", so every request needs it");
    }
    const LayerContext context{
        path, h5::join(group_path, name), &header.model, request.total_tokens(), request.prompt_tokens, layer};
    LayerLayout layout = read_layer_layout(group.openGroup(name), context);
    if (layout.has_recon_queries) header.recon_query_layers[id].push_back(layer);
    if (layout.has_recon_passes) header.recon_pass_layers[id].push_back(layer);
    header.query_positions[id][layer] = std::move(layout.query_positions);
  }
  return request;
}

}  // namespace

TraceHeader read_trace_header(const H5::H5File& file, const std::string& path) {
  const h5::AttrReader root(path, file, "");
  const std::string format = root.string("format");
  if (format != kFormat) root.fail("format", "is \"" + format + "\"; expected \"" + std::string(kFormat) + "\"");
  const std::int64_t version = root.integer("version");
  if (version != kVersion) {
    root.fail("version", "is " + std::to_string(version) + "; this kvsim reads format version " +
                             std::to_string(kVersion) + " only");
  }
  TraceHeader header;
  // A compatible addition to version 1 (absent: 0); any minor version is read.
  if (root.has("version_minor")) {
    header.version_minor = root.integer("version_minor");
    if (header.version_minor < 0) {
      root.fail("version_minor", "is " + std::to_string(header.version_minor) + "; expected an integer >= 0");
    }
  }
  header.model = read_model(root, path);
  header.source = root.string("source");
  if (header.source != "recorded" && header.source != "synthetic") {
    root.fail("source", "is \"" + header.source + "\"; expected \"recorded\" or \"synthetic\"");
  }
  if (root.has("seed") || header.source == "synthetic") header.seed = root.unsigned_integer("seed");
  header.traced_layers = read_traced_layers(root, header.model.num_layers);
  for (const std::string& name : root.names()) {
    if (name.rfind(kGeneratorPrefix, 0) == 0) header.generator[name.substr(kGeneratorPrefix.size())] = root.text(name);
  }

  if (!file.nameExists("requests") || file.childObjType("requests") != H5O_TYPE_GROUP) {
    fail_input(path, "/requests: missing group; expected one subgroup per request");
  }
  const H5::Group requests = file.openGroup("requests");
  for (const std::string& id : child_names(requests))
    header.requests.push_back(read_request(requests, id, header, path));
  if (header.requests.empty()) fail_input(path, "/requests: has no request groups; expected at least one");
  return header;
}

}  // namespace kvsim::detail

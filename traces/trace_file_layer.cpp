// Reading one layer group of a trace file: its layout (cheap, checked on open) and its values
// (checked finite on load).
#include <algorithm>
#include <cmath>
#include <optional>

#include "traces/float16.h"
#include "traces/hdf5_util.h"
#include "traces/trace_file_internal.h"
#include "util/error.h"

namespace kvsim::detail {
namespace {

[[noreturn]] void fail_at(const LayerContext& context, const std::string& name, const std::string& problem) {
  fail_input(context.file, h5::join(context.group_path, name) + ": " + problem);
}

// Called straight from the catch of a failed read: unwinding further would run HDF5 destructors,
// which clear the error stack that says what went wrong.
[[noreturn]] void read_failed(const LayerContext& context, const std::string& name, const H5::Exception& e) {
  fail_at(context, name, "HDF5 read error (corrupt file?): " + h5::error_text(e));
}

std::optional<H5::DataSet> open_dataset(const H5::Group& group, const LayerContext& context, const std::string& name,
                                        bool required) {
  if (!group.nameExists(name)) {
    if (!required) return std::nullopt;
    fail_at(context, name, "missing dataset");
  }
  if (group.childObjType(name) != H5O_TYPE_DATASET) fail_at(context, name, "is not a dataset");
  return group.openDataSet(name);
}

// [heads, tokens, head_dim] of float16/32/64; `tokens` < 0 means any length. Returns the token count.
std::int64_t check_float_dataset(const H5::DataSet& dataset, const LayerContext& context, const std::string& name,
                                 int heads, std::int64_t tokens, const char* heads_name, const char* tokens_name) {
  if (dataset.getTypeClass() != H5T_FLOAT)
    fail_at(context, name, "element type is not floating point; expected float16 or float32");
  if (const std::string source = h5::missing_virtual_source(dataset, context.file); !source.empty()) {
    fail_at(context, name, "virtual dataset whose source " + source + " cannot be opened (HDF5 would read zeros)");
  }
  const std::vector<hsize_t> dims = h5::dims_of(dataset.getSpace());
  const bool ok = dims.size() == 3 && dims[0] == static_cast<hsize_t>(heads) &&
                  (tokens < 0 || dims[1] == static_cast<hsize_t>(tokens)) &&
                  dims[2] == static_cast<hsize_t>(context.model->head_dim);
  if (!ok) {
    const std::string token_text =
        tokens < 0 ? std::string(tokens_name) : std::string(tokens_name) + "=" + std::to_string(tokens);
    fail_at(context, name,
            "shape " + h5::shape_text(dims) + " does not match [" + heads_name + "=" + std::to_string(heads) + ", " +
                token_text + ", head_dim=" + std::to_string(context.model->head_dim) + "]");
  }
  return static_cast<std::int64_t>(dims[1]);
}

// An integer dataset of shape `dims` (its names in `dims_text` for messages), read as int64.
std::vector<std::int64_t> read_int64s(const H5::DataSet& dataset, const LayerContext& context, const std::string& name,
                                      const std::vector<hsize_t>& dims, const std::string& dims_text) {
  if (dataset.getTypeClass() != H5T_INTEGER) fail_at(context, name, "element type is not integer; expected int64");
  const std::vector<hsize_t> got = h5::dims_of(dataset.getSpace());
  if (got != dims) fail_at(context, name, "shape " + h5::shape_text(got) + " does not match " + dims_text);
  std::size_t count = 1;
  for (const hsize_t d : dims) count *= static_cast<std::size_t>(d);
  std::vector<std::int64_t> values(count);
  try {
    if (!values.empty()) dataset.read(values.data(), H5::PredType::NATIVE_INT64);
  } catch (const H5::Exception& e) {
    read_failed(context, name, e);
  }
  return values;
}

std::vector<std::int64_t> read_positions(const H5::DataSet& dataset, const LayerContext& context,
                                         std::int64_t num_queries) {
  const std::string name = "query_positions";
  std::vector<std::int64_t> positions =
      read_int64s(dataset, context, name, {static_cast<hsize_t>(num_queries)},
                  "[T_q=" + std::to_string(num_queries) + "] (one position per stored query)");
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= context.total_tokens) {
      fail_at(context, name,
              "position " + std::to_string(positions[i]) + " at index " + std::to_string(i) + " is out of range [0, " +
                  std::to_string(context.total_tokens) + ") (prompt+generated tokens)");
    }
    if (i > 0 && positions[i] <= positions[i - 1]) {
      fail_at(context, name,
              "not strictly ascending: index " + std::to_string(i) + " holds " + std::to_string(positions[i]) +
                  " after " + std::to_string(positions[i - 1]) + "; expected sorted unique positions");
    }
  }
  return positions;
}

// recon_passes [P, 4] (context_begin, context_end, key_begin, key_end): contexts ascending and
// disjoint within the prompt, key ranges non-empty and tiling [0, R) in order.
std::vector<ReconPass> read_recon_passes(const H5::DataSet& dataset, const LayerContext& context, std::int64_t keys) {
  const std::string name = "recon_passes";
  const std::vector<hsize_t> dims = h5::dims_of(dataset.getSpace());
  if (dims.size() != 2 || dims[1] != 4 || dims[0] == 0) {
    fail_at(
        context, name,
        "shape " + h5::shape_text(dims) + "; expected [P >= 1, 4] of (context_begin, context_end, key_begin, key_end)");
  }
  const std::vector<std::int64_t> v = read_int64s(dataset, context, name, dims, "[P, 4]");
  std::vector<ReconPass> passes;
  for (std::size_t i = 0; i < v.size(); i += 4) {
    const ReconPass p{v[i], v[i + 1], v[i + 2], v[i + 3]};
    const std::string row = "pass " + std::to_string(passes.size()) + " (" + std::to_string(p.context_begin) + ", " +
                            std::to_string(p.context_end) + ", " + std::to_string(p.key_begin) + ", " +
                            std::to_string(p.key_end) + ")";
    const std::int64_t context_floor = passes.empty() ? 0 : passes.back().context_end;
    if (p.context_begin < context_floor || p.context_begin >= p.context_end || p.context_end > context.prompt_tokens) {
      fail_at(context, name,
              row + ": context [begin, end) must be non-empty, within the prompt [0, " +
                  std::to_string(context.prompt_tokens) + ") and after the previous pass's");
    }
    const std::int64_t key_floor = passes.empty() ? 0 : passes.back().key_end;
    if (p.key_begin != key_floor || p.key_end <= p.key_begin) {
      fail_at(context, name,
              row + ": key rows must be non-empty and start where the previous pass's end (" +
                  std::to_string(key_floor) + ")");
    }
    passes.push_back(p);
  }
  if (passes.back().key_end != keys) {
    fail_at(context, name,
            "the passes' key rows end at " + std::to_string(passes.back().key_end) +
                "; recon_keys holds R=" + std::to_string(keys));
  }
  return passes;
}

// recon_passes, recon_keys and recon_query_rows (format 1.1): all or none, and only with recon_queries.
void read_recon_pass_layout(const H5::Group& group, const LayerContext& context, LayerLayout& layout) {
  const auto passes = open_dataset(group, context, "recon_passes", false);
  const auto keys = open_dataset(group, context, "recon_keys", false);
  const auto rows = open_dataset(group, context, "recon_query_rows", false);
  if (!passes && !keys && !rows) return;
  if (!passes || !keys || !rows || !layout.has_recon_queries) {
    const char* missing = !passes ? "recon_passes"
                          : !keys ? "recon_keys"
                          : !rows ? "recon_query_rows"
                                  : "recon_queries";
    fail_at(context, missing,
            "missing dataset; recon_passes, recon_keys and recon_query_rows come together, with recon_queries");
  }
  const ModelShape& model = *context.model;
  layout.has_recon_passes = true;
  layout.num_recon_keys =
      check_float_dataset(*keys, context, "recon_keys", model.num_kv_heads, -1, "num_kv_heads", "R");
  layout.recon_passes = read_recon_passes(*passes, context, layout.num_recon_keys);
  const auto t_r = static_cast<hsize_t>(layout.num_recon_queries);
  layout.recon_query_rows = read_int64s(*rows, context, "recon_query_rows", {t_r},
                                        "[T_r=" + std::to_string(t_r) + "] (one recon_keys row per recon query)");
  const auto& r = layout.recon_query_rows;
  for (std::size_t i = 0; i < r.size(); ++i) {
    if (r[i] < 0 || r[i] >= layout.num_recon_keys || (i > 0 && r[i] <= r[i - 1])) {
      fail_at(context, "recon_query_rows",
              "row " + std::to_string(r[i]) + " at index " + std::to_string(i) +
                  " is out of range [0, R=" + std::to_string(layout.num_recon_keys) +
                  ") or not after the previous; expected strictly ascending recon_keys rows");
    }
  }
}

void read_layer_attributes(const H5::Group& group, const LayerContext& context, LayerLayout& layout) {
  const h5::AttrReader attrs(context.file, group, context.group_path);
  const int kv_heads = context.model->num_kv_heads;
  if (attrs.has("needle_heads")) {
    for (const std::int64_t head : attrs.integers("needle_heads")) {
      if (head < 0 || head >= kv_heads) {
        attrs.fail("needle_heads", "head " + std::to_string(head) +
                                       " is out of range [0, num_kv_heads=" + std::to_string(kv_heads) + ")");
      }
      layout.needle_heads.push_back(static_cast<int>(head));
    }
  }
  if (attrs.has("head_archetypes")) {
    layout.head_archetypes = attrs.strings("head_archetypes");
    if (layout.head_archetypes.size() != static_cast<std::size_t>(kv_heads)) {
      attrs.fail("head_archetypes", "has " + std::to_string(layout.head_archetypes.size()) +
                                        " entries; expected one per KV head (num_kv_heads=" + std::to_string(kv_heads) +
                                        ")");
    }
  }
}

// Reads [heads, rows, head_dim] one head at a time, so HDF5 reads whole chunks into each matrix.
std::vector<HeadMatrix> read_heads(const H5::DataSet& dataset, const LayerContext& context, const std::string& name,
                                   int heads, std::int64_t rows) {
  const auto cols = static_cast<hsize_t>(context.model->head_dim);
  H5::DataSpace file_space = dataset.getSpace();
  const hsize_t mem_dims[2] = {static_cast<hsize_t>(rows), cols};
  const H5::DataSpace mem_space(2, mem_dims);
  // Half precision is read raw and widened here: HDF5's own conversion is far slower.
  const bool half = dataset.getDataType().getSize() == 2;
  const H5::FloatType half_type = h5::float16_type();
  std::vector<std::uint16_t> raw(half ? static_cast<std::size_t>(rows) * cols : 0);
  std::vector<HeadMatrix> out;
  out.reserve(static_cast<std::size_t>(heads));
  for (int head = 0; head < heads; ++head) {
    HeadMatrix& m = out.emplace_back(rows, static_cast<Eigen::Index>(cols));
    if (m.size() == 0) continue;
    const hsize_t start[3] = {static_cast<hsize_t>(head), 0, 0};
    const hsize_t count[3] = {1, static_cast<hsize_t>(rows), cols};
    file_space.selectHyperslab(H5S_SELECT_SET, count, start);
    try {
      if (half) {
        dataset.read(raw.data(), half_type, mem_space, file_space);
      } else {
        dataset.read(m.data(), H5::PredType::NATIVE_FLOAT, mem_space, file_space);
      }
    } catch (const H5::Exception& e) {
      read_failed(context, name, e);
    }
    if (half) std::transform(raw.begin(), raw.end(), m.data(), half_to_float);
    if (m.allFinite()) continue;
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
      for (Eigen::Index c = 0; c < m.cols(); ++c) {
        if (std::isfinite(m(r, c))) continue;
        fail_at(context, name,
                "non-finite value " + std::to_string(m(r, c)) + " at [head " + std::to_string(head) + ", token row " +
                    std::to_string(r) + ", dim " + std::to_string(c) + "]; expected finite numbers");
      }
    }
  }
  return out;
}

}  // namespace

LayerLayout read_layer_layout(const H5::Group& group, const LayerContext& context) {
  const ModelShape& model = *context.model;
  LayerLayout layout;
  check_float_dataset(*open_dataset(group, context, "keys", true), context, "keys", model.num_kv_heads,
                      context.total_tokens, "num_kv_heads", "prompt+generated");
  check_float_dataset(*open_dataset(group, context, "values", true), context, "values", model.num_kv_heads,
                      context.total_tokens, "num_kv_heads", "prompt+generated");
  layout.num_queries = check_float_dataset(*open_dataset(group, context, "queries", true), context, "queries",
                                           model.num_q_heads, -1, "num_q_heads", "T_q");
  // Fidelity needs the decode positions and every policy scores with some queries: a layer with
  // none can only fail later, deep in a replay.
  if (layout.num_queries == 0) {
    fail_at(context, "queries", "holds no stored queries (T_q = 0); expected at least the decode positions");
  }
  layout.query_positions =
      read_positions(*open_dataset(group, context, "query_positions", true), context, layout.num_queries);
  if (const auto recon = open_dataset(group, context, "recon_queries", false)) {
    layout.has_recon_queries = true;
    layout.num_recon_queries =
        check_float_dataset(*recon, context, "recon_queries", model.num_q_heads, -1, "num_q_heads", "T_r");
  }
  read_recon_pass_layout(group, context, layout);
  read_layer_attributes(group, context, layout);
  return layout;
}

LayerTrace read_layer(const H5::Group& group, const LayerContext& context) {
  LayerLayout layout = read_layer_layout(group, context);
  const ModelShape& model = *context.model;
  LayerTrace trace;
  trace.layer = context.layer;
  trace.origin = context.file + ": " + context.group_path;
  trace.keys = read_heads(group.openDataSet("keys"), context, "keys", model.num_kv_heads, context.total_tokens);
  trace.values = read_heads(group.openDataSet("values"), context, "values", model.num_kv_heads, context.total_tokens);
  trace.queries = read_heads(group.openDataSet("queries"), context, "queries", model.num_q_heads, layout.num_queries);
  if (layout.has_recon_queries) {
    trace.recon_queries = read_heads(group.openDataSet("recon_queries"), context, "recon_queries", model.num_q_heads,
                                     layout.num_recon_queries);
  }
  if (layout.has_recon_passes) {
    trace.recon_keys =
        read_heads(group.openDataSet("recon_keys"), context, "recon_keys", model.num_kv_heads, layout.num_recon_keys);
    trace.recon_passes = std::move(layout.recon_passes);
    trace.recon_query_rows = std::move(layout.recon_query_rows);
  }
  trace.query_positions = std::move(layout.query_positions);
  trace.needle_heads = std::move(layout.needle_heads);
  trace.head_archetypes = std::move(layout.head_archetypes);
  return trace;
}

}  // namespace kvsim::detail

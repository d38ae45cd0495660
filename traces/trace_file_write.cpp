// write_trace_file: streams a TraceSource into an HDF5 trace file (format v1), one layer in memory
// at a time, and publishes it whole through an Hdf5Writer (temporary name, every handle closed and
// checked, then rename).
#include <algorithm>
#include <stdexcept>

#include "traces/float16.h"
#include "traces/hdf5_util.h"
#include "traces/hdf5_writer.h"
#include "traces/trace_file.h"
#include "util/error.h"

namespace kvsim {
namespace {

constexpr hsize_t kMaxChunkTokens = 4096;

void write_header(const H5::Group& file, const TraceHeader& header) {
  const ModelShape& model = header.model;
  h5::write_string(file, "format", "kvsim-trace");
  h5::write_integer(file, "version", 1);
  h5::write_integer(file, "version_minor", 1);  // 1.1: optional reconstruction passes
  h5::write_string(file, "model", model.name);
  h5::write_integer(file, "num_layers", model.num_layers);
  h5::write_integer(file, "num_q_heads", model.num_q_heads);
  h5::write_integer(file, "num_kv_heads", model.num_kv_heads);
  h5::write_integer(file, "head_dim", model.head_dim);
  h5::write_real(file, "rope_theta", model.rope_theta);
  // Only when there is one: files of unscaled models stay as they were before rope scaling existed.
  const RopeScaling& scaling = model.rope_scaling;
  if (!scaling.none()) {
    h5::write_string(file, "rope_scaling_type", scaling.type);
    if (scaling.factor) h5::write_real(file, "rope_scaling_factor", *scaling.factor);
    if (scaling.low_freq_factor) h5::write_real(file, "rope_scaling_low_freq_factor", *scaling.low_freq_factor);
    if (scaling.high_freq_factor) h5::write_real(file, "rope_scaling_high_freq_factor", *scaling.high_freq_factor);
    if (scaling.original_max_position_embeddings) {
      h5::write_integer(file, "rope_scaling_original_max_position_embeddings",
                        *scaling.original_max_position_embeddings);
    }
  }
  h5::write_integer(file, "kv_bits", model.kv_bits);
  h5::write_string(file, "source", header.source);
  const std::vector<std::int64_t> layers(header.traced_layers.begin(), header.traced_layers.end());
  h5::write_integers(file, "traced_layers", layers, {layers.size()});
  if (header.source == "synthetic" || header.seed != 0) h5::write_unsigned(file, "seed", header.seed);
  for (const auto& [key, value] : header.generator) h5::write_string(file, "gen_" + key, value);
}

void write_request_attributes(const H5::Group& group, const RequestInfo& request) {
  h5::write_integer(group, "prompt_tokens", request.prompt_tokens);
  h5::write_integer(group, "generated_tokens", request.generated_tokens);
  if (request.needles.empty()) return;
  std::vector<std::int64_t> spans;
  for (const NeedleSpan& span : request.needles) spans.insert(spans.end(), {span.begin, span.end});
  h5::write_integers(group, "needle_spans", spans, {request.needles.size(), 2});
}

// A source that hands back the wrong shapes is a bug in kvsim, not bad input.
void check_heads(const std::vector<HeadMatrix>& heads, std::size_t count, Eigen::Index rows, Eigen::Index cols,
                 const std::string& what) {
  bool ok = heads.size() == count;
  for (const HeadMatrix& m : heads) ok = ok && m.rows() == rows && m.cols() == cols;
  if (!ok) throw std::logic_error("write_trace_file: trace source returned " + what + " of the wrong shape");
}

void write_heads(Hdf5Writer& writer, const H5::Group& group, const std::string& name,
                 const std::vector<HeadMatrix>& heads, hsize_t rows, hsize_t cols, const TraceWriteOptions& options,
                 const std::string& path, const std::string& where) {
  const hsize_t dims[3] = {heads.size(), rows, cols};
  H5::DataSpace file_space(3, dims);
  H5::DSetCreatPropList plist;
  if (dims[0] * rows * cols > 0) {  // HDF5 rejects chunks larger than a fixed zero-length dimension
    const hsize_t chunk[3] = {1, std::min(rows, kMaxChunkTokens), cols};
    plist.setChunk(3, chunk);
    if (options.gzip_level > 0) plist.setDeflate(static_cast<unsigned>(options.gzip_level));
  }
  const H5::DataSet& dataset = options.float16
                                   ? writer.dataset(group, name, h5::float16_type(), file_space, plist)
                                   : writer.dataset(group, name, H5::PredType::IEEE_F32LE, file_space, plist);
  const hsize_t mem_dims[2] = {rows, cols};
  const H5::DataSpace mem_space(2, mem_dims);
  const H5::FloatType half_type = h5::float16_type();
  std::vector<std::uint16_t> half(options.float16 ? rows * cols : 0);
  for (std::size_t head = 0; head < heads.size(); ++head) {
    const HeadMatrix& m = heads[head];
    if (m.size() == 0) continue;
    const hsize_t start[3] = {head, 0, 0};
    const hsize_t count[3] = {1, rows, cols};
    file_space.selectHyperslab(H5S_SELECT_SET, count, start);
    if (!options.float16) {
      dataset.write(m.data(), H5::PredType::NATIVE_FLOAT, mem_space, file_space);
      continue;
    }
    // Narrowed here, not by HDF5 (far slower); an infinity would only be rejected on reading.
    std::transform(m.data(), m.data() + m.size(), half.begin(), float_to_half);
    if (!std::all_of(half.begin(), half.end(), half_is_finite)) {
      fail_input(path, where + "/" + name + ": head " + std::to_string(head) +
                           " has a value beyond float16 range (|x| < 65520) or not finite; write float32 instead");
    }
    dataset.write(half.data(), half_type, mem_space, file_space);
  }
  writer.close(dataset);  // its chunks are flushed here: a full disk is reported now, naming the file
}

void write_int64s(Hdf5Writer& writer, const H5::Group& group, const std::string& name,
                  const std::vector<std::int64_t>& values, const std::vector<hsize_t>& dims) {
  const H5::DataSet& dataset =
      writer.dataset(group, name, H5::PredType::STD_I64LE, H5::DataSpace(static_cast<int>(dims.size()), dims.data()));
  if (!values.empty()) dataset.write(values.data(), H5::PredType::NATIVE_INT64);
  writer.close(dataset);
}

// recon_passes, recon_keys, recon_query_rows (format 1.1), checked for shape as the reader checks them.
void write_recon_passes(Hdf5Writer& writer, const H5::Group& group, const LayerTrace& trace, const ModelShape& model,
                        const TraceWriteOptions& options, const std::string& path, const std::string& where) {
  if (trace.recon_passes.empty()) return;
  if (trace.recon_keys.empty() || trace.recon_queries.empty() ||
      trace.recon_query_rows.size() != static_cast<std::size_t>(trace.recon_queries.front().rows())) {
    throw std::logic_error(where + ": recon_passes without recon_keys, or recon_query_rows not one per recon query");
  }
  const Eigen::Index rows = trace.recon_keys.front().rows();
  check_heads(trace.recon_keys, static_cast<std::size_t>(model.num_kv_heads), rows, model.head_dim,
              where + " recon_keys");
  std::vector<std::int64_t> passes;
  for (const ReconPass& p : trace.recon_passes)
    passes.insert(passes.end(), {p.context_begin, p.context_end, p.key_begin, p.key_end});
  write_int64s(writer, group, "recon_passes", passes, {trace.recon_passes.size(), 4});
  write_heads(writer, group, "recon_keys", trace.recon_keys, static_cast<hsize_t>(rows),
              static_cast<hsize_t>(model.head_dim), options, path, where);
  write_int64s(writer, group, "recon_query_rows", trace.recon_query_rows, {trace.recon_query_rows.size()});
}

void write_layer(Hdf5Writer& writer, const H5::Group& group, const LayerTrace& trace, const ModelShape& model,
                 std::int64_t total_tokens, const TraceWriteOptions& options, const std::string& path,
                 const std::string& where) {
  const auto num_queries = static_cast<Eigen::Index>(trace.query_positions.size());
  const auto kv_heads = static_cast<std::size_t>(model.num_kv_heads);
  const auto q_heads = static_cast<std::size_t>(model.num_q_heads);
  check_heads(trace.keys, kv_heads, total_tokens, model.head_dim, where + " keys");
  check_heads(trace.values, kv_heads, total_tokens, model.head_dim, where + " values");
  check_heads(trace.queries, q_heads, num_queries, model.head_dim, where + " queries");
  const hsize_t cols = static_cast<hsize_t>(model.head_dim);
  write_heads(writer, group, "keys", trace.keys, static_cast<hsize_t>(total_tokens), cols, options, path, where);
  write_heads(writer, group, "values", trace.values, static_cast<hsize_t>(total_tokens), cols, options, path, where);
  write_heads(writer, group, "queries", trace.queries, static_cast<hsize_t>(num_queries), cols, options, path, where);
  const hsize_t positions_dims[1] = {trace.query_positions.size()};
  const H5::DataSet& positions =
      writer.dataset(group, "query_positions", H5::PredType::STD_I64LE, H5::DataSpace(1, positions_dims));
  if (!trace.query_positions.empty()) positions.write(trace.query_positions.data(), H5::PredType::NATIVE_INT64);
  if (!trace.recon_queries.empty()) {
    const Eigen::Index recon_rows = trace.recon_queries.front().rows();
    check_heads(trace.recon_queries, q_heads, recon_rows, model.head_dim, where + " recon_queries");
    write_heads(writer, group, "recon_queries", trace.recon_queries, static_cast<hsize_t>(recon_rows), cols, options,
                path, where);
    write_recon_passes(writer, group, trace, model, options, path, where);
  }
  if (!trace.needle_heads.empty()) {
    const std::vector<std::int64_t> heads(trace.needle_heads.begin(), trace.needle_heads.end());
    h5::write_integers(group, "needle_heads", heads, {heads.size()});
  }
  if (!trace.head_archetypes.empty()) h5::write_strings(group, "head_archetypes", trace.head_archetypes);
  writer.close(positions);
}

void write_contents(Hdf5Writer& writer, const TraceSource& source, const TraceWriteOptions& options,
                    const std::string& path,
                    const std::function<void(const std::string& request, int layer)>& on_layer) {
  const TraceHeader& header = source.header();
  write_header(writer.root(), header);
  // Tracks creation order so readers list requests in the order the source gave them.
  const H5::Group& requests = writer.group(writer.root(), "requests", /*track_creation_order=*/true);
  for (const RequestInfo& request : header.requests) {
    if (request.id.empty() || request.id == "." || request.id.find('/') != std::string::npos) {
      fail_input(path, "request id '" + request.id + "' cannot name an HDF5 group (empty, '.', or contains '/')");
    }
    const H5::Group& group = writer.group(requests, request.id);
    write_request_attributes(group, request);
    for (const int layer : header.traced_layers) {
      const std::string name = "layer_" + std::to_string(layer);
      const LayerTrace trace = source.load_layer(request.id, layer);  // dropped after this iteration
      const H5::Group& layer_group = writer.group(group, name);
      write_layer(writer, layer_group, trace, header.model, request.total_tokens(), options, path,
                  "/requests/" + request.id + "/" + name);
      writer.close(layer_group);
      if (on_layer) on_layer(request.id, layer);
    }
    writer.close(group);
  }
  writer.close(requests);
}

}  // namespace

void write_trace_file(const std::string& path, const TraceSource& source, const TraceWriteOptions& options,
                      const std::function<void(const std::string& request, int layer)>& on_layer) {
  if (options.gzip_level < 0 || options.gzip_level > 9) {
    fail_input(path, "gzip level " + std::to_string(options.gzip_level) + " is out of range; expected 0 (none) to 9");
  }
  write_hdf5_file(path, [&](Hdf5Writer& writer) { write_contents(writer, source, options, path, on_layer); });
}

}  // namespace kvsim

// HDF5 trace files (DESIGN.md §3): round trips, float16 storage, and one clear InputError per kind
// of malformed file.
#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "traces/trace_file.h"
#include "util/error.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

class MemorySource : public TraceSource {
 public:
  const TraceHeader& header() const override { return trace_header; }
  LayerTrace load_layer(const std::string& request_id, int layer) const override {
    if (fail_after_loads >= 0 && loads++ >= fail_after_loads) throw std::runtime_error("source failed on purpose");
    return layers.at({request_id, layer});
  }

  TraceHeader trace_header;
  std::map<std::pair<std::string, int>, LayerTrace> layers;
  int fail_after_loads = -1;
  mutable int loads = 0;
};

std::vector<HeadMatrix> random_heads(std::mt19937& rng, int heads, std::int64_t rows, int cols) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<HeadMatrix> out;
  for (int h = 0; h < heads; ++h) {
    HeadMatrix& m = out.emplace_back(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  }
  return out;
}

// Two requests listed out of name order ("b" before "a"), layers 0 and 2 of 3, needles, needle
// heads, archetypes, recon queries on one layer and generator parameters.
MemorySource make_source() {
  MemorySource source;
  TraceHeader& h = source.trace_header;
  h.model = ModelShape{"tiny-test", 3, 4, 2, 8, 8, 500000.0};
  h.source = "synthetic";
  h.traced_layers = {0, 2};
  h.seed = 12345678901234567890ULL;
  h.generator = {{"num_needles", "2"}, {"question_tokens", "4"}};
  h.requests = {RequestInfo{"b", 20, 5, {{3, 6}, {10, 12}}}, RequestInfo{"a", 12, 0, {}}};
  std::mt19937 rng(7);
  for (const RequestInfo& request : h.requests) {
    for (const int layer : h.traced_layers) {
      LayerTrace& t = source.layers[{request.id, layer}];
      t.layer = layer;
      for (std::int64_t p = request.total_tokens() - 4; p < request.total_tokens(); ++p) t.query_positions.push_back(p);
      t.keys = random_heads(rng, 2, request.total_tokens(), 8);
      t.values = random_heads(rng, 2, request.total_tokens(), 8);
      t.queries = random_heads(rng, 4, static_cast<std::int64_t>(t.query_positions.size()), 8);
      if (request.id == "b" && layer == 2) {
        t.recon_queries = random_heads(rng, 4, 3, 8);
        // Format 1.1: two passes re-reading [2, 6) and [6, 10), 2 + 3 repeat tokens.
        t.recon_passes = {{2, 6, 0, 2}, {6, 10, 2, 5}};
        t.recon_keys = random_heads(rng, 2, 5, 8);
        t.recon_query_rows = {1, 2, 4};
      }
      if (request.id == "b" && layer == 0) {
        t.needle_heads = {1};
        t.head_archetypes = {"sink", "retrieval"};
      }
    }
  }
  return source;
}

bool same_bits(const std::vector<HeadMatrix>& a, const std::vector<HeadMatrix>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].rows() != b[i].rows() || a[i].cols() != b[i].cols()) return false;
    if (std::memcmp(a[i].data(), b[i].data(), sizeof(float) * a[i].size()) != 0) return false;
  }
  return true;
}

// The error must be an InputError, one line, containing every part.
void expect_input_error(const std::function<void()>& action, const std::vector<std::string>& parts) {
  try {
    action();
    ADD_FAILURE() << "expected kvsim::InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected kvsim::InputError, got another exception: " << e.what();
  }
}

class TraceFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path(::testing::TempDir()) / ("kvsim_trace_file_" + std::to_string(::getpid()) + "_" + test);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "trace.h5").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes the standard source, then lets `edit` damage the file through the HDF5 API.
  void write_and_edit(const std::function<void(H5::H5File&)>& edit) {
    write_trace_file(path_, make_source(), {});
    H5::H5File file(path_, H5F_ACC_RDWR);
    edit(file);
    file.close();
  }

  fs::path dir_;
  std::string path_;
};

void replace_int_attribute(const H5::H5Object& object, const std::string& name, const H5::PredType& type,
                           std::int64_t value) {
  if (object.attrExists(name)) object.removeAttr(name);
  object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_INT64, &value);
}

void replace_positions(H5::H5File& file, const std::string& group, const std::vector<std::int64_t>& positions) {
  H5::DataSet dataset = file.openDataSet(group + "/query_positions");
  dataset.write(positions.data(), H5::PredType::NATIVE_INT64);
}

TEST_F(TraceFileTest, RoundTripFloat32IsBitExact) {
  const MemorySource source = make_source();
  for (const int gzip : {0, 6}) {
    int progress = 0;
    write_trace_file(path_, source, {false, gzip}, [&](const std::string&, int) { ++progress; });
    EXPECT_EQ(progress, 4);
    const auto read = open_trace_file(path_);
    const TraceHeader& h = read->header();
    const TraceHeader& want = source.trace_header;
    EXPECT_EQ(h.model.name, "tiny-test");
    EXPECT_EQ(h.model.num_layers, 3);
    EXPECT_EQ(h.model.num_q_heads, 4);
    EXPECT_EQ(h.model.num_kv_heads, 2);
    EXPECT_EQ(h.model.head_dim, 8);
    EXPECT_EQ(h.model.kv_bits, 8);
    EXPECT_EQ(h.model.rope_theta, 500000.0);
    EXPECT_EQ(h.source, "synthetic");
    EXPECT_EQ(h.traced_layers, want.traced_layers);
    EXPECT_EQ(h.seed, want.seed);
    EXPECT_EQ(h.generator, want.generator);
    ASSERT_EQ(h.requests.size(), 2u);
    for (std::size_t r = 0; r < 2; ++r) {
      EXPECT_EQ(h.requests[r].id, want.requests[r].id);  // creation order, not name order
      EXPECT_EQ(h.requests[r].prompt_tokens, want.requests[r].prompt_tokens);
      EXPECT_EQ(h.requests[r].generated_tokens, want.requests[r].generated_tokens);
      ASSERT_EQ(h.requests[r].needles.size(), want.requests[r].needles.size());
      for (std::size_t n = 0; n < h.requests[r].needles.size(); ++n) {
        EXPECT_EQ(h.requests[r].needles[n].begin, want.requests[r].needles[n].begin);
        EXPECT_EQ(h.requests[r].needles[n].end, want.requests[r].needles[n].end);
      }
    }
    for (const auto& [key, expected] : source.layers) {
      const LayerTrace got = read->load_layer(key.first, key.second);
      SCOPED_TRACE("request " + key.first + " layer " + std::to_string(key.second) + " gzip " + std::to_string(gzip));
      EXPECT_EQ(got.layer, key.second);
      EXPECT_TRUE(same_bits(got.keys, expected.keys));
      EXPECT_TRUE(same_bits(got.values, expected.values));
      EXPECT_TRUE(same_bits(got.queries, expected.queries));
      EXPECT_TRUE(same_bits(got.recon_queries, expected.recon_queries));
      EXPECT_TRUE(same_bits(got.recon_keys, expected.recon_keys));
      EXPECT_EQ(got.recon_passes, expected.recon_passes);
      EXPECT_EQ(got.recon_query_rows, expected.recon_query_rows);
      EXPECT_EQ(got.query_positions, expected.query_positions);
      EXPECT_EQ(got.needle_heads, expected.needle_heads);
      EXPECT_EQ(got.head_archetypes, expected.head_archetypes);
    }
  }
  validate_trace_file(path_);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);  // no temp files left
}

TEST_F(TraceFileTest, Float16RoundTripRoundsToHalf) {
  MemorySource source = make_source();
  // Exact in half precision, except: 0.1f (nearest half 0.0999755859375), 1 + 2^-11 (a tie, to
  // even 1.0), 65519 (below the 65520 tie, to 65504) and 1.5 * 2^-25 (to the smallest subnormal).
  const std::vector<float> chosen = {0.5f,
                                     1.25f,
                                     -3.0f,
                                     65504.0f,
                                     0.1f,
                                     std::ldexp(1.0f, -14),
                                     std::ldexp(1.0f, -24),
                                     0.0f,
                                     1.0f + std::ldexp(1.0f, -11),
                                     65519.0f,
                                     1.5f * std::ldexp(1.0f, -25)};
  const std::vector<float> half = {0.5f,
                                   1.25f,
                                   -3.0f,
                                   65504.0f,
                                   0.0999755859375f,
                                   std::ldexp(1.0f, -14),
                                   std::ldexp(1.0f, -24),
                                   0.0f,
                                   1.0f,
                                   65504.0f,
                                   std::ldexp(1.0f, -24)};
  HeadMatrix& first = source.layers.at({"a", 0}).keys[0];
  std::copy(chosen.begin(), chosen.end(), first.data());
  write_trace_file(path_, source, {true, 4});
  {
    H5::H5File file(path_, H5F_ACC_RDONLY);
    EXPECT_EQ(file.openDataSet("/requests/a/layer_0/keys").getDataType().getSize(), 2u);
  }
  const auto read = open_trace_file(path_);
  const LayerTrace got = read->load_layer("a", 0);
  for (std::size_t i = 0; i < half.size(); ++i) EXPECT_EQ(got.keys[0].data()[i], half[i]) << "value " << chosen[i];
  // Everything else within half's rounding error (11 significant bits).
  for (const auto& [key, expected] : source.layers) {
    const LayerTrace layer = read->load_layer(key.first, key.second);
    for (std::size_t h = 0; h < expected.queries.size(); ++h) {
      const auto& want = expected.queries[h].array();
      EXPECT_TRUE(((layer.queries[h].array() - want).abs() <= want.abs() * std::ldexp(1.0f, -11) + 1e-7f).all());
    }
  }
}

TEST_F(TraceFileTest, Float16RejectsValuesBeyondItsRange) {
  MemorySource source = make_source();
  source.layers.at({"a", 2}).values[1](3, 2) = 70000.0f;
  expect_input_error(
      [&] {
        write_trace_file(path_, source, {true, 0});
      },
      {path_, "/requests/a/layer_2/values", "float16 range"});
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(TraceFileTest, AcceptsH5pyStyleAttributes) {
  write_and_edit([](H5::H5File& file) {
    // Fixed-length, null-padded strings and narrow integer types, as numpy/h5py may write them.
    const H5::StrType fixed(H5::PredType::C_S1, 16);
    file.removeAttr("model");
    char model[16] = "tiny-test";
    file.createAttribute("model", fixed, H5::DataSpace(H5S_SCALAR)).write(fixed, model);
    replace_int_attribute(file, "num_layers", H5::PredType::STD_I16BE, 3);
    replace_int_attribute(file, "head_dim", H5::PredType::STD_U8LE, 8);
    const H5::Group layer = file.openGroup("/requests/b/layer_0");
    layer.removeAttr("head_archetypes");
    const hsize_t two = 2;
    char archetypes[2][16] = {"local", "diffuse"};
    layer.createAttribute("head_archetypes", fixed, H5::DataSpace(1, &two)).write(fixed, archetypes);
  });
  const auto read = open_trace_file(path_);
  EXPECT_EQ(read->header().model.name, "tiny-test");
  EXPECT_EQ(read->header().model.num_layers, 3);
  EXPECT_EQ(read->header().model.head_dim, 8);
  EXPECT_EQ(read->load_layer("b", 0).head_archetypes, (std::vector<std::string>{"local", "diffuse"}));
}

TEST_F(TraceFileTest, RopeScalingRoundTripsAndIsAbsentWhenNone) {
  MemorySource source = make_source();
  write_trace_file(path_, source, {false, 0});
  {
    EXPECT_EQ(open_trace_file(path_)->header().model.rope_scaling, RopeScaling{});  // absent: none
    const H5::H5File file(path_, H5F_ACC_RDONLY);
    EXPECT_FALSE(file.attrExists("rope_scaling_type"));  // unscaled files stay as before
  }
  RopeScaling& r = source.trace_header.model.rope_scaling;
  r.type = "llama3";
  r.factor = 8.0;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 8192;
  write_trace_file(path_, source, {false, 0});
  EXPECT_EQ(open_trace_file(path_)->header().model.rope_scaling, r);
  // A llama3 type without its parameters is refused, naming the file and the missing attribute.
  write_and_edit([](H5::H5File& file) {
    const H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    file.createAttribute("rope_scaling_type", type, H5::DataSpace(H5S_SCALAR)).write(type, std::string("llama3"));
  });
  expect_input_error([&] { open_trace_file(path_); },
                     {path_ + ": root attributes: rope_scaling_factor is missing; rope_scaling_type = llama3 needs"});
}

TEST_F(TraceFileTest, MissingRootAttributeIsNamed) {
  write_and_edit([](H5::H5File& file) { file.removeAttr("num_kv_heads"); });
  expect_input_error([&] { open_trace_file(path_); }, {path_ + ": /num_kv_heads: missing required attribute"});
}

TEST_F(TraceFileTest, WrongVersionIsRejected) {
  write_and_edit([](H5::H5File& file) { replace_int_attribute(file, "version", H5::PredType::STD_I32LE, 2); });
  expect_input_error([&] { open_trace_file(path_); }, {"/version: is 2", "version 1"});
}

TEST_F(TraceFileTest, WrongDatasetShapeIsNamed) {
  write_and_edit([](H5::H5File& file) {
    const H5::Group layer = file.openGroup("/requests/a/layer_0");
    layer.unlink("keys");
    const hsize_t dims[3] = {2, 11, 8};
    layer.createDataSet("keys", H5::PredType::IEEE_F32LE, H5::DataSpace(3, dims));
  });
  expect_input_error([&] { open_trace_file(path_); },
                     {path_ + ": /requests/a/layer_0/keys: shape [2,11,8] does not match "
                              "[num_kv_heads=2, prompt+generated=12, head_dim=8]"});
}

TEST_F(TraceFileTest, UnsortedQueryPositionsAreRejected) {
  write_and_edit([](H5::H5File& file) { replace_positions(file, "/requests/a/layer_2", {8, 10, 9, 11}); });
  expect_input_error([&] { open_trace_file(path_); },
                     {"/requests/a/layer_2/query_positions", "not strictly ascending", "index 2 holds 9 after 10"});
}

TEST_F(TraceFileTest, OutOfRangeQueryPositionIsRejected) {
  write_and_edit([](H5::H5File& file) { replace_positions(file, "/requests/a/layer_2", {8, 9, 10, 12}); });
  expect_input_error([&] { open_trace_file(path_); },
                     {"/requests/a/layer_2/query_positions", "position 12", "out of range [0, 12)"});
}

TEST_F(TraceFileTest, MissingLayerGroupIsNamed) {
  write_and_edit([](H5::H5File& file) { file.unlink("/requests/a/layer_2"); });
  expect_input_error([&] { open_trace_file(path_); }, {"/requests/a/layer_2: missing group"});
}

TEST_F(TraceFileTest, NaNInKeysIsRejectedWhenTheLayerIsLoaded) {
  write_and_edit([](H5::H5File& file) {
    H5::DataSet keys = file.openDataSet("/requests/b/layer_2/keys");
    H5::DataSpace space = keys.getSpace();
    const hsize_t start[3] = {1, 5, 3};
    const hsize_t count[3] = {1, 1, 1};
    space.selectHyperslab(H5S_SELECT_SET, count, start);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const hsize_t one = 1;
    keys.write(&nan, H5::PredType::NATIVE_FLOAT, H5::DataSpace(1, &one), space);
  });
  const auto source = open_trace_file(path_);  // values are checked on load, not on open
  EXPECT_NO_THROW(source->load_layer("b", 0));
  const std::vector<std::string> parts = {"/requests/b/layer_2/keys", "non-finite value",
                                          "[head 1, token row 5, dim 3]"};
  expect_input_error([&] { source->load_layer("b", 2); }, parts);
  expect_input_error([&] { validate_trace_file(path_); }, parts);
}

// recon_queries (DESIGN.md §3, optional): present on one layer of the standard source only.
TEST_F(TraceFileTest, ReconQueriesArePerLayerAndListedInTheHeader) {
  write_trace_file(path_, make_source(), {});
  const auto read = open_trace_file(path_);
  EXPECT_EQ(read->header().recon_query_layers, (std::map<std::string, std::vector<int>>{{"b", {2}}}));
  const LayerTrace with = read->load_layer("b", 2);
  ASSERT_EQ(with.recon_queries.size(), 4u);  // num_q_heads
  EXPECT_EQ(with.recon_queries[0].rows(), 3);
  EXPECT_TRUE(read->load_layer("b", 0).recon_queries.empty());
  EXPECT_TRUE(read->load_layer("a", 2).recon_queries.empty());
}

// Format 1.1: the writer marks version 1.1; the passes come back with their layer and are listed
// in the header; a 1.0 file (no version_minor, no passes) still reads.
TEST_F(TraceFileTest, ReconPassesRoundTripAndOldFilesStillRead) {
  write_trace_file(path_, make_source(), {});
  const auto read = open_trace_file(path_);
  EXPECT_EQ(read->header().version_minor, 1);
  EXPECT_EQ(read->header().recon_pass_layers, (std::map<std::string, std::vector<int>>{{"b", {2}}}));
  EXPECT_TRUE(read->load_layer("a", 2).recon_passes.empty());
  write_and_edit([](H5::H5File& file) {
    file.removeAttr("version_minor");
    const H5::Group layer = file.openGroup("/requests/b/layer_2");
    for (const char* name : {"recon_passes", "recon_keys", "recon_query_rows"}) layer.unlink(name);
  });
  const auto old = open_trace_file(path_);
  EXPECT_EQ(old->header().version_minor, 0);
  EXPECT_TRUE(old->header().recon_pass_layers.empty());
  EXPECT_EQ(old->load_layer("b", 2).recon_queries.size(), 4u);
  EXPECT_TRUE(old->load_layer("b", 2).recon_passes.empty());
}

void replace_int64s(H5::H5File& file, const std::string& path, const std::vector<std::int64_t>& values) {
  file.openDataSet(path).write(values.data(), H5::PredType::NATIVE_INT64);
}

TEST_F(TraceFileTest, BadReconPassesAreNamed) {
  write_and_edit([](H5::H5File& file) { file.openGroup("/requests/b/layer_2").unlink("recon_keys"); });
  expect_input_error([&] { open_trace_file(path_); }, {"/requests/b/layer_2/recon_keys: missing dataset"});
  write_and_edit([](H5::H5File& file) {
    replace_int64s(file, "/requests/b/layer_2/recon_passes", {2, 6, 0, 2, 5, 10, 2, 5});  // contexts overlap
  });
  expect_input_error([&] { open_trace_file(path_); }, {"/requests/b/layer_2/recon_passes: pass 1 (5, 10, 2, 5)"});
  write_and_edit([](H5::H5File& file) {
    replace_int64s(file, "/requests/b/layer_2/recon_passes", {2, 6, 0, 2, 6, 10, 3, 5});  // key rows skip row 2
  });
  expect_input_error([&] { open_trace_file(path_); }, {"recon_passes: pass 1 (6, 10, 3, 5): key rows"});
  write_and_edit([](H5::H5File& file) {
    replace_int64s(file, "/requests/b/layer_2/recon_passes", {2, 6, 0, 2, 6, 21, 2, 5});  // beyond the prompt (20)
  });
  expect_input_error([&] { open_trace_file(path_); }, {"within the prompt [0, 20)"});
  write_and_edit([](H5::H5File& file) { replace_int64s(file, "/requests/b/layer_2/recon_query_rows", {1, 1, 4}); });
  expect_input_error([&] { open_trace_file(path_); }, {"/requests/b/layer_2/recon_query_rows: row 1 at index 1"});
  write_and_edit([](H5::H5File& file) { replace_int_attribute(file, "version_minor", H5::PredType::STD_I64LE, -1); });
  expect_input_error([&] { open_trace_file(path_); }, {"version_minor"});
}

void replace_recon_queries(H5::H5File& file, hsize_t heads, hsize_t rows, hsize_t dim) {
  const H5::Group layer = file.openGroup("/requests/b/layer_2");
  layer.unlink("recon_queries");
  // As a format 1.0 file: recon queries without passes (whose recon_query_rows count them).
  for (const char* name : {"recon_passes", "recon_keys", "recon_query_rows"}) layer.unlink(name);
  const hsize_t dims[3] = {heads, rows, dim};
  const H5::DataSet d = layer.createDataSet("recon_queries", H5::PredType::IEEE_F32LE, H5::DataSpace(3, dims));
  std::vector<float> zeros(heads * rows * dim, 0.0f);
  d.write(zeros.data(), H5::PredType::NATIVE_FLOAT);
}

TEST_F(TraceFileTest, ReconQueriesWithWrongShapeAreNamed) {
  write_and_edit([](H5::H5File& file) { replace_recon_queries(file, 4, 3, 16); });
  expect_input_error([&] { open_trace_file(path_); },
                     {path_ + ": /requests/b/layer_2/recon_queries: shape [4,3,16] does not match "
                              "[num_q_heads=4, T_r, head_dim=8]"});
  write_and_edit([](H5::H5File& file) { replace_recon_queries(file, 2, 3, 8); });
  expect_input_error([&] { open_trace_file(path_); }, {"/requests/b/layer_2/recon_queries: shape [2,3,8]"});
}

TEST_F(TraceFileTest, AnyNumberOfReconQueriesIsAccepted) {
  write_and_edit([](H5::H5File& file) { replace_recon_queries(file, 4, 40, 8); });  // T_r above the prompt too
  EXPECT_EQ(open_trace_file(path_)->load_layer("b", 2).recon_queries[3].rows(), 40);
}

TEST_F(TraceFileTest, NaNInReconQueriesIsRejectedWhenTheLayerIsLoaded) {
  write_and_edit([](H5::H5File& file) {
    H5::DataSet recon = file.openDataSet("/requests/b/layer_2/recon_queries");
    H5::DataSpace space = recon.getSpace();
    const hsize_t start[3] = {3, 2, 7};
    const hsize_t count[3] = {1, 1, 1};
    space.selectHyperslab(H5S_SELECT_SET, count, start);
    const float inf = std::numeric_limits<float>::infinity();
    const hsize_t one = 1;
    recon.write(&inf, H5::PredType::NATIVE_FLOAT, H5::DataSpace(1, &one), space);
  });
  const auto source = open_trace_file(path_);
  const std::vector<std::string> parts = {"/requests/b/layer_2/recon_queries", "non-finite value",
                                          "[head 3, token row 2, dim 7]"};
  expect_input_error([&] { source->load_layer("b", 2); }, parts);
  expect_input_error([&] { validate_trace_file(path_); }, parts);
  write_and_edit([](H5::H5File& file) {
    H5::DataSet recon = file.openDataSet("/requests/b/layer_2/recon_queries");
    std::vector<float> values(4 * 3 * 8, 0.5f);
    values[5] = std::numeric_limits<float>::quiet_NaN();
    recon.write(values.data(), H5::PredType::NATIVE_FLOAT);
  });
  expect_input_error([&] { open_trace_file(path_)->load_layer("b", 2); },
                     {"/requests/b/layer_2/recon_queries", "non-finite value nan", "[head 0, token row 0, dim 5]"});
}

TEST_F(TraceFileTest, TruncatedFileIsAnInputError) {
  write_trace_file(path_, make_source(), {});
  fs::resize_file(path_, fs::file_size(path_) / 2);
  expect_input_error([&] { validate_trace_file(path_); }, {path_, "truncated"});
}

TEST_F(TraceFileTest, NonHdf5FileIsAnInputError) {
  std::ofstream(path_) << "model,layers\nllama,32\n";
  expect_input_error([&] { open_trace_file(path_); }, {path_ + ": not an HDF5 file"});
  expect_input_error([&] { open_trace_file((dir_ / "absent.h5").string()); }, {"absent.h5: file does not exist"});
}

TEST_F(TraceFileTest, FailedWriteLeavesNoFile) {
  MemorySource source = make_source();
  source.fail_after_loads = 2;
  EXPECT_THROW(write_trace_file(path_, source, {}), std::runtime_error);
  EXPECT_FALSE(fs::exists(path_));
  EXPECT_TRUE(fs::is_empty(dir_));  // the temporary file is gone too

  // A failed rewrite leaves the previous file untouched.
  write_trace_file(path_, make_source(), {});
  source.loads = 0;
  EXPECT_THROW(write_trace_file(path_, source, {}), std::runtime_error);
  EXPECT_EQ(open_trace_file(path_)->header().requests.size(), 2u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

}  // namespace
}  // namespace kvsim

#pragma once
// Small helpers shared by the tests: an in-memory trace source with random data.
#include <map>
#include <random>
#include <string>
#include <utility>

#include "traces/trace.h"

namespace kvsim::testing_support {

class MemoryTraceSource final : public TraceSource {
 public:
  explicit MemoryTraceSource(TraceHeader header) : header_(std::move(header)) {}
  const TraceHeader& header() const override { return header_; }
  LayerTrace load_layer(const std::string& request_id, int layer) const override {
    return layers_.at({request_id, layer});
  }
  void set_layer(const std::string& request_id, LayerTrace trace) {
    const int layer = trace.layer;
    layers_[{request_id, layer}] = std::move(trace);
  }

 private:
  TraceHeader header_;
  std::map<std::pair<std::string, int>, LayerTrace> layers_;
};

inline HeadMatrix random_matrix(std::mt19937_64& rng, Eigen::Index rows, Eigen::Index cols, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  HeadMatrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

// A model small enough to cost by hand: 2 layers, hidden 64, 4 query / 2 KV heads of 16, SwiGLU MLP
// 128, vocabulary 100 (36864 linear parameters per layer).
inline ModelShape toy_dense_model() {
  ModelShape m{"toy", 2, 4, 2, 16, 16, 10000.0};
  m.hidden_size = 64;
  m.intermediate_size = 128;
  m.vocab_size = 100;
  return m;
}

// A random trace of one request "0", queries stored at every position.
inline MemoryTraceSource random_trace(const ModelShape& model, std::int64_t prompt, std::int64_t generated,
                                      std::vector<int> traced_layers, std::uint64_t seed, float key_scale = 1.0f) {
  TraceHeader header;
  header.model = model;
  header.source = "synthetic";
  header.traced_layers = traced_layers;
  RequestInfo request;
  request.id = "0";
  request.prompt_tokens = prompt;
  request.generated_tokens = generated;
  header.requests.push_back(request);
  MemoryTraceSource source(header);
  std::mt19937_64 rng(seed);
  const std::int64_t total = prompt + generated;
  for (int layer : traced_layers) {
    LayerTrace t;
    t.layer = layer;
    for (int h = 0; h < model.num_kv_heads; ++h) {
      t.keys.push_back(random_matrix(rng, total, model.head_dim, key_scale));
      t.values.push_back(random_matrix(rng, total, model.head_dim));
    }
    for (int g = 0; g < model.num_q_heads; ++g)
      t.queries.push_back(random_matrix(rng, total, model.head_dim, key_scale));
    for (std::int64_t p = 0; p < total; ++p) t.query_positions.push_back(p);
    source.set_layer("0", std::move(t));
  }
  return source;
}

}  // namespace kvsim::testing_support

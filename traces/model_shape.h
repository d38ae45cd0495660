#pragma once
// The shape of a transformer's attention as far as the KV cache is concerned.
#include <cstdint>
#include <optional>
#include <string>

namespace kvsim {

// RoPE frequency scaling: the `rope_scaling` object of a Hugging Face config.json, with its
// parameters under the same names (traces/rope.cpp computes the frequencies). Written in model
// .ini files and scenarios as rope_scaling_type, rope_scaling_factor, ... and as root attributes
// of the same names in trace files; absent means none.
struct RopeScaling {
  // none | linear | llama3 | yarn ("default" in a config.json is none). yarn is recognised and
  // refused by ModelShape::validate: kvsim does not model it.
  std::string type = "none";
  std::optional<double> factor;                                  // linear, llama3 (and yarn)
  std::optional<double> low_freq_factor;                         // llama3
  std::optional<double> high_freq_factor;                        // llama3
  std::optional<std::int64_t> original_max_position_embeddings;  // llama3

  bool none() const { return type == "none"; }
  // "none", or e.g. "llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192)".
  std::string text() const;
  bool operator==(const RopeScaling&) const = default;
};

struct ModelShape {
  std::string name;
  int num_layers = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int kv_bits = 16;  // bits per stored K or V element
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = {};  // none
  // Dense-layer shape for the cost model (0: unknown; then only KV metrics can be computed).
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;  // SwiGLU MLP width
  std::int64_t vocab_size = 0;
  // The context length (config.json max_position_embeddings): a request's prompt plus generated
  // tokens may not exceed it. 0: unknown, not enforced.
  std::int64_t max_position_embeddings = 0;

  int group_size() const { return num_q_heads / num_kv_heads; }
  // One KV entry = key + value of one token in one KV head of one layer (DESIGN.md §2).
  std::int64_t entry_bytes() const { return 2LL * head_dim * kv_bits / 8; }
  std::int64_t bytes_per_token() const { return entry_bytes() * static_cast<std::int64_t>(num_layers) * num_kv_heads; }
  // Throws InputError naming `where` when a field is missing or inconsistent.
  void validate(const std::string& where) const;
};

// Every field of `model`, doubles exact, as one line: part of the key of what is measured on a
// model (sim/serving/profile_key.cpp). A new field of ModelShape or RopeScaling must join it.
std::string model_shape_key(const ModelShape& model);

}  // namespace kvsim

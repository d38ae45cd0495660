#pragma once
// The shape of a transformer's attention as far as the KV cache is concerned.
#include <cstdint>
#include <string>

namespace kvsim {

struct ModelShape {
  std::string name;
  int num_layers = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int kv_bits = 16;  // bits per stored K or V element
  double rope_theta = 10000.0;
  // Dense-layer shape for the cost model (0: unknown; then only KV metrics can be computed).
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;  // SwiGLU MLP width
  std::int64_t vocab_size = 0;

  int group_size() const { return num_q_heads / num_kv_heads; }
  // One KV entry = key + value of one token in one KV head of one layer (DESIGN.md §2).
  std::int64_t entry_bytes() const { return 2LL * head_dim * kv_bits / 8; }
  std::int64_t bytes_per_token() const {
    return entry_bytes() * static_cast<std::int64_t>(num_layers) * num_kv_heads;
  }
  // Throws InputError naming `where` when a field is missing or inconsistent.
  void validate(const std::string& where) const;
};

}  // namespace kvsim

#include "traces/model_shape.h"

#include <cmath>

#include "util/error.h"

namespace kvsim {

void ModelShape::validate(const std::string& where) const {
  // The upper bound keeps every product of these (bytes per token, entries per request) far from
  // int64 overflow; memory checks refuse real excess earlier (the largest models have ~10^2 layers).
  constexpr long long kMaxDimension = 1 << 16;
  auto positive = [&](const char* key, long long value) {
    if (value <= 0 || value > kMaxDimension) {
      fail_input(where, std::string(key) + " must be an integer in [1, " + std::to_string(kMaxDimension) + "], got " +
                            std::to_string(value));
    }
  };
  positive("num_layers", num_layers);
  positive("num_q_heads", num_q_heads);
  positive("num_kv_heads", num_kv_heads);
  positive("head_dim", head_dim);
  if (num_q_heads % num_kv_heads != 0) {
    fail_input(where, "num_q_heads (" + std::to_string(num_q_heads) + ") must be a multiple of num_kv_heads (" +
                          std::to_string(num_kv_heads) + ")");
  }
  if (head_dim % 2 != 0) fail_input(where, "head_dim must be even (RoPE rotates pairs), got " + std::to_string(head_dim));
  if (kv_bits != 2 && kv_bits != 4 && kv_bits != 8 && kv_bits != 16 && kv_bits != 32) {
    fail_input(where, "kv_bits must be one of 2, 4, 8, 16, 32, got " + std::to_string(kv_bits));
  }
  if (!(rope_theta > 0.0 && std::isfinite(rope_theta))) {
    fail_input(where, "rope_theta must be a positive finite number, got " + std::to_string(rope_theta));
  }
}

}  // namespace kvsim

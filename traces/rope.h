#pragma once
// Rotary position embedding in the Hugging Face Llama "rotate_half" layout: dim i pairs with
// dim i + d/2 and turns by position · inv_freq[i], inv_freq[i] = theta^(-2i/d) before the model's
// rope_scaling. Stored trace keys and queries are post-RoPE, so the synthesiser builds pre-RoPE
// vectors and rotates them here, and policies that need pre-RoPE vectors rotate back.
#include <cstdint>
#include <vector>

#include "traces/model_shape.h"

namespace kvsim {

// inv_freq[i] for the d/2 pairs, slowest last, with `scaling` applied exactly as Hugging Face
// transformers computes it (src/transformers/modeling_rope_utils.py: _compute_default_rope_parameters,
// _compute_linear_scaling_rope_parameters, _compute_llama3_parameters), in double rather than
// transformers' float32. REQUIRES: `scaling` passed RopeScaling validation (ModelShape::validate),
// so its type is none, linear or llama3 with the parameters that type needs.
std::vector<double> rope_inv_freq(int head_dim, double rope_theta, const RopeScaling& scaling = {});
// The model's own frequencies: rope_inv_freq(head_dim, rope_theta, rope_scaling).
std::vector<double> rope_inv_freq(const ModelShape& model);

// Rotates x[0, head_dim) in place to `position`. Angles are formed in double: at 100K tokens a
// float angle would lose the fast pairs' phase entirely.
void apply_rope(float* x, int head_dim, std::int64_t position, const std::vector<double>& inv_freq);

// cos/sin of position · inv_freq[i] for a contiguous range of positions, shared by all heads of a
// layer (one sincos per position and pair instead of one per head).
class RopeTable {
 public:
  RopeTable(std::int64_t first_position, std::int64_t count, const std::vector<double>& inv_freq);
  // Rotates x (head_dim = 2 · pairs) to first_position + row.
  void rotate(float* x, std::int64_t row) const;
  int pairs() const { return pairs_; }

 private:
  int pairs_ = 0;
  std::vector<float> cos_;  // [count, pairs]
  std::vector<float> sin_;
};

}  // namespace kvsim

#pragma once
// Roofline cost of one forward pass (a prefill chunk or a decode step) of one request on a device
// (DESIGN.md §5): time = max(FLOPs / achievable compute, bytes / achievable HBM bandwidth), plus
// the tensor-parallel all-reduces, which are not overlapped, plus a fixed per-layer overhead for
// the small kernels a roofline over the GEMMs does not see ([device] layer_overhead). Attention
// FLOPs and KV bytes count only the entries actually resident, so eviction speeds up attention.
// docs/validation.md compares the result with measured operator times and published end-to-end
// latencies.
#include <string>

#include "hw/hardware.h"
#include "traces/model_shape.h"

namespace kvsim {

struct PassWork {
  double tokens = 0;                 // tokens processed by the pass
  double logits_tokens = 0;          // tokens whose logits are computed (last prompt token, each decode token)
  double attention_entry_steps = 0;  // sum over layers and KV heads of V(t) for the pass's queries
  double kv_read_entries = 0;        // cached entries read (resident before the pass), all layers and KV heads
  double kv_written_entries = 0;     // new entries written, all layers and KV heads
};

// Which roofline term is the slower one for a pass.
enum class Bound { kCompute, kMemory };
const char* bound_name(Bound bound);  // "compute" or "memory"

struct PassCost {
  double time_s = 0;
  double compute_s = 0;
  double memory_s = 0;
  double communication_s = 0;
  double overhead_s = 0;       // layers x [device] layer_overhead, serial with everything else
  double flops = 0;            // whole model, all TP ranks
  double hbm_read_bytes = 0;   // all TP ranks
  double hbm_write_bytes = 0;
  Bound bound = Bound::kCompute;
};

class CostModel {
 public:
  // REQUIRES: model.hidden_size, intermediate_size and vocab_size known (> 0); tp >= 1.
  // Throws InputError naming `where` otherwise.
  CostModel(const Hardware& hardware, const ModelShape& model, int tensor_parallel, const std::string& where);

  PassCost pass_cost(const PassWork& work) const;

  // Roofline time of one layer's linear projections (Q, K, V, O and the SwiGLU MLP) for `tokens`
  // tokens on one TP rank: the quantity vidur profiles per operator, used for validation.
  double linear_layer_time_s(double tokens) const;

  double weight_bytes() const { return weight_bytes_; }       // whole model
  double linear_params_per_layer() const { return layer_params_; }

 private:
  Hardware hardware_;
  ModelShape model_;
  int tp_ = 1;
  double layer_params_ = 0;   // attention projections + SwiGLU MLP of one layer
  double head_params_ = 0;    // LM head
  double weight_bytes_ = 0;   // all layers + LM head + embedding, BF16
};

}  // namespace kvsim

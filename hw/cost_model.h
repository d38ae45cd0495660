#pragma once
// Roofline cost of one forward pass (a prefill chunk, a decode step, or a serving iteration that
// batches several requests) on a device (DESIGN.md §5): time = max(FLOPs / achievable compute,
// bytes / achievable HBM bandwidth), plus the tensor-parallel all-reduces, which are not
// overlapped, plus per layer the small kernels a roofline over the GEMMs does not see (norms,
// rotary, SiLU-and-mul, residual adds: a latency floor or their activation traffic, whichever is
// longer), plus the serving engine's CPU time per iteration. Attention FLOPs and KV bytes count
// only the entries actually resident, so eviction speeds up attention.
// docs/validation.md compares the result with measured operator times and published end-to-end
// latencies.
#include <algorithm>
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
  double requests = 1;               // requests in the batch (the CPU cost grows with them)
};

// Which roofline term is the slower one for a pass.
enum class Bound { kCompute, kMemory };
const char* bound_name(Bound bound);  // "compute" or "memory"

struct PassCost {
  double time_s = 0;
  double compute_s = 0;
  double memory_s = 0;
  double communication_s = 0;
  double overhead_s = 0;      // layers x small_kernels_layer_s(tokens), part of the GPU's compute
  double cpu_s = 0;           // cpu_overhead_s(requests): serial with the GPU work
  double flops = 0;           // whole model, all TP ranks
  double hbm_read_bytes = 0;  // all TP ranks
  double hbm_write_bytes = 0;
  Bound bound = Bound::kCompute;

  // The pass's time with `transfer_s` of KV moving between tiers: serialised with the GPU's work,
  // or (`overlapped`: a layer-ahead prefetch, or write-backs) hidden behind its roofline and small
  // kernels. All-reduce and CPU time stay serial either way.
  double time_with_transfer_s(double transfer_s, bool overlapped) const {
    const double gpu_s = std::max(compute_s, memory_s) + overhead_s;
    return (overlapped ? std::max(gpu_s, transfer_s) : gpu_s + transfer_s) + communication_s + cpu_s;
  }
  // What the transfer adds to time_s: all of it, or (`overlapped`) what the GPU's work does not hide.
  double exposed_transfer_s(double transfer_s, bool overlapped) const {
    return overlapped ? std::max(0.0, transfer_s - (std::max(compute_s, memory_s) + overhead_s)) : transfer_s;
  }
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

  // Bytes the small kernels of one layer move through HBM on one TP rank for `tokens` tokens
  // (BF16): two RMSNorms (read + write n x h each), rotary (read + write q and k), SiLU-and-mul
  // (read 2 x ffn, write ffn) and two residual adds (read 2, write 1 x n x h):
  // tokens x (20 h + 4 (q_width + kv_width) / tp + 6 ffn / tp).
  double activation_bytes_per_layer(double tokens) const;
  // Time of those kernels on one rank: max([device] layer_overhead, activation bytes / (HBM read
  // bandwidth x activation_efficiency)); the floor alone when activation_efficiency is 0.
  double small_kernels_layer_s(double tokens) const;
  // One all-reduce of `bytes` (the buffer each rank holds) across the TP ranks: the measured fit
  // for this worker count ([device] allreduce_tp<N>) or else a ring over tp_bandwidth,
  // 2 (tp-1)/tp x bytes / tp_bandwidth. 0 at tp = 1.
  double allreduce_s(double bytes) const;
  // The serving engine's CPU time for one iteration of `requests` requests: cpu_overhead
  // (+ cpu_overhead_tp when tp > 1) + cpu_overhead_per_request x requests.
  double cpu_overhead_s(double requests) const;

  double weight_bytes() const { return weight_bytes_; }  // whole model
  double linear_params_per_layer() const { return layer_params_; }

 private:
  Hardware hardware_;
  ModelShape model_;
  int tp_ = 1;
  double layer_params_ = 0;  // attention projections + SwiGLU MLP of one layer
  double head_params_ = 0;   // LM head
  double weight_bytes_ = 0;  // all layers + LM head + embedding, BF16
};

}  // namespace kvsim

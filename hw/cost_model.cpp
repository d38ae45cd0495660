#include "hw/cost_model.h"

#include <algorithm>

#include "util/error.h"

namespace kvsim {

namespace {
constexpr double kWeightBytesPerParam = 2.0;  // BF16 weights
}

CostModel::CostModel(const Hardware& hardware, const ModelShape& model, int tensor_parallel, const std::string& where)
    : hardware_(hardware), model_(model), tp_(tensor_parallel) {
  if (model.hidden_size <= 0 || model.intermediate_size <= 0 || model.vocab_size <= 0) {
    fail_input(where,
               "the hardware cost model needs the model's hidden_size, intermediate_size and vocab_size "
               "(use a [model] preset or give them explicitly)");
  }
  if (tp_ < 1) fail_input(where, "tp must be >= 1");
  if (model.num_q_heads % tp_ != 0) {
    fail_input(where, "tp = " + std::to_string(tp_) + " must divide the model's " + std::to_string(model.num_q_heads) +
                          " query heads (each rank holds whole heads)");
  }
  if (tp_ > 1 && hardware.device.tp_bytes_per_s <= 0) {
    fail_input(where, "tp > 1 needs [device] tp_bandwidth in the hardware file");
  }
  const double h = static_cast<double>(model.hidden_size);
  const double q_width = static_cast<double>(model.num_q_heads) * model.head_dim;
  const double kv_width = static_cast<double>(model.num_kv_heads) * model.head_dim;
  // W_q, W_k, W_v, W_o, then gate, up and down projections of the SwiGLU MLP.
  layer_params_ = h * q_width + 2 * h * kv_width + q_width * h + 3 * h * static_cast<double>(model.intermediate_size);
  head_params_ = h * static_cast<double>(model.vocab_size);
  // The embedding is stored but only a few rows are read per pass, so it counts in capacity only.
  weight_bytes_ = (model.num_layers * layer_params_ + 2 * head_params_) * kWeightBytesPerParam;
}

double CostModel::linear_layer_time_s(double tokens) const {
  const Device& d = hardware_.device;
  const Tier& memory = hardware_.tier(d.compute_tier);
  const double compute_s = 2.0 * tokens * layer_params_ / tp_ / (d.flops_per_s_bf16 * d.compute_efficiency);
  const double memory_s = layer_params_ * kWeightBytesPerParam / tp_ / (memory.read_bytes_per_s * d.memory_efficiency);
  return std::max(compute_s, memory_s);
}

const char* bound_name(Bound bound) { return bound == Bound::kCompute ? "compute" : "memory"; }

double CostModel::activation_bytes_per_layer(double tokens) const {
  const double h = static_cast<double>(model_.hidden_size);
  const double q_width = static_cast<double>(model_.num_q_heads) * model_.head_dim;
  const double kv_width = static_cast<double>(model_.num_kv_heads) * model_.head_dim;
  const double ffn = static_cast<double>(model_.intermediate_size);
  return tokens * (20.0 * h + (4.0 * (q_width + kv_width) + 6.0 * ffn) / tp_);
}

double CostModel::small_kernels_layer_s(double tokens) const {
  const Device& d = hardware_.device;
  if (d.activation_efficiency <= 0) return d.layer_overhead_s;
  const double streaming_s =
      activation_bytes_per_layer(tokens) / (hardware_.tier(d.compute_tier).read_bytes_per_s * d.activation_efficiency);
  return std::max(d.layer_overhead_s, streaming_s);
}

double CostModel::allreduce_s(double bytes) const {
  if (tp_ <= 1) return 0.0;
  const Device& d = hardware_.device;
  for (const Device::AllReduce& a : d.allreduce) {
    if (a.workers == tp_) return a.latency_s + bytes / a.bytes_per_s;
  }
  // Ring all-reduce: 2 (tp-1)/tp of the buffer crosses each link.
  return 2.0 * (tp_ - 1) / tp_ * bytes / d.tp_bytes_per_s;
}

double CostModel::cpu_overhead_s(double requests) const {
  const Device& d = hardware_.device;
  return d.cpu_overhead_s + (tp_ > 1 ? d.cpu_overhead_tp_s : 0.0) + d.cpu_overhead_per_request_s * requests;
}

PassCost CostModel::pass_cost(const PassWork& work) const {
  const Device& d = hardware_.device;
  const Tier& memory = hardware_.tier(d.compute_tier);
  PassCost c;
  const double linear_flops =
      2.0 * work.tokens * model_.num_layers * layer_params_ + 2.0 * work.logits_tokens * head_params_;
  // Each of the G query heads of a KV head computes q.k (2d FLOPs) and p*v (2d FLOPs) per visible entry.
  const double attention_flops = 4.0 * model_.head_dim * model_.group_size() * work.attention_entry_steps;
  c.flops = linear_flops + attention_flops;
  const double weights_read = (model_.num_layers * layer_params_ + head_params_) * kWeightBytesPerParam;
  c.hbm_read_bytes = weights_read + work.kv_read_entries * static_cast<double>(model_.entry_bytes());
  c.hbm_write_bytes = work.kv_written_entries * static_cast<double>(model_.entry_bytes());

  c.compute_s = c.flops / tp_ / (d.flops_per_s_bf16 * d.compute_efficiency);
  c.memory_s = (c.hbm_read_bytes / (memory.read_bytes_per_s * d.memory_efficiency) +
                c.hbm_write_bytes / (memory.write_bytes_per_s * d.memory_efficiency)) /
               tp_;
  // Two all-reduces of the activations per layer (after attention and after the MLP).
  const double buffer = work.tokens * static_cast<double>(model_.hidden_size) * kWeightBytesPerParam;
  c.communication_s = 2.0 * model_.num_layers * allreduce_s(buffer);
  // Each TP rank runs every layer's small kernels itself (on its share of the heads and MLP).
  c.overhead_s = model_.num_layers * small_kernels_layer_s(work.tokens);
  c.cpu_s = cpu_overhead_s(work.requests);
  c.bound = c.compute_s >= c.memory_s ? Bound::kCompute : Bound::kMemory;
  c.time_s = std::max(c.compute_s, c.memory_s) + c.communication_s + c.overhead_s + c.cpu_s;
  return c;
}

}  // namespace kvsim

#pragma once
// A device and its memory hierarchy (DESIGN.md §5): tiers (GPU HBM, host DRAM, CXL expander, ...)
// joined by links (NVLink-C2C, PCIe, CXL), plus the device's compute peaks. Loaded from
// configs/hardware/<preset>.ini with optional attachments from configs/hardware/attach/.
#include <string>
#include <vector>

namespace kvsim {

struct Tier {
  std::string name;  // e.g. "hbm", "host", "dram", "cxl"
  std::string kind;  // hbm | dram | cxl | lpddr | nvme | switch (a switch stores nothing)
  double capacity_bytes = 0;
  double read_bytes_per_s = 0;
  double write_bytes_per_s = 0;
  double latency_s = 0;
  std::string source;  // where the figures come from (the file's comment)
};

struct Link {
  std::string name;
  std::string from;  // tier names; a link carries traffic both ways, each at bytes_per_s
  std::string to;
  double bytes_per_s = 0;  // line rate
  double latency_s = 0;
  // Achievable fraction of the line rate for bulk copies (protocol overhead, DMA engines): a
  // transfer drains at bytes_per_s * efficiency.
  double efficiency = 1;

  double effective_bytes_per_s() const { return bytes_per_s * efficiency; }
};

struct Device {
  std::string name;
  double flops_per_s_bf16 = 0;       // dense
  double flops_per_s_fp8 = 0;        // dense; 0 if unsupported
  double compute_efficiency = 1;     // achievable fraction of peak FLOPs in large GEMMs
  double memory_efficiency = 1;      // achievable fraction of peak memory bandwidth
  double tp_bytes_per_s = 0;         // per direction between tensor-parallel peers (NVLink); 0: none
  std::string compute_tier = "hbm";  // the tier the device computes from
  // Fixed time per transformer layer per forward pass that a roofline over the GEMMs and the KV
  // does not see: the small kernels (RMSNorm x2, rotary, SiLU-and-mul, residual adds) and their
  // launches, which run at their latency floor when a pass has few tokens. [device] layer_overhead;
  // 0 when absent. Presets take it from measured kernel times (docs/validation.md).
  double layer_overhead_s = 0;
  // The same kernels at many tokens stream their activations through HBM: per layer they take
  // max(layer_overhead, activation bytes / (HBM read bandwidth x activation_efficiency))
  // (hw/cost_model.h). [device] activation_efficiency; 0 when absent: the floor alone.
  double activation_efficiency = 0;
  // Measured tensor-parallel all-reduce, per worker count: time = latency + bytes / bandwidth for
  // one all-reduce of `bytes` (the buffer each rank holds). [device] allreduce_tp<N> = <latency>,
  // <bandwidth>. A TP degree without an entry falls back to a ring over tp_bandwidth, no latency.
  struct AllReduce {
    int workers = 0;
    double latency_s = 0;
    double bytes_per_s = 0;
  };
  std::vector<AllReduce> allreduce{};
  // CPU time of the serving engine per iteration (scheduling, input preparation, sampling, output
  // processing), serial with the GPU: cpu_overhead + cpu_overhead_tp (when tp > 1) +
  // cpu_overhead_per_request x requests in the batch. [device] keys of those names; 0 when absent.
  double cpu_overhead_s = 0;
  double cpu_overhead_tp_s = 0;
  double cpu_overhead_per_request_s = 0;
};

struct Hardware {
  Device device;
  std::vector<Tier> tiers;
  std::vector<Link> links;
  std::string source;  // the preset file and its attachments ("h100.ini + cxl-gen5.ini"), for messages
  // [cost] usd_per_gpu_hour: what one GPU costs to rent, for `kvsim plan`'s cost per million tokens;
  // 0 when the file gives none. [cost] source says where the price comes from.
  double usd_per_gpu_hour = 0;
  std::string cost_source;

  const Tier& tier(const std::string& name) const;  // REQUIRES: the tier exists
  bool has_tier(const std::string& name) const;
};

// Loads configs/hardware/<preset>.ini (or a path to an .ini) and merges each attachment
// (configs/hardware/attach/<name>.ini, or a path). Throws InputError naming the file and key for
// unknown keys or sections, missing or negative values, missing units, links to unknown tiers, and
// a tier no path of links joins to the compute tier.
Hardware load_hardware(const std::string& preset, const std::vector<std::string>& attachments = {});

std::vector<std::string> hardware_preset_names();
std::vector<std::string> hardware_attachment_names();

}  // namespace kvsim

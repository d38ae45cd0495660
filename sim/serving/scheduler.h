#pragma once
// The serving simulator (DESIGN.md §6): requests of a workload arrive, a continuous-batching
// scheduler (vLLM/Sarathi style) runs them in iterations over paged KV blocks, and each request's
// KV follows its policy's retention curve. Time per iteration comes from the roofline cost model
// over the whole batch; what a preempted request swaps crosses the links of the hierarchy.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hw/cost_model.h"
#include "hw/hierarchy.h"
#include "sim/placement.h"
#include "sim/serving/block_pool.h"
#include "sim/serving/retention.h"
#include "sim/serving_config.h"
#include "traces/workload.h"

namespace kvsim {

struct ServingRequestResult {
  std::int64_t id = 0;
  double arrival_s = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t output_tokens = 0;
  std::int64_t cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache (first admission)
  double first_scheduled_s = -1;
  double first_token_s = -1;
  double finish_s = -1;
  int preemptions = 0;
  bool rejected = false;         // its KV can never fit, or it is longer than the model's context: not served
  bool over_context = false;     // rejected: prompt + output exceed max_position_embeddings
  double peak_hbm_kv_bytes = 0;  // its private blocks (compute tier, or offload tier beyond it)
  double peak_swap_bytes = 0;    // its blocks in the swap tier
  // Where its time went, to name what broke its SLO (issue 18 §3): the time of the iterations it
  // took part in, by what bound each (the roofline term, or exposed transfers over the links),
  // up to its first token and after it; and whether it waited while requests were refused KV blocks.
  struct BoundTime {
    double compute_s = 0, hbm_bandwidth_s = 0, link_s = 0;
  };
  BoundTime prefill_time, decode_time;
  bool waited_for_memory = false;
  // Bytes brought into the compute tier for it, per lower tier (all TP ranks): swapped back in
  // after a swap preemption; its share of the offload tier's fetches (iteration fetches split by
  // the blocks each request attends); its prefix blocks loaded from each prefix-cache tier.
  double swap_in_bytes = 0;
  double offload_fetched_bytes = 0;
  std::vector<double> prefix_loaded_bytes;  // indexed like ServingResult::prefix_tiers

  double queue_s() const { return first_scheduled_s - arrival_s; }
  double ttft_s() const { return first_token_s - arrival_s; }
  double e2e_s() const { return finish_s - arrival_s; }
  // Mean time per output token after the first; absent for single-token outputs.
  std::optional<double> tpot_s() const {
    if (output_tokens < 2) return std::nullopt;
    return (finish_s - first_token_s) / static_cast<double>(output_tokens - 1);
  }
};

struct ServingSample {  // the state after one iteration
  double time_s = 0;
  int running = 0;
  int waiting = 0;
  double hbm_kv_bytes = 0;  // private + prefix-cache blocks in the compute tier
  double prefix_cache_bytes = 0;
  double swap_bytes = 0;
  double offload_bytes = 0;  // placement offload: blocks beyond the compute tier, in its lower tier
};

struct ServingIteration {  // one iteration, for `kvsim run --timeline`
  double start_s = 0;
  double time_s = 0;  // transfers included
  double link_s = 0;  // of which transfers not hidden behind the pass (offload, prefix loads, swaps)
  int prefills = 0;   // requests with a prefill chunk in it
  int decodes = 0;
  std::int64_t tokens = 0;
  bool compute_bound = false;
};

struct ServingResult {
  std::vector<ServingRequestResult> requests;         // in workload order
  std::vector<ServingSample> timeline;                // per iteration (downsampled to at most ~20,000 rows)
  std::vector<ServingIteration> iterations_recorded;  // the first ServingInput::record_iterations
  std::int64_t iterations_not_recorded = 0;           // beyond that cap
  std::int64_t capacity_blocks = 0;                   // compute tier, plus the offload tier's under placement offload
  std::int64_t offload_capacity_blocks = 0;           // of those, in the offload tier
  double block_bytes = 0;                             // one block, all layers and KV heads, all TP ranks
  std::int64_t iterations = 0;
  std::int64_t events = 0;  // arrivals + request steps (a request's part in an iteration) + completions
  double makespan_s = 0;    // first arrival to last completion
  double busy_s = 0;        // time spent in iterations
  // Iteration time by what bound it: the roofline's compute or memory term, or transfers (swaps,
  // and offload fetches not hidden behind compute).
  double compute_bound_s = 0;
  double memory_bound_s = 0;
  double link_s = 0;
  // The same split weighted by the decode steps each iteration held back: what TPOT waits on.
  double decode_compute_bound_s = 0;
  double decode_memory_bound_s = 0;
  double decode_link_s = 0;
  std::int64_t memory_blocked_iterations = 0;  // a waiting request could not be admitted for lack of blocks
  std::int64_t preemptions = 0;
  std::int64_t rejected = 0;
  std::int64_t rejected_over_context = 0;  // of those, longer than the model's context length
  double swap_out_bytes = 0;
  double swap_in_bytes = 0;
  double peak_hbm_kv_bytes = 0;
  double mean_hbm_kv_bytes = 0;  // time-weighted over the makespan
  double peak_swap_bytes = 0;
  double mean_swap_bytes = 0;
  double hbm_kv_byte_seconds = 0;
  double swap_byte_seconds = 0;
  // placement offload: blocks beyond the compute tier's capacity live in the lower tier; each
  // iteration fetches those its batch attends to and writes back those newly pushed out.
  double peak_offload_bytes = 0;
  double mean_offload_bytes = 0;
  double offload_byte_seconds = 0;
  double offload_read_bytes = 0;   // fetched for attention, all TP ranks
  double offload_write_bytes = 0;  // pushed out of the compute tier
  double hbm_read_bytes = 0;       // weights + KV, all TP ranks (roofline traffic)
  double hbm_write_bytes = 0;
  std::map<std::string, double> link_bytes;  // swap, offload and prefix-cache traffic per link, all TP ranks
  // Per link, the bytes of its busier direction (a link carries each direction at its line rate):
  // with the makespan, the link's utilisation.
  std::map<std::string, double> link_busier_direction_bytes;
  // The prefix cache's lower tiers ([serving] prefix_cache = hbm+dram), in order: prefix hashes
  // loaded back from each (a hit there), bytes loaded and written, peak occupancy.
  struct PrefixTier {
    std::string tier;
    std::int64_t hits = 0;
    double loaded_bytes = 0;
    double written_bytes = 0;
    double peak_bytes = 0;
  };
  std::vector<PrefixTier> prefix_tiers;
  std::int64_t prefix_compute_tier_hits = 0;  // prefix hashes found in the compute tier
  double prefix_load_s = 0;                   // iteration time spent loading prefix blocks back
  std::int64_t prompt_tokens_computed = 0;    // prefill tokens processed (recompute included)
  std::int64_t output_tokens = 0;
  std::int64_t peak_running = 0;
};

struct ServingInput {
  const ServingConfig& config;
  const Workload& workload;
  int concurrency = 0;  // > 0: closed loop; arrival times ignored
  const CostModel& cost;
  const Hierarchy& hierarchy;
  const ModelShape& model;
  int tensor_parallel = 1;
  // Where KV lives: hbm_reserve (the compute tier's share kept for activations and runtime) and,
  // under offload(tier=T, prefetch=...), the lower tier whose capacity adds to the block pool.
  // score_tiering is refused by the scenario loader for serving runs.
  Placement placement;
  // The retention curve of workload request `index` (its policy applied to its prompt).
  std::function<RetentionCurve(std::size_t index)> curve;
  // Share prompt prefixes by hash (only sound when curves keep every entry: a compressed cache
  // cannot be shared as a prefix).
  bool prefix_caching = false;
  std::function<void(const BlockPool&)> after_event;  // tests check invariants here; may be empty
  std::int64_t record_iterations = 0;                 // keep the first N iterations in ServingResult (--timeline)
};

// Throws InputError if the model's weights leave no KV block in the compute tier, or the swap or
// offload tier is unknown.
ServingResult simulate_serving(const ServingInput& input);

// How the compute tier of each GPU of a tensor-parallel group is split: its capacity (the hardware
// file's), the reserve kept for activations and workspace ([hardware] placement hbm_reserve, as
// vLLM's gpu_memory_utilization), this GPU's share of the weights, and KV blocks in the rest. A block
// holds block_tokens tokens of every layer and KV head; each GPU stores its heads' share of every
// block, so the group's block count is also each GPU's, and a GPU's KV bytes are 1/tp of the group's.
struct GpuMemory {
  int tensor_parallel = 1;
  double usable_bytes = 0;  // per GPU
  double reserve_bytes = 0;
  double weight_bytes = 0;  // the whole model / tp
  // floor((tp x (usable - reserve) - whole model) / block bytes of the group); <= 0: no room.
  std::int64_t kv_blocks = 0;
  std::int64_t kv_tokens = 0;  // kv_blocks x block_tokens
  double kv_bytes = 0;         // per GPU: kv_blocks x block bytes / tp (0 when no block fits)
  double kv_total_bytes() const { return kv_bytes * tensor_parallel; }
};
GpuMemory gpu_memory(const Hardware& hardware, const ModelShape& model, double model_weight_bytes,
                     std::int64_t block_tokens, double hbm_reserve, int tensor_parallel);

// KV blocks the compute tiers of all TP ranks hold next to the weights (gpu_memory's kv_blocks).
// Throws InputError when not one fits.
std::int64_t kv_capacity_blocks(const ServingInput& input);

// KV blocks the offload tier holds (0 unless placement offload): its capacity, shared by the TP group.
std::int64_t offload_capacity_blocks(const ServingInput& input);

}  // namespace kvsim

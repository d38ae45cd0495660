#pragma once
// How the serving simulator batches, stores and preempts requests (DESIGN.md §6): the scenario's
// [serving] section, resolved.
#include <cstdint>
#include <string>
#include <vector>

namespace kvsim {

struct Slo {
  double ttft_s = 0;  // 0: no bound
  double tpot_s = 0;
  bool any() const { return ttft_s > 0 || tpot_s > 0; }
  std::string spec() const;  // "ttft=2s, tpot=0.1s"
};

struct ServingConfig {
  // Paged KV: one block holds block_tokens tokens of every layer and KV head (vLLM's layout).
  std::int64_t block_tokens = 16;
  // Tokens one iteration may process (Sarathi/vLLM max_num_batched_tokens): decodes first, then
  // prefill chunks fill what is left.
  std::int64_t max_batch_tokens = 2048;
  int max_running = 256;  // requests in the running batch (vLLM max_num_seqs)

  enum class Preemption { kRecompute, kSwap };
  Preemption preemption = Preemption::kRecompute;
  std::string swap_tier;  // kSwap: the lower tier that takes preempted requests' blocks

  // on_demand: admit when the next prefill chunk fits, preempt when decodes run out of blocks
  // (vLLM); reserve: admit only when the request's peak KV fits (no preemption ever).
  enum class Admission { kOnDemand, kReserve };
  Admission admission = Admission::kOnDemand;

  // fast: retention profiles measured once per policy and prompt-length bucket and reused;
  // exact: each request's own prompt and output lengths are replayed under the policy.
  enum class Mode { kFast, kExact };
  Mode mode = Mode::kFast;
  int profile_buckets_per_octave = 8;        // fast mode: prompt-length buckets (2^(1/8) apart)
  std::int64_t profile_decode_tokens = 256;  // decode steps measured; the slope after is extrapolated

  Slo slo;  // goodput counts the requests that meet it

  // The prefix cache's tiers below the compute tier, in order (`prefix_cache = hbm+dram`): unused
  // prefix blocks that the compute tier reclaims move down, least recently used first, instead of
  // being dropped, and a prompt that starts with them loads them back instead of recomputing.
  std::vector<std::string> prefix_cache_lower_tiers;
  std::string prefix_cache_compute_tier;  // as written (checked against the hardware's); empty: not given

  std::string preemption_spec() const;                                   // "recompute" or "swap(tier=dram)"
  std::string prefix_cache_spec(const std::string& compute_tier) const;  // "hbm+dram"
};

// "hbm", "hbm+dram", "hbm+dram+ssd": tier names joined by '+', the compute tier first (checked
// against the hardware later: check_scenario_tiers). Throws InputError naming `where`.
void parse_prefix_cache(const std::string& text, const std::string& where, ServingConfig* config);

// "recompute" or "swap(tier=NAME)". Throws InputError naming `where`.
void parse_preemption(const std::string& text, const std::string& where, ServingConfig* config);

// "ttft=2s, tpot=100ms" (also ttft_p99=..., tpot_p99=... as `kvsim plan --slo` writes them): each
// a time with its unit. Throws InputError naming `where`.
Slo parse_slo(const std::string& text, const std::string& where);

}  // namespace kvsim

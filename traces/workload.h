#pragma once
// Serving workloads (DESIGN.md §6): when requests arrive and how long their prompts and outputs
// are. Read from the Azure LLM inference CSV (Splitwise, 2023), the Mooncake JSON-lines traces
// (FAST'25, with prefix-block hashes), or generated from a synthetic spec (Poisson or bursty gamma
// arrivals, lognormal lengths). Every reader refuses a malformed input with a one-line InputError
// naming the file, the line, the column or key, and the expected form.
#include <cstdint>
#include <string>
#include <vector>

namespace kvsim {

// Bounds that hold for every reader. A single request of more than 10M tokens is a corrupt file,
// not a workload: refusing it keeps a bad value from reaching the scheduler as an allocation.
inline constexpr std::int64_t kMaxWorkloadTokens = 10'000'000;
// Synthetic workloads beyond this many requests are a typo (memory grows ~100 bytes per request).
inline constexpr std::int64_t kMaxSyntheticRequests = 10'000'000;
// Mooncake's hash_ids cover blocks of this many tokens (FAST25-release/README.md).
inline constexpr std::int64_t kMooncakeBlockTokens = 512;

struct WorkloadRequest {
  std::int64_t id = 0;             // 0-based, order of the file (blank lines are not counted)
  double arrival_s = 0;            // seconds after the first request of the workload (first = 0)
  std::int64_t prompt_tokens = 0;  // >= 1
  // >= 1. A trace row with 0 generated tokens is kept with 1: prefill still produces the first
  // token, and dropping the row would change the arrival process (Workload::zero_output_requests).
  std::int64_t output_tokens = 0;
  // Mooncake hash_ids: block b covers prompt tokens [b * prefix_block_tokens, (b+1) * ...);
  // equal ids are shareable prefix blocks. At most ceil(prompt / block) ids; empty otherwise.
  std::vector<std::uint64_t> prefix_blocks;
};

struct Workload {
  std::string source;                     // "azure:<path>", "mooncake:<path>", or the canonical synthetic spec
  std::uint64_t seed = 0;                 // the seed a synthetic workload was drawn with; 0 for files
  std::int64_t prefix_block_tokens = 0;   // 512 for Mooncake, 0 when there are no prefix hashes
  std::int64_t zero_output_requests = 0;  // rows whose output length 0 was read as 1
  std::vector<WorkloadRequest> requests;  // sorted by arrival_s (ties keep file order)

  double duration_s() const;  // arrival of the last request (0 when empty)
};

struct WorkloadLimits {
  std::int64_t max_requests = 0;  // keep the first N requests of the file (0: all)
  // 0: no cap. A longer request is refused with an error naming its line (dropping it silently
  // would change the workload the user believes they ran).
  std::int64_t max_prompt_tokens = 0;
};

// Azure LLM inference trace: header naming TIMESTAMP, ContextTokens, GeneratedTokens (any order,
// extra columns ignored); TIMESTAMP is `YYYY-MM-DD HH:MM:SS[.fffffff]` (UTC, any number of
// fractional digits; nanoseconds are kept). Rows must not go back in time. Blank lines are skipped.
Workload read_azure_csv(const std::string& path, const WorkloadLimits& limits = {});

// Mooncake trace: one flat JSON object per line with "timestamp" (ms), "input_length",
// "output_length", "hash_ids" (array of integers >= 0); other keys are ignored when their values
// are numbers, strings, true/false/null or arrays of those. Blank lines are skipped.
Workload read_mooncake_jsonl(const std::string& path, const WorkloadLimits& limits = {});

// poisson(rate=R, requests=N, prompt_mean=1024, prompt_cv=1, prompt_max=8192, output_mean=200,
//         output_cv=1, output_max=2048)
// gamma(rate=R, cv=C, requests=N, ...same length keys...)   bursty: gamma inter-arrival times
// rate (requests/s) and requests are required, and cv for gamma. Lengths are lognormal with the given
// mean and coefficient of variation (cv=0: constant), rounded and clipped to [1, max]. Arrivals
// are kept in whole microseconds. Same spec and seed give the identical workload on any platform.
// `where` names what the spec came from in errors ("scenario.ini: [workload] trace").
Workload make_synthetic_workload(const std::string& spec, std::uint64_t seed, const std::string& where,
                                 const WorkloadLimits& limits = {});

// A text ending in .csv is an Azure trace, .jsonl a Mooncake trace (relative paths are resolved
// against `base_dir`, "" for the working folder); anything else is a synthetic spec.
Workload load_workload(const std::string& text, const std::string& base_dir, std::uint64_t seed,
                       const WorkloadLimits& limits, const std::string& where);

// Mooncake's "ideal prefix reuse": the fraction of prefix blocks that repeat a block of an earlier
// request (or an earlier block of the same one), 1 - unique ids / all ids; 0 without hashes.
// Blocks are counted whole, the last partial block of a prompt included.
double ideal_prefix_reuse(const Workload& w);

}  // namespace kvsim

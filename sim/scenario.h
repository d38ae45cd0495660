#pragma once
// A scenario: the INI file a user writes (DESIGN.md §1), resolved and validated.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hw/hardware.h"
#include "sim/placement.h"
#include "sim/serving_config.h"
#include "traces/head_map.h"
#include "traces/model_shape.h"

namespace kvsim {

struct Scenario {
  std::string path;  // the INI file

  // [model]: a preset and/or explicit keys (explicit keys override the preset). With a trace file
  // the section may be omitted; the file's model is used and must agree with any keys given.
  std::string model_preset;
  ModelShape model;
  bool model_given = false;

  // [workload]
  std::int64_t prompt_tokens = 0;  // from the trace file when one is used
  std::int64_t generated_tokens = 0;
  std::int64_t chunk_tokens = 0;    // 0: unchunked prefill
  std::string trace = "synthetic";  // "synthetic" or an .h5 path (resolved against the INI's folder)
  std::string request;              // request id in a trace file; empty: the first
  std::uint64_t seed = 1;
  // [workload] seeds: one independent synthetic draw per seed, in order (`seed`, seed + 1, ... for a
  // count). One entry, the default: a single draw whose outputs are exactly those without the key.
  std::vector<std::uint64_t> seeds = {1};
  std::string traced_layers = "all";  // "all" or a list such as 0,8,16 or 0-3
  int needles = 2;
  std::int64_t needle_tokens = 16;
  // [workload] head_map (synthetic traces): the per-head archetypes, read and checked against the
  // model at load. Null: the depth mix (head_map = none, or a preset without a measured map).
  std::shared_ptr<const HeadMap> head_map;

  // Serving (DESIGN.md §6): with [workload] arrivals, many requests share the device.
  std::string arrivals;           // Azure .csv or Mooncake .jsonl path (resolved), or a synthetic spec
  std::int64_t max_requests = 0;  // 0: every request of the arrivals
  double arrival_rate_per_s = 0;  // > 0: arrival times rescaled to this mean rate
  // [workload] arrival_process for a trace file: its own arrival times (bursts kept, only rescaled)
  // or a Poisson process at the same mean rate (seeded by `seed`), the requests in file order.
  enum class ArrivalProcess { kTrace, kPoisson };
  ArrivalProcess arrival_process = ArrivalProcess::kTrace;
  int concurrency = 0;    // > 0: closed loop of this many clients; arrival times ignored
  ServingConfig serving;  // [serving]

  // [policy] spec (repeatable), in order; `full` is added first by the runner if not listed.
  std::vector<std::string> policy_specs;

  // [hardware] (optional: without it, no time or bandwidth metrics)
  std::string hardware_preset;  // configs/hardware/<preset>.ini or a path
  std::vector<std::string> hardware_attach;
  int tensor_parallel = 1;
  Placement placement;  // [hardware] placement, parsed (default hbm_only)

  // [sim]
  int threads = 0;            // 0: all cores
  int fidelity_queries = 64;  // decode positions used for fidelity
  // Where measured retention profiles are cached (sim/serving/profile_cache.h): a folder (resolved
  // against the INI's folder), "none" (no cache), or empty for the default, $XDG_CACHE_HOME/kvsim
  // or ~/.cache/kvsim. Results are the same with and without the cache.
  std::string cache_dir;

  bool synthetic() const { return trace == "synthetic"; }
  bool serving_mode() const { return !arrivals.empty(); }
};

// Parses and validates `path`. Throws InputError("<path>: [section] key: ...") on unknown sections
// or keys, values of the wrong type, and impossible settings.
Scenario load_scenario(const std::string& path);

// The same for scenario text in memory, parsed as if it were the file `path`: relative trace and
// preset paths resolve against its folder and errors name it (kvsim sweep's expanded scenarios).
Scenario load_scenario_text(const std::string& ini_text, const std::string& path);

// The files the scenario reads: the scenario file, its trace, model and hardware preset files,
// workload file and policy mask files (those that exist), for the check that no output of a
// command overwrites one of them (util/output_guard.h).
std::vector<std::string> scenario_input_files(const Scenario& scenario);

// The files a policy spec reads, as written in it (the values of `mask=`: DuoAttention/PruLong
// head tables, relative to the working directory).
std::vector<std::string> policy_spec_files(const std::string& spec);

// Refuses, before any simulation, a [hardware] placement or [serving] preemption = swap(tier=...)
// that names a tier `hw` lacks, its compute tier, or a switch (which stores nothing). Throws
// InputError("<path>: [hardware] placement: ...") naming the hardware files.
void check_scenario_tiers(const Scenario& s, const Hardware& hw);

// The help text for the scenario file format (kvsim run --help).
std::string scenario_help();

}  // namespace kvsim

#include "sim/scenario.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <limits>
#include <sstream>

#include "sim/placement.h"
#include "traces/model_presets.h"
#include "traces/rope_scaling_ini.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/memory.h"
#include "util/strings.h"
#include "util/threads.h"

namespace kvsim {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

po::options_description scenario_options() {
  po::options_description o;
  // clang-format off
  o.add_options()
      ("model.preset", po::value<std::string>(), "model preset in configs/models/, or a model .ini path")
      ("model.name", po::value<std::string>(), "model name")
      ("model.num_layers", po::value<int>(), "transformer layers")
      ("model.num_q_heads", po::value<int>(), "query heads per layer")
      ("model.num_kv_heads", po::value<int>(), "KV heads per layer (GQA: divides num_q_heads)")
      ("model.head_dim", po::value<int>(), "dimension of one head")
      ("model.kv_bits", po::value<int>(), "bits per stored K/V element (default 16)")
      ("model.rope_theta", po::value<double>(), "RoPE base")
      ("model.hidden_size", po::value<std::int64_t>(), "hidden size (cost model)")
      ("model.intermediate_size", po::value<std::int64_t>(), "MLP intermediate size (cost model)")
      ("model.vocab_size", po::value<std::int64_t>(), "vocabulary size (cost model)")
      ("model.max_position_embeddings", po::value<std::int64_t>(), "context length: prompt + generated tokens of a request may not exceed it (presets: config.json's)");
  // clang-format on
  add_rope_scaling_options(o, "model");
  // clang-format off
  o.add_options()
      ("workload.prompt_tokens", po::value<std::int64_t>(), "prompt length n (synthetic traces)")
      ("workload.generated_tokens", po::value<std::int64_t>(), "generated tokens m (synthetic traces)")
      ("workload.chunk_tokens", po::value<std::int64_t>(), "prefill chunk size c (default: n, unchunked)")
      ("workload.trace", po::value<std::string>(), "synthetic (default) or a trace .h5 path")
      ("workload.request", po::value<std::string>(), "request id within the trace file (default: first)")
      ("workload.seed", po::value<std::string>(), "synthesiser seed, an integer >= 0 (default 1)")
      ("workload.seeds", po::value<std::string>(),
       "independent synthetic draws: a count N (seeds seed, seed+1, ..., seed+N-1; at most 1000) or a list of two or "
       "more distinct seeds such as 1,2,3 (default: 1 draw); each metric is then the mean over the draws with the "
       "half-width of its 95% Student-t interval, <metric>_ci95")
      ("workload.traced_layers", po::value<std::string>(), "all, or a list such as 0,8,16 or 0-3")
      ("workload.needles", po::value<int>(), "planted needle spans (synthetic, default 2)")
      ("workload.needle_tokens", po::value<std::int64_t>(), "tokens per needle (synthetic, default 16)")
      ("workload.head_map", po::value<std::string>(),
       "synthetic: a head map file (per layer and KV head an archetype or a gate value; README \"Head maps\"), "
       "or none for the depth mix (default: the preset's measured map configs/head_maps/<model>.tsv if any)")
      ("workload.arrivals", po::value<std::string>(), "serve many requests: an Azure trace .csv, a Mooncake .jsonl, or poisson(rate=5, requests=1000, ...) / gamma(...) (kvsim workload --help)")
      ("workload.max_requests", po::value<std::int64_t>(), "serve only the first N requests of the arrivals")
      ("workload.arrival_rate", po::value<double>(), "rescale arrival times to this mean rate, requests/s")
      ("workload.concurrency", po::value<int>(), "closed loop: this many clients, each sends its next request when the last finishes")
      ("workload.arrival_process", po::value<std::string>(), "for a trace file: trace (default: its own arrival times, bursts kept; arrival_rate rescales them) or poisson (Poisson arrivals at its mean rate or arrival_rate, seeded by seed; the requests in file order)")
      ("serving.block_tokens", po::value<std::int64_t>(), "tokens per paged KV block (default 16)")
      ("serving.max_batch_tokens", po::value<std::int64_t>(), "tokens per iteration, decodes + prefill chunks (default 2048)")
      ("serving.max_running", po::value<int>(), "most requests in the running batch (default 256)")
      ("serving.preemption", po::value<std::string>(), "recompute (default) or swap(tier=dram)")
      ("serving.admission", po::value<std::string>(), "on_demand (default, vLLM) or reserve (admit when the request's peak KV fits)")
      ("serving.mode", po::value<std::string>(), "fast (default: retention profiles per prompt-length bucket) or exact (each request replayed)")
      ("serving.profile_buckets_per_octave", po::value<int>(), "fast mode: prompt-length buckets per doubling (default 8)")
      ("serving.profile_decode_tokens", po::value<std::int64_t>(), "fast mode: decode steps measured per profile (default 256)")
      ("serving.slo", po::value<std::string>(), "goodput SLO per request, e.g. ttft=2s, tpot=100ms")
      ("serving.prefix_cache", po::value<std::string>(), "tiers of the prefix cache, compute tier first: hbm (default) or hbm+dram (unused prefix blocks move down LRU instead of being dropped; a hit there is loaded over the links, not recomputed)")
      ("policy.spec", po::value<std::vector<std::string>>()->composing(), "policy spec (repeatable)")
      ("hardware.preset", po::value<std::string>(), "hardware preset in configs/hardware/ (kvsim hw list), or an .ini path")
      ("hardware.attach", po::value<std::vector<std::string>>()->composing(),
       "extra tier from configs/hardware/attach/ (host-ddr5, cxl-gen5, ...), repeatable")
      ("hardware.tp", po::value<int>(), "tensor-parallel degree (default 1)")
      ("hardware.placement", po::value<std::string>(), "where KV lives: hbm_only (default), offload(tier=cxl, prefetch=none|layer), score_tiering(tier=dram)")
      ("sim.threads", po::value<int>(), "worker threads (0: all cores; at most 1024)")
      ("sim.fidelity_queries", po::value<int>(), "decode positions used for fidelity (default 64)")
      ("sim.cache_dir", po::value<std::string>(), "folder of cached retention profiles (serving), relative to this file; none: no cache (default $XDG_CACHE_HOME/kvsim, else ~/.cache/kvsim)");
  // clang-format on
  return o;
}

template <typename T>
void read(const po::variables_map& v, const char* key, T& out) {
  if (v.count(key)) out = v[key].as<T>();
}

// More draws than this is a typo: each draw is a whole replay.
constexpr std::uint64_t kMaxDraws = 1000;

// [workload] seeds: a count N of draws from `seed` on, or a list of two or more distinct seeds.
std::vector<std::uint64_t> parse_seeds(const std::string& text, std::uint64_t seed, bool seed_given,
                                       const std::string& at) {
  const auto integer = [](std::string_view item, std::uint64_t* out) {
    // By hand, as `seed`: Boost would wrap "-1" to 2^64 - 1.
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), *out);
    return ec == std::errc() && end == item.data() + item.size();
  };
  std::vector<std::uint64_t> seeds;
  if (text.find(',') == std::string::npos) {
    std::uint64_t count = 0;
    if (!integer(text, &count)) {
      fail_input(at, "expected a count of draws N >= 1 or a list of seeds such as 1,2,3, got '" + text + "'");
    }
    if (count < 1) fail_input(at, "must be >= 1 draws (a count N, or a list of seeds such as 1,2,3), got 0");
    if (count > kMaxDraws) fail_input(at, "at most " + std::to_string(kMaxDraws) + " draws, got " + text);
    if (seed > std::numeric_limits<std::uint64_t>::max() - (count - 1)) {
      fail_input(at, std::to_string(count) + " draws from seed " + std::to_string(seed) +
                         " would pass the largest seed, 2^64 - 1 (give a smaller [workload] seed)");
    }
    for (std::uint64_t i = 0; i < count; ++i) seeds.push_back(seed + i);
    return seeds;
  }
  for (std::string_view rest = text;;) {
    const auto comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    std::uint64_t value = 0;
    if (item.empty()) fail_input(at, "malformed list '" + text + "': an empty item (expected seeds such as 1,2,3)");
    if (!integer(item, &value)) {
      fail_input(at, "malformed list '" + text + "': '" + std::string(item) + "' is not an integer >= 0");
    }
    if (std::find(seeds.begin(), seeds.end(), value) != seeds.end()) {
      fail_input(at, "seed " + std::string(item) + " is listed twice (draws must be independent)");
    }
    seeds.push_back(value);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  if (seeds.size() > kMaxDraws)
    fail_input(at, "at most " + std::to_string(kMaxDraws) + " draws, got " + std::to_string(seeds.size()));
  if (seed_given) {
    fail_input(at,
               "a list names every draw's seed and cannot be combined with [workload] seed (give seeds = N for "
               "N draws from seed on; a sweep writes a seed into each of its scenarios)");
  }
  return seeds;
}

}  // namespace

std::string scenario_help() {
  std::ostringstream out;
  out << "Scenario file (INI; unknown sections or keys are errors):\n";
  // Named, not `scenario_options().options()` in the loop header: the range-for would keep only
  // the returned reference alive and iterate a destroyed temporary (kvsim run --help crashed).
  const po::options_description options = scenario_options();
  for (const auto& option : options.options()) {
    const std::string& name = option->long_name();
    const auto dot = name.find('.');
    out << "  [" << name.substr(0, dot) << "] " << name.substr(dot + 1) << ": " << option->description() << "\n";
  }
  return out.str();
}

namespace {

void check_lower_tier(const Hardware& hw, const std::string& tier, const std::string& where, const std::string& spec) {
  std::string problem;
  if (!hw.has_tier(tier)) problem = "has no lower tier '" + tier + "'";
  else if (tier == hw.device.compute_tier) problem = "computes from tier '" + tier + "' (it is not a lower tier)";
  else if (hw.tier(tier).kind == "switch") problem = "has tier '" + tier + "' as a switch, which stores nothing";
  if (problem.empty()) return;
  std::string tiers;
  for (const Tier& t : hw.tiers) {
    if (t.name != hw.device.compute_tier && t.kind != "switch") tiers += (tiers.empty() ? "" : ", ") + t.name;
  }
  fail_input(where, spec + ": hardware " + hw.source + " " + problem + "; expected a storage tier below '" +
                        hw.device.compute_tier + "' (" +
                        (tiers.empty() ? "none: attach one, e.g. [hardware] attach = host-ddr5" : "here: " + tiers) +
                        ")");
}

}  // namespace

void check_scenario_tiers(const Scenario& s, const Hardware& hw) {
  if (s.placement.kind != Placement::Kind::kHbmOnly) {
    check_lower_tier(hw, s.placement.tier, s.path + ": [hardware] placement", s.placement.spec());
  }
  if (s.serving_mode() && s.serving.preemption == ServingConfig::Preemption::kSwap) {
    check_lower_tier(hw, s.serving.swap_tier, s.path + ": [serving] preemption", s.serving.preemption_spec());
  }
  if (!s.serving_mode()) return;
  const ServingConfig& sv = s.serving;
  const std::string at = s.path + ": [serving] prefix_cache";
  if (!sv.prefix_cache_compute_tier.empty() && sv.prefix_cache_compute_tier != hw.device.compute_tier) {
    fail_input(at, "starts with '" + sv.prefix_cache_compute_tier + "', but hardware " + hw.source +
                       " computes from tier '" + hw.device.compute_tier + "' (write " +
                       sv.prefix_cache_spec(hw.device.compute_tier) + ")");
  }
  for (const std::string& tier : sv.prefix_cache_lower_tiers) {
    check_lower_tier(hw, tier, at, sv.prefix_cache_spec(hw.device.compute_tier));
    // One use per tier, so that no tier's capacity is counted twice.
    const bool swap = sv.preemption == ServingConfig::Preemption::kSwap && sv.swap_tier == tier;
    const bool offload = s.placement.kind == Placement::Kind::kOffload && s.placement.tier == tier;
    if (swap || offload) {
      const std::string use = swap ? "swapped requests ([serving] preemption)" : "offloaded KV ([hardware] placement)";
      fail_input(at, "tier '" + tier + "' also holds " + use + "; give the prefix cache a tier of its own");
    }
  }
}

namespace {

// "FILE: [section] key" for error messages.
struct Where {
  const std::string& path;
  std::string operator()(const std::string& section_key) const { return path + ": [" + section_key + "]"; }
};

// A file named in the scenario: a relative path is relative to the scenario's folder.
std::string beside_scenario(const Scenario& s, const std::string& file) {
  const fs::path p(file);
  return (p.is_relative() ? fs::path(s.path).parent_path() / p : p).lexically_normal().string();
}

// [workload] trace: synthetic, or a file relative to the scenario.
void read_trace_source(const po::variables_map& v, const Where& where, Scenario& s) {
  read(v, "workload.trace", s.trace);
  if (s.trace.empty()) fail_input(where("workload") + " trace", "expected 'synthetic' or a path to an .h5 file");
  if (!s.synthetic()) s.trace = beside_scenario(s, s.trace);
}

// [model]: a preset (name or .ini) and/or explicit keys; required for a synthetic trace.
void read_model(const po::variables_map& v, const Where& where, Scenario& s) {
  const bool has_model_keys = v.count("model.num_layers") || v.count("model.num_q_heads") ||
                              v.count("model.num_kv_heads") || v.count("model.head_dim") ||
                              v.count("model.rope_theta") || v.count("model.name") || v.count("model.kv_bits") ||
                              has_rope_scaling_keys(v, "model");
  if (v.count("model.preset")) {
    s.model_preset = v["model.preset"].as<std::string>();
    fs::path preset(s.model_preset);
    if (preset.extension() == ".ini" && preset.is_relative()) preset = fs::path(s.path).parent_path() / preset;
    try {
      s.model = load_model_preset(preset.extension() == ".ini" ? preset.string() : s.model_preset);
    } catch (const InputError& e) {
      fail_input(where("model") + " preset", e.what());
    }
    s.model_given = true;
  } else if (has_model_keys) {
    s.model.name = "custom";
    s.model_given = true;
  } else if (s.synthetic()) {
    fail_input(where("model"),
               "missing: give preset = NAME or num_layers/num_q_heads/num_kv_heads/head_dim/rope_theta");
  }
  read(v, "model.name", s.model.name);
  read(v, "model.num_layers", s.model.num_layers);
  read(v, "model.num_q_heads", s.model.num_q_heads);
  read(v, "model.num_kv_heads", s.model.num_kv_heads);
  read(v, "model.head_dim", s.model.head_dim);
  read(v, "model.kv_bits", s.model.kv_bits);
  read(v, "model.rope_theta", s.model.rope_theta);
  read_rope_scaling(v, "model", s.model.rope_scaling);
  read(v, "model.hidden_size", s.model.hidden_size);
  read(v, "model.intermediate_size", s.model.intermediate_size);
  read(v, "model.vocab_size", s.model.vocab_size);
  read(v, "model.max_position_embeddings", s.model.max_position_embeddings);
  if (s.model_given) s.model.validate(where("model"));
}

// [workload] keys of the single request (lengths, seed, traced layers, needles).
void read_request_keys(const po::variables_map& v, const Where& where, Scenario& s) {
  read(v, "workload.prompt_tokens", s.prompt_tokens);
  read(v, "workload.generated_tokens", s.generated_tokens);
  read(v, "workload.chunk_tokens", s.chunk_tokens);
  read(v, "workload.request", s.request);
  if (v.count("workload.seed")) {
    // Parsed by hand: Boost would accept "-1" for an unsigned value and wrap it to 2^64 - 1.
    const std::string text = v["workload.seed"].as<std::string>();
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), s.seed);
    if (ec != std::errc() || end != text.data() + text.size()) {
      fail_input(where("workload") + " seed", "expected an integer >= 0, got '" + text + "'");
    }
  }
  s.seeds = {s.seed};
  if (v.count("workload.seeds")) {
    const std::string at = where("workload") + " seeds";
    s.seeds = parse_seeds(v["workload.seeds"].as<std::string>(), s.seed, v.count("workload.seed") > 0, at);
    s.seed = s.seeds.front();
    if (!s.synthetic()) {
      fail_input(at, "applies only to synthetic traces: the trace file " + s.trace +
                         " is one fixed draw (remove seeds, or use trace = synthetic)");
    }
    if (v.count("workload.arrivals")) {
      fail_input(at,
                 "serving runs take one seed (it draws their arrivals and retention profiles, and their tables "
                 "have no intervals); vary [workload] seed across runs instead");
    }
  }
  read(v, "workload.traced_layers", s.traced_layers);
  // Serving replays one prompt per length bucket and policy: one traced layer keeps that quick
  // (the others follow the budget the policy gives them).
  if (v.count("workload.arrivals") && !v.count("workload.traced_layers") && s.model_given) {
    s.traced_layers = std::to_string(s.model.num_layers / 2);
  }
  read(v, "workload.needles", s.needles);
  read(v, "workload.needle_tokens", s.needle_tokens);
}

// [workload] keys of a serving run (arrivals and their rate); [serving] keys need them.
void read_arrivals(const po::variables_map& v, const Where& where, Scenario& s) {
  read(v, "workload.arrivals", s.arrivals);
  read(v, "workload.max_requests", s.max_requests);
  read(v, "workload.arrival_rate", s.arrival_rate_per_s);
  read(v, "workload.concurrency", s.concurrency);
  if (v.count("workload.arrivals")) {
    if (s.arrivals.empty())
      fail_input(where("workload") + " arrivals", "expected a .csv/.jsonl path or a synthetic spec");
    if (!s.synthetic())
      fail_input(where("workload") + " arrivals",
                 "serving needs trace = synthetic (retention profiles are replayed on synthetic traces)");
    const std::string extension = fs::path(s.arrivals).extension().string();
    if (extension == ".csv" || extension == ".jsonl") s.arrivals = beside_scenario(s, s.arrivals);
  } else {
    for (const char* key :
         {"workload.max_requests", "workload.arrival_rate", "workload.concurrency", "workload.arrival_process"}) {
      if (v.count(key)) fail_input(where("workload") + " " + std::string(key).substr(9), "needs [workload] arrivals");
    }
    for (const auto& [key, value] : v) {
      if (key.rfind("serving.", 0) == 0)
        fail_input(where("serving") + " " + key.substr(8), "needs [workload] arrivals");
    }
  }
  if (s.max_requests < 0) fail_input(where("workload") + " max_requests", "must be >= 0 (0: all)");
  if (v.count("workload.arrival_rate") && !(s.arrival_rate_per_s > 0 && s.arrival_rate_per_s < 1e9)) {
    fail_input(where("workload") + " arrival_rate", "must be > 0 requests/s");
  }
  if (v.count("workload.concurrency") && s.concurrency < 1)
    fail_input(where("workload") + " concurrency", "must be >= 1");
  if (s.concurrency > 0 && s.arrival_rate_per_s > 0) {
    fail_input(where("workload") + " concurrency",
               "contradicts arrival_rate (closed loop ignores arrival times): give one");
  }
  if (v.count("workload.arrival_process")) {
    const std::string process = v["workload.arrival_process"].as<std::string>();
    const std::string key = where("workload") + " arrival_process";
    if (process == "poisson") s.arrival_process = Scenario::ArrivalProcess::kPoisson;
    else if (process != "trace") fail_input(key, "expected trace or poisson, got '" + process + "'");
    const std::string extension = fs::path(s.arrivals).extension().string();
    if (extension != ".csv" && extension != ".jsonl") {
      fail_input(key,
                 "applies to a trace file's arrivals (a synthetic spec such as poisson(...) or gamma(...) "
                 "defines its own process)");
    }
    if (s.concurrency > 0) fail_input(key, "contradicts concurrency (closed loop ignores arrival times): give one");
  }
}

// [serving]: batching, preemption, admission, profiles, SLO, prefix cache.
void read_serving(const po::variables_map& v, const Where& where, Scenario& s) {
  ServingConfig& sv = s.serving;
  read(v, "serving.block_tokens", sv.block_tokens);
  read(v, "serving.max_batch_tokens", sv.max_batch_tokens);
  read(v, "serving.max_running", sv.max_running);
  read(v, "serving.profile_buckets_per_octave", sv.profile_buckets_per_octave);
  read(v, "serving.profile_decode_tokens", sv.profile_decode_tokens);
  if (sv.block_tokens < 1 || sv.block_tokens > 4096)
    fail_input(where("serving") + " block_tokens", "must be in [1, 4096]");
  if (sv.max_batch_tokens < 1) fail_input(where("serving") + " max_batch_tokens", "must be >= 1");
  if (sv.max_running < 1) fail_input(where("serving") + " max_running", "must be >= 1");
  if (sv.profile_buckets_per_octave < 1 || sv.profile_buckets_per_octave > 64) {
    fail_input(where("serving") + " profile_buckets_per_octave", "must be in [1, 64]");
  }
  if (sv.profile_decode_tokens < 1) fail_input(where("serving") + " profile_decode_tokens", "must be >= 1");
  if (v.count("serving.preemption"))
    parse_preemption(v["serving.preemption"].as<std::string>(), where("serving") + " preemption", &sv);
  if (v.count("serving.admission")) {
    const std::string a = v["serving.admission"].as<std::string>();
    if (a == "on_demand") sv.admission = ServingConfig::Admission::kOnDemand;
    else if (a == "reserve") sv.admission = ServingConfig::Admission::kReserve;
    else fail_input(where("serving") + " admission", "expected on_demand or reserve, got '" + a + "'");
  }
  if (v.count("serving.mode")) {
    const std::string m = v["serving.mode"].as<std::string>();
    if (m == "fast") sv.mode = ServingConfig::Mode::kFast;
    else if (m == "exact") sv.mode = ServingConfig::Mode::kExact;
    else fail_input(where("serving") + " mode", "expected fast or exact, got '" + m + "'");
  }
  if (v.count("serving.slo")) sv.slo = parse_slo(v["serving.slo"].as<std::string>(), where("serving") + " slo");
  if (v.count("serving.prefix_cache")) {
    parse_prefix_cache(v["serving.prefix_cache"].as<std::string>(), where("serving") + " prefix_cache", &sv);
  }
  if (s.serving_mode() && s.hardware_preset.empty() && !v.count("hardware.preset")) {
    fail_input(where("hardware") + " preset", "serving needs hardware (time and memory come from it)");
  }
}

// The single request as a whole: lengths within the context and memory, needles, head map.
void check_request(const po::variables_map& v, const Where& where, Scenario& s) {
  if (s.synthetic() && !s.serving_mode()) {
    if (!v.count("workload.prompt_tokens"))
      fail_input(where("workload") + " prompt_tokens", "required for a synthetic trace");
    if (s.prompt_tokens < 1) fail_input(where("workload") + " prompt_tokens", "must be >= 1");
    if (s.generated_tokens < 0) fail_input(where("workload") + " generated_tokens", "must be >= 0");
  }
  const std::int64_t context = s.model.max_position_embeddings;
  if (s.synthetic() && !s.serving_mode() && context > 0 && s.prompt_tokens + s.generated_tokens > context) {
    fail_input(where("workload") + " prompt_tokens",
               "prompt_tokens + generated_tokens = " + std::to_string(s.prompt_tokens + s.generated_tokens) +
                   " exceed the context length of " + s.model.name +
                   " (max_position_embeddings = " + std::to_string(context) + ")");
  }
  if (s.synthetic() && s.model_given) {
    check_fits_in_memory(
        2.0 * s.model.num_kv_heads * static_cast<double>(s.prompt_tokens + s.generated_tokens) * s.model.head_dim * 4,
        where("workload") + " prompt_tokens", "one layer's keys and values");
  }
  if (v.count("workload.chunk_tokens") && s.chunk_tokens < 1) {
    fail_input(where("workload") + " chunk_tokens", "must be >= 1 (omit it for unchunked prefill)");
  }
  if (s.needles < 0) fail_input(where("workload") + " needles", "must be >= 0");
  if (s.needle_tokens < 1) fail_input(where("workload") + " needle_tokens", "must be >= 1");
  if (v.count("workload.head_map") && !s.synthetic()) {
    fail_input(where("workload") + " head_map", "applies only to synthetic traces (trace = synthetic)");
  }
  if (s.synthetic() && s.model_given) {
    std::string head_map;
    read(v, "workload.head_map", head_map);
    if (!head_map.empty() && head_map != "none") head_map = beside_scenario(s, head_map);
    try {
      s.head_map = select_head_map(head_map, s.model);
    } catch (const InputError& e) {
      fail_input(where("workload") + " head_map", e.what());
    }
  }
}

// [policy] specs and [hardware]: preset, attachments, tensor parallelism, placement.
void read_hardware(const po::variables_map& v, const Where& where, Scenario& s) {
  if (v.count("policy.spec")) s.policy_specs = v["policy.spec"].as<std::vector<std::string>>();
  read(v, "hardware.preset", s.hardware_preset);
  if (v.count("hardware.attach")) s.hardware_attach = v["hardware.attach"].as<std::vector<std::string>>();
  read(v, "hardware.tp", s.tensor_parallel);
  std::string placement = "hbm_only";
  read(v, "hardware.placement", placement);
  const bool hardware_keys = v.count("hardware.attach") || v.count("hardware.tp") || v.count("hardware.placement");
  if (hardware_keys && s.hardware_preset.empty())
    fail_input(where("hardware") + " preset", "missing (kvsim hw list shows the presets)");
  if (s.tensor_parallel < 1) fail_input(where("hardware") + " tp", "must be >= 1");
  s.placement = parse_placement(placement, where("hardware") + " placement");
  if (s.serving_mode() && s.placement.kind == Placement::Kind::kScoreTiering) {
    fail_input(where("hardware") + " placement",
               "score_tiering is not modelled in serving runs (a retention curve "
               "does not say which demoted entries a request recalls); use hbm_only or offload(tier=...)");
  }
}

// [sim]: threads, fidelity queries, profile cache folder.
void read_sim(const po::variables_map& v, const Where& where, Scenario& s) {
  read(v, "sim.threads", s.threads);
  read(v, "sim.fidelity_queries", s.fidelity_queries);
  check_thread_count(s.threads, 0, where("sim") + " threads");
  if (s.fidelity_queries < 0) fail_input(where("sim") + " fidelity_queries", "must be >= 0");
  if (v.count("sim.cache_dir")) {
    s.cache_dir = v["sim.cache_dir"].as<std::string>();
    if (s.cache_dir.empty()) fail_input(where("sim") + " cache_dir", "expected a folder or none");
    if (s.cache_dir != "none") s.cache_dir = beside_scenario(s, s.cache_dir);
  }
}

}  // namespace

Scenario load_scenario(const std::string& path) { return load_scenario_text(read_ini_text(path), path); }

Scenario load_scenario_text(const std::string& ini_text, const std::string& path) {
  Scenario s;
  s.path = path;
  po::variables_map v;
  parse_ini_text(ini_text, path, scenario_options(), v);
  const Where where{path};
  // In this order: later sections depend on earlier ones (the model on the trace source, the
  // serving checks on the arrivals, the request checks on the model).
  read_trace_source(v, where, s);
  read_model(v, where, s);
  read_request_keys(v, where, s);
  read_arrivals(v, where, s);
  read_serving(v, where, s);
  check_request(v, where, s);
  read_hardware(v, where, s);
  read_sim(v, where, s);
  return s;
}

}  // namespace kvsim

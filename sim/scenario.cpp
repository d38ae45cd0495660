#include "sim/scenario.h"

#include <charconv>
#include <filesystem>
#include <sstream>

#include "sim/model_presets.h"
#include "sim/placement.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/memory.h"

namespace kvsim {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

po::options_description scenario_options() {
  po::options_description o;
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
      ("workload.prompt_tokens", po::value<std::int64_t>(), "prompt length n (synthetic traces)")
      ("workload.generated_tokens", po::value<std::int64_t>(), "generated tokens m (synthetic traces)")
      ("workload.chunk_tokens", po::value<std::int64_t>(), "prefill chunk size c (default: n, unchunked)")
      ("workload.trace", po::value<std::string>(), "synthetic (default) or a trace .h5 path")
      ("workload.request", po::value<std::string>(), "request id within the trace file (default: first)")
      ("workload.seed", po::value<std::string>(), "synthesiser seed, an integer >= 0 (default 1)")
      ("workload.traced_layers", po::value<std::string>(), "all, or a list such as 0,8,16 or 0-3")
      ("workload.needles", po::value<int>(), "planted needle spans (synthetic, default 2)")
      ("workload.needle_tokens", po::value<std::int64_t>(), "tokens per needle (synthetic, default 16)")
      ("policy.spec", po::value<std::vector<std::string>>()->composing(), "policy spec (repeatable)")
      ("hardware.preset", po::value<std::string>(), "hardware preset in configs/hardware/ (kvsim hw list), or an .ini path")
      ("hardware.attach", po::value<std::vector<std::string>>()->composing(),
       "extra tier from configs/hardware/attach/ (host-ddr5, cxl-gen5, ...), repeatable")
      ("hardware.tp", po::value<int>(), "tensor-parallel degree (default 1)")
      ("hardware.placement", po::value<std::string>(), "where KV lives: hbm_only (default), offload(tier=cxl, prefetch=none|layer), score_tiering(tier=dram)")
      ("sim.threads", po::value<int>(), "worker threads (0: all cores)")
      ("sim.fidelity_queries", po::value<int>(), "decode positions used for fidelity (default 64)");
  return o;
}

template <typename T>
void read(const po::variables_map& v, const char* key, T& out) {
  if (v.count(key)) out = v[key].as<T>();
}

}  // namespace

std::string scenario_help() {
  std::ostringstream out;
  out << "Scenario file (INI; unknown sections or keys are errors):\n";
  for (const auto& option : scenario_options().options()) {
    const std::string& name = option->long_name();
    const auto dot = name.find('.');
    out << "  [" << name.substr(0, dot) << "] " << name.substr(dot + 1) << ": " << option->description() << "\n";
  }
  return out.str();
}

Scenario load_scenario(const std::string& path) {
  Scenario s;
  s.path = path;
  po::variables_map v;
  parse_ini_file(path, scenario_options(), v);
  auto where = [&](const std::string& section_key) { return path + ": [" + section_key + "]"; };

  read(v, "workload.trace", s.trace);
  if (s.trace.empty()) fail_input(where("workload") + " trace", "expected 'synthetic' or a path to an .h5 file");
  if (!s.synthetic()) {
    const fs::path p(s.trace);
    s.trace = (p.is_relative() ? fs::path(path).parent_path() / p : p).lexically_normal().string();
  }

  const bool has_model_keys = v.count("model.num_layers") || v.count("model.num_q_heads") ||
                              v.count("model.num_kv_heads") || v.count("model.head_dim") ||
                              v.count("model.rope_theta") || v.count("model.name") || v.count("model.kv_bits");
  if (v.count("model.preset")) {
    s.model_preset = v["model.preset"].as<std::string>();
    fs::path preset(s.model_preset);
    if (preset.extension() == ".ini" && preset.is_relative()) preset = fs::path(path).parent_path() / preset;
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
    fail_input(where("model"), "missing: give preset = NAME or num_layers/num_q_heads/num_kv_heads/head_dim/rope_theta");
  }
  read(v, "model.name", s.model.name);
  read(v, "model.num_layers", s.model.num_layers);
  read(v, "model.num_q_heads", s.model.num_q_heads);
  read(v, "model.num_kv_heads", s.model.num_kv_heads);
  read(v, "model.head_dim", s.model.head_dim);
  read(v, "model.kv_bits", s.model.kv_bits);
  read(v, "model.rope_theta", s.model.rope_theta);
  read(v, "model.hidden_size", s.model.hidden_size);
  read(v, "model.intermediate_size", s.model.intermediate_size);
  read(v, "model.vocab_size", s.model.vocab_size);
  if (s.model_given) s.model.validate(where("model"));

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
  read(v, "workload.traced_layers", s.traced_layers);
  read(v, "workload.needles", s.needles);
  read(v, "workload.needle_tokens", s.needle_tokens);
  if (s.synthetic()) {
    if (!v.count("workload.prompt_tokens")) fail_input(where("workload") + " prompt_tokens", "required for a synthetic trace");
    if (s.prompt_tokens < 1) fail_input(where("workload") + " prompt_tokens", "must be >= 1");
    if (s.generated_tokens < 0) fail_input(where("workload") + " generated_tokens", "must be >= 0");
  }
  if (s.synthetic() && s.model_given) {
    check_fits_in_memory(2.0 * s.model.num_kv_heads * static_cast<double>(s.prompt_tokens + s.generated_tokens) *
                             s.model.head_dim * 4,
                         where("workload") + " prompt_tokens", "one layer's keys and values");
  }
  if (v.count("workload.chunk_tokens") && s.chunk_tokens < 1) {
    fail_input(where("workload") + " chunk_tokens", "must be >= 1 (omit it for unchunked prefill)");
  }
  if (s.needles < 0) fail_input(where("workload") + " needles", "must be >= 0");
  if (s.needle_tokens < 1) fail_input(where("workload") + " needle_tokens", "must be >= 1");

  if (v.count("policy.spec")) s.policy_specs = v["policy.spec"].as<std::vector<std::string>>();
  read(v, "hardware.preset", s.hardware_preset);
  if (v.count("hardware.attach")) s.hardware_attach = v["hardware.attach"].as<std::vector<std::string>>();
  read(v, "hardware.tp", s.tensor_parallel);
  read(v, "hardware.placement", s.placement);
  const bool hardware_keys = v.count("hardware.attach") || v.count("hardware.tp") || v.count("hardware.placement");
  if (hardware_keys && s.hardware_preset.empty()) fail_input(where("hardware") + " preset", "missing (kvsim hw list shows the presets)");
  if (s.tensor_parallel < 1) fail_input(where("hardware") + " tp", "must be >= 1");
  parse_placement(s.placement, where("hardware") + " placement");  // validated now, used by the runner
  read(v, "sim.threads", s.threads);
  read(v, "sim.fidelity_queries", s.fidelity_queries);
  if (s.threads < 0) fail_input(where("sim") + " threads", "must be >= 0 (0: all cores)");
  if (s.fidelity_queries < 0) fail_input(where("sim") + " fidelity_queries", "must be >= 0");
  return s;
}

}  // namespace kvsim

#include "sim/model_presets.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "traces/rope_scaling_ini.h"
#include "util/error.h"
#include "util/ini.h"

namespace kvsim {

namespace po = boost::program_options;
namespace fs = std::filesystem;

std::string config_dir() {
  if (const char* env = std::getenv("KVSIM_CONFIG_DIR"); env != nullptr && *env != '\0') return env;
  return KVSIM_DEFAULT_CONFIG_DIR;
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  const fs::path dir = fs::path(config_dir()) / "models";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".ini") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

ModelShape load_model_preset(const std::string& name) {
  fs::path path(name);
  if (path.extension() != ".ini") path = fs::path(config_dir()) / "models" / (name + ".ini");
  std::error_code ec;  // e.g. a name too long for the file system: "unknown", not an exception
  if (!fs::exists(path, ec)) {
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown model preset '" + name + "' (known: " + known + "; or a path to a model .ini)");
  }
  ModelShape m;
  po::options_description options;
  options.add_options()
      ("model.name", po::value(&m.name)->required())
      ("model.num_layers", po::value(&m.num_layers)->required())
      ("model.num_q_heads", po::value(&m.num_q_heads)->required())
      ("model.num_kv_heads", po::value(&m.num_kv_heads)->required())
      ("model.head_dim", po::value(&m.head_dim)->required())
      ("model.kv_bits", po::value(&m.kv_bits)->default_value(16))
      ("model.rope_theta", po::value(&m.rope_theta)->required())
      // Dense-layer shape, for the hardware cost model.
      ("model.hidden_size", po::value(&m.hidden_size))
      ("model.intermediate_size", po::value(&m.intermediate_size))
      ("model.vocab_size", po::value(&m.vocab_size))
      ("model.max_position_embeddings", po::value<int>());
  add_rope_scaling_options(options, "model");
  po::variables_map values;
  parse_ini_file(path.string(), options, values);
  read_rope_scaling(values, "model", m.rope_scaling);
  m.validate(path.string());
  return m;
}

}  // namespace kvsim

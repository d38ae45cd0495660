#include "traces/model_presets.h"

#include <filesystem>

#include "traces/rope_scaling_ini.h"
#include "util/error.h"
#include "util/ini.h"
#include "util/presets.h"

namespace kvsim {

namespace po = boost::program_options;
namespace fs = std::filesystem;

std::vector<std::string> model_preset_names() { return preset_names(fs::path(config_dir()) / "models"); }

ModelShape load_model_preset(const std::string& name) {
  const fs::path path = resolve_preset(name, fs::path(config_dir()) / "models", "model preset", "a model .ini");
  ModelShape m;
  po::options_description options;
  // clang-format off
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
      ("model.max_position_embeddings", po::value(&m.max_position_embeddings));
  // clang-format on
  add_rope_scaling_options(options, "model");
  po::variables_map values;
  parse_ini_file(path.string(), options, values);
  read_rope_scaling(values, "model", m.rope_scaling);
  m.validate(path.string());
  return m;
}

}  // namespace kvsim

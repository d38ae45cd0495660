#include "traces/rope_scaling_ini.h"

#include <cstdint>

namespace kvsim {

namespace po = boost::program_options;

namespace {

constexpr const char* kType = "rope_scaling_type";
constexpr const char* kFactor = "rope_scaling_factor";
constexpr const char* kLow = "rope_scaling_low_freq_factor";
constexpr const char* kHigh = "rope_scaling_high_freq_factor";
constexpr const char* kOriginal = "rope_scaling_original_max_position_embeddings";

std::string key(const std::string& section, const char* name) { return section + "." + name; }

}  // namespace

void add_rope_scaling_options(po::options_description& options, const std::string& section) {
  // clang-format off
  options.add_options()
      (key(section, kType).c_str(), po::value<std::string>(), "RoPE scaling: none (default), linear, llama3 (yarn is refused)")
      (key(section, kFactor).c_str(), po::value<double>(), "RoPE scaling factor (linear, llama3)")
      (key(section, kLow).c_str(), po::value<double>(), "llama3 RoPE scaling low_freq_factor")
      (key(section, kHigh).c_str(), po::value<double>(), "llama3 RoPE scaling high_freq_factor")
      (key(section, kOriginal).c_str(), po::value<std::int64_t>(),
       "llama3 RoPE scaling original_max_position_embeddings");
  // clang-format on
}

bool has_rope_scaling_keys(const po::variables_map& values, const std::string& section) {
  for (const char* name : {kType, kFactor, kLow, kHigh, kOriginal}) {
    if (values.count(key(section, name))) return true;
  }
  return false;
}

void read_rope_scaling(const po::variables_map& values, const std::string& section, RopeScaling& scaling) {
  if (values.count(key(section, kType))) {
    scaling = RopeScaling{};
    scaling.type = values[key(section, kType)].as<std::string>();
  }
  if (values.count(key(section, kFactor))) scaling.factor = values[key(section, kFactor)].as<double>();
  if (values.count(key(section, kLow))) scaling.low_freq_factor = values[key(section, kLow)].as<double>();
  if (values.count(key(section, kHigh))) scaling.high_freq_factor = values[key(section, kHigh)].as<double>();
  if (values.count(key(section, kOriginal))) {
    scaling.original_max_position_embeddings = values[key(section, kOriginal)].as<std::int64_t>();
  }
}

}  // namespace kvsim

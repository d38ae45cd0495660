// scenario_input_files: what a scenario reads, for the output-over-input check (issue 17 item 2).
#include <filesystem>

#include "sim/scenario.h"
#include "util/error.h"
#include "util/presets.h"

namespace kvsim {

namespace fs = std::filesystem;

namespace {

// A preset name or path as the loaders resolve it, or nothing when it does not resolve (the
// loader reports that itself).
void add_preset(std::vector<std::string>& files, const std::string& name, const fs::path& dir) {
  if (name.empty()) return;
  try {
    files.push_back(resolve_preset(name, dir, "preset", "an .ini").string());
  } catch (const InputError&) {}
}

}  // namespace

std::vector<std::string> policy_spec_files(const std::string& spec) {
  std::vector<std::string> files;
  for (auto at = spec.find("mask"); at != std::string::npos; at = spec.find("mask", at + 4)) {
    auto eq = spec.find_first_not_of(" \t", at + 4);
    if (eq == std::string::npos || spec[eq] != '=') continue;
    const auto begin = spec.find_first_not_of(" \t", eq + 1);
    if (begin == std::string::npos) continue;
    const auto end = spec.find_first_of(",)", begin);
    std::string value = spec.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    if (!value.empty()) files.push_back(value);
  }
  return files;
}

std::vector<std::string> scenario_input_files(const Scenario& s) {
  std::vector<std::string> files = {s.path};
  if (!s.synthetic()) files.push_back(s.trace);
  if (!s.model_preset.empty()) {
    fs::path preset(s.model_preset);
    if (preset.extension() == ".ini" && preset.is_relative()) preset = fs::path(s.path).parent_path() / preset;
    add_preset(files, preset.extension() == ".ini" ? preset.string() : s.model_preset,
               fs::path(config_dir()) / "models");
  }
  const fs::path hardware = fs::path(config_dir()) / "hardware";
  add_preset(files, s.hardware_preset, hardware);
  for (const std::string& attach : s.hardware_attach) add_preset(files, attach, hardware / "attach");
  if (s.serving_mode()) {
    const fs::path arrivals(s.arrivals);
    if (arrivals.extension() == ".csv" || arrivals.extension() == ".jsonl") files.push_back(s.arrivals);
  }
  for (const std::string& spec : s.policy_specs) {
    for (const std::string& file : policy_spec_files(spec)) files.push_back(file);
  }
  return files;
}

}  // namespace kvsim

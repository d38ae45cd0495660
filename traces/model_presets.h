#pragma once
// Model presets: configs/models/<name>.ini, values from each model's published config.json.
#include <string>
#include <vector>

#include "traces/model_shape.h"

namespace kvsim {

// Loads configs/models/<name>.ini, or `name` itself when it is a path to an .ini file.
// Throws InputError naming the file for an unknown preset or a bad file.
ModelShape load_model_preset(const std::string& name);

// Names of the presets in configs/models/, sorted.
std::vector<std::string> model_preset_names();

}  // namespace kvsim

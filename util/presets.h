#pragma once
// Named presets under configs/ (models/, hardware/, hardware/attach/): where they live, which exist,
// and how a name or a path resolves to a file. One resolver for every kind of preset.
#include <filesystem>
#include <string>
#include <vector>

namespace kvsim {

// The configs/ directory: $KVSIM_CONFIG_DIR if set, else the source tree's configs/ (compiled in).
std::string config_dir();

// Names (file stems) of the .ini files in `dir`, sorted; empty if the folder is missing.
std::vector<std::string> preset_names(const std::filesystem::path& dir);

// `name` itself when it is a path ending in .ini, else dir/name.ini. Throws InputError
// "unknown <what> '<name>' (known: a, b; or a path to <path_form>)" when the file does not exist.
std::filesystem::path resolve_preset(const std::string& name, const std::filesystem::path& dir, const std::string& what,
                                     const std::string& path_form);

}  // namespace kvsim

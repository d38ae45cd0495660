#include "util/presets.h"

#include <algorithm>
#include <cstdlib>

#include "util/error.h"

namespace kvsim {

namespace fs = std::filesystem;

std::string config_dir() {
  if (const char* env = std::getenv("KVSIM_CONFIG_DIR"); env != nullptr && *env != '\0') return env;
  return KVSIM_DEFAULT_CONFIG_DIR;
}

std::vector<std::string> preset_names(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".ini") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

fs::path resolve_preset(const std::string& name, const fs::path& dir, const std::string& what,
                        const std::string& path_form) {
  fs::path path(name);
  if (path.extension() != ".ini") path = dir / (name + ".ini");
  std::error_code ec;  // e.g. a name too long for the file system: "unknown", not an exception
  if (!fs::exists(path, ec)) {
    std::string known;
    for (const auto& n : preset_names(dir)) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown " + what + " '" + name + "' (known: " + known + "; or a path to " + path_form + ")");
  }
  return path;
}

}  // namespace kvsim

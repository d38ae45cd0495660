#include "traces/head_map.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"
#include "util/presets.h"

namespace kvsim {

namespace {

constexpr std::array<const char*, 5> kArchetypeNames = {"sink", "local", "retrieval", "heavy_hitter", "diffuse"};
constexpr const char* kCellForm =
    "expected one cell per KV head: an archetype (sink, local, retrieval, heavy_hitter, diffuse) or a gate value in "
    "[0, 1]";

bool is_separator(char c) { return c == '\t' || c == ' ' || c == '\r'; }

HeadMapCell parse_cell(std::string_view text, const std::string& where, int column) {
  HeadMapCell cell;
  for (const char* name : kArchetypeNames) {
    if (text == name) {
      cell.archetype = name;
      return cell;
    }
  }
  double value = 0.0;
  const auto [next, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string quoted = "'" + std::string(text) + "'";
  if (ec != std::errc() || next != text.data() + text.size() || !std::isfinite(value)) {
    fail_input(where,
               "cell " + std::to_string(column) + " " + quoted + " is neither an archetype nor a number; " + kCellForm);
  }
  if (value < -kGateOvershoot || value > 1.0 + kGateOvershoot) {
    fail_input(where, "cell " + std::to_string(column) + " " + quoted + " is outside [0, 1]; " + kCellForm);
  }
  cell.weight = std::clamp(value, 0.0, 1.0);
  return cell;
}

std::string fnv1a64_hex(const std::string& bytes) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

}  // namespace

void HeadMap::check_shape(const ModelShape& model) const {
  if (layers != model.num_layers || kv_heads != model.num_kv_heads) {
    fail_input(path, "head map has " + std::to_string(layers) + " layers of " + std::to_string(kv_heads) +
                         " KV heads, but model " + model.name + " has " + std::to_string(model.num_layers) +
                         " layers of " + std::to_string(model.num_kv_heads) + " KV heads");
  }
}

HeadMap read_head_map(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path, "cannot open the head map (one line per layer, one cell per KV head)");
  std::ostringstream whole;
  whole << in.rdbuf();
  const std::string bytes = whole.str();
  HeadMap map;
  map.path = path;
  map.label = std::filesystem::path(path).filename().string() + " fnv1a64:" + fnv1a64_hex(bytes);
  std::istringstream lines(bytes);
  std::string line;
  for (int line_number = 1; std::getline(lines, line); ++line_number) {
    const auto first = std::find_if_not(line.begin(), line.end(), is_separator);
    if (first == line.end() || *first == '#') continue;
    const std::string where = path + ": line " + std::to_string(line_number);
    int count = 0;
    for (auto p = line.begin(); p != line.end();) {
      p = std::find_if_not(p, line.end(), is_separator);
      if (p == line.end()) break;
      const auto end = std::find_if(p, line.end(), is_separator);
      map.cells.push_back(parse_cell(std::string_view(&*p, static_cast<std::size_t>(end - p)), where, ++count));
      p = end;
    }
    if (map.layers > 0 && count != map.kv_heads) {
      fail_input(where, "has " + std::to_string(count) + " cells, the lines before " + std::to_string(map.kv_heads) +
                            "; " + kCellForm + " on every line");
    }
    map.kv_heads = count;
    ++map.layers;
  }
  if (map.layers == 0) fail_input(path, "has no rows; expected one line per layer with one cell per KV head");
  return map;
}

std::optional<std::string> preset_head_map_path(const std::string& model_name) {
  const std::filesystem::path path = std::filesystem::path(config_dir()) / "head_maps" / (model_name + ".tsv");
  if (model_name.empty() || !std::filesystem::is_regular_file(path)) return std::nullopt;
  return path.string();
}

std::shared_ptr<const HeadMap> select_head_map(const std::string& value, const ModelShape& model) {
  if (value == "none") return nullptr;
  std::string path = value;
  if (path.empty()) {
    const auto preset = preset_head_map_path(model.name);
    if (!preset) return nullptr;
    path = *preset;
  }
  auto map = std::make_shared<HeadMap>(read_head_map(path));
  map->check_shape(model);
  return map;
}

}  // namespace kvsim

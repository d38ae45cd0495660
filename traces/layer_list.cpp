#include "traces/layer_list.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <numeric>

#include "util/error.h"
#include "util/strings.h"

namespace kvsim {

namespace {

int parse_index(const std::string& token, const std::string& text, const std::string& where) {
  const std::string t = std::string(trim(token));
  int value = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    fail_input(where, "bad layer list '" + text + "': '" + t +
                          "' is not a layer index (expected \"all\", \"0,8,16\" or ranges like \"0-3\")");
  }
  return value;
}

}  // namespace

std::vector<int> parse_layer_list(const std::string& text, int num_layers, const std::string& where) {
  std::vector<int> layers;
  if (std::string(trim(text)) == "all") {
    layers.resize(std::max(num_layers, 0));
    std::iota(layers.begin(), layers.end(), 0);
    return layers;
  }
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const std::size_t dash = item.find('-', std::string(trim(item)).empty() ? 0 : item.find_first_not_of(" \t") + 1);
    int first = 0, last = 0;
    if (dash == std::string::npos) {
      first = last = parse_index(item, text, where);
    } else {
      first = parse_index(item.substr(0, dash), text, where);
      last = parse_index(item.substr(dash + 1), text, where);
      if (last < first)
        fail_input(where, "bad layer list '" + text + "': range " + std::string(trim(item)) + " is backwards");
    }
    for (int layer : {first, last}) {
      if (layer < 0 || layer >= num_layers) {
        fail_input(where, "layer " + std::to_string(layer) + " in '" + text + "' is out of range [0, " +
                              std::to_string(num_layers) + ")");
      }
    }
    for (int layer = first; layer <= last; ++layer) layers.push_back(layer);
    start = comma + 1;
  }
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  return layers;
}

}  // namespace kvsim

#pragma once
// Parses a list of layer indices as users write it: "all", "0,8,16", "0-3,31" (ranges inclusive).
#include <string>
#include <vector>

namespace kvsim {

// Sorted, without duplicates. Throws InputError naming `where` for malformed text or a layer
// outside [0, num_layers).
std::vector<int> parse_layer_list(const std::string& text, int num_layers, const std::string& where);

}  // namespace kvsim

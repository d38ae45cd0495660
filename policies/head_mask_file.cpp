#include "policies/head_mask_file.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>

#include "traces/head_map.h"
#include "util/error.h"

namespace kvsim {

namespace {

bool is_separator(char c) { return c == '\t' || c == ' ' || c == ',' || c == '\r'; }

}  // namespace

HeadScoreTable read_head_score_table(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail_input(path, "cannot open the head mask file (one line per layer, one value in [0, 1] per KV head)");
  HeadScoreTable table;
  table.path = path;
  std::string line;
  for (int line_number = 1; std::getline(in, line); ++line_number) {
    const auto first = std::find_if_not(line.begin(), line.end(), is_separator);
    if (first == line.end() || *first == '#') continue;
    const std::string where = path + ": line " + std::to_string(line_number);
    int count = 0;
    const char* p = line.data();
    const char* end = line.data() + line.size();
    while (true) {
      while (p != end && is_separator(*p)) ++p;
      if (p == end) break;
      double value = 0.0;
      const auto [next, ec] = std::from_chars(p, end, value);
      if (ec != std::errc() || (next != end && !is_separator(*next))) {
        fail_input(where, "value " + std::to_string(count + 1) + " is not a number");
      }
      // Trained gates overshoot [0, 1] slightly (DuoAttention's Mistral-7B and Llama-3-8B-Gradient
      // patterns hold values down to -2.4e-4); its load_attn_pattern clips them, as the head maps do.
      if (!(value >= -kGateOvershoot && value <= 1.0 + kGateOvershoot)) {
        fail_input(where, "value " + std::to_string(count + 1) + " (" + std::string(p, next) +
                              ") is outside [0, 1]; expected a retrieval score per KV head");
      }
      table.values.push_back(std::clamp(value, 0.0, 1.0));
      ++count;
      p = next;
    }
    if (table.layers > 0 && count != table.kv_heads) {
      fail_input(where, "has " + std::to_string(count) + " values, the lines before " + std::to_string(table.kv_heads) +
                            "; expected one value per KV head on every line");
    }
    table.kv_heads = count;
    ++table.layers;
  }
  if (table.layers == 0) fail_input(path, "has no rows; expected one line per layer with one value per KV head");
  return table;
}

std::vector<bool> top_score_mask(std::span<const double> scores, std::int64_t count) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  std::vector<bool> mask(scores.size(), false);
  const auto n = static_cast<std::size_t>(std::clamp<std::int64_t>(count, 0, static_cast<std::int64_t>(scores.size())));
  for (std::size_t i = 0; i < n; ++i) mask[order[i]] = true;
  return mask;
}

}  // namespace kvsim

#pragma once
// Per-head retrieval scores for the head-mask policies (duoattention, prulong): reading them from
// a file, and choosing which heads keep their full cache.
//
// File format (that of DuoAttention's attn_patterns/<model>/full_attention_heads.tsv and PruLong's
// masks_sp<sparsity>.tsv): one line per layer, layer 0 first, holding one value per KV head,
// separated by tabs, spaces or commas; each value in [0, 1] is the head's retrieval score (gate
// value alpha; 1 = needs the full cache; up to kGateOvershoot outside is clipped, as DuoAttention's
// load_attn_pattern clips). Blank lines and lines starting with '#' are ignored.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kvsim {

struct HeadScoreTable {
  std::string path;
  int layers = 0;
  int kv_heads = 0;
  std::vector<double> values;  // [layers][kv_heads], row-major

  double at(int layer, int head) const {
    return values[static_cast<std::size_t>(layer) * static_cast<std::size_t>(kv_heads) +
                  static_cast<std::size_t>(head)];
  }
};

// Throws InputError naming the file (and the line) if it cannot be read, has rows of different
// lengths, no rows, or a value that is not a number in [0, 1].
HeadScoreTable read_head_score_table(const std::string& path);

// The `count` highest scores (ties: the lower index) as a mask over `scores`.
std::vector<bool> top_score_mask(std::span<const double> scores, std::int64_t count);

}  // namespace kvsim

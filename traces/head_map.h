#pragma once
// Head maps: which archetype each KV head of a model follows (issue 20 §2), as a text file.
//
// Format: one line per layer (layer 0 first), one cell per KV head, cells separated by tabs or
// spaces; blank lines and lines starting with '#' are ignored. A cell is either
//   - an archetype name: sink, local, retrieval, heavy_hitter or diffuse; or
//   - a retrieval weight: a number, DuoAttention's trained gate value (1 = the head needs the full
//     context, 0 = a streaming head). Values are clipped to [0, 1] as DuoAttention's
//     load_attn_pattern does (np.clip; the trained gates overshoot by ~2e-4); a value further than
//     kGateOvershoot outside [0, 1] is refused as not a gate value.
// The file mit-han-lab/duo-attention ships (attn_patterns/<model>/full_attention_heads.tsv) is a
// valid head map. How weights become archetypes is traces/synth_archetypes.cpp's business.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traces/model_shape.h"

namespace kvsim {

inline constexpr double kGateOvershoot = 0.01;

struct HeadMapCell {
  std::string archetype;  // an archetype name, or empty when the cell is a weight
  double weight = 0.0;    // the clipped gate value (cells without an archetype)
};

struct HeadMap {
  std::string path;   // as read, for error messages
  std::string label;  // "<file name> fnv1a64:<hex of the file's bytes>": what a trace records
  int layers = 0;
  int kv_heads = 0;
  std::vector<HeadMapCell> cells;  // [layers][kv_heads], row-major

  const HeadMapCell& at(int layer, int head) const {
    return cells[static_cast<std::size_t>(layer) * static_cast<std::size_t>(kv_heads) + static_cast<std::size_t>(head)];
  }
  // Throws InputError naming the file when its layer or KV-head count differs from the model's.
  void check_shape(const ModelShape& model) const;
};

// Throws InputError "<path>: line N: ...; expected ..." for a bad cell or ragged row, and
// "<path>: ..." when the file cannot be read or has no rows.
HeadMap read_head_map(const std::string& path);

// The measured head map bundled for a model preset: configs/head_maps/<model name>.tsv when it
// exists, else nullopt (the synthesiser then keeps its depth mix).
std::optional<std::string> preset_head_map_path(const std::string& model_name);

// What a [workload] head_map / --head-map value selects: "none" keeps the depth mix (null), an
// empty value the preset's measured map if there is one, anything else is a path. The result has
// been checked against `model`.
std::shared_ptr<const HeadMap> select_head_map(const std::string& value, const ModelShape& model);

}  // namespace kvsim

// synth_params_key: what identifies a synthetic trace, for caches of results measured on one.
#include <string>

#include "traces/synth.h"
#include "util/hash.h"

namespace kvsim {

namespace {

// A list as its length and a hash of its text: query position lists can hold a whole prompt.
template <typename T>
std::string list_key(const std::vector<T>& values) {
  std::string text;
  for (const T& v : values) text += std::to_string(v) + ",";
  return std::to_string(values.size()) + ":" + hex64(text_hash(text));
}

}  // namespace

std::string synth_params_key(const SynthParams& p) {
  return "model={" + model_shape_key(p.model) + "} prompt=" + std::to_string(p.prompt_tokens) +
         " generated=" + std::to_string(p.generated_tokens) + " traced_layers=" + list_key(p.traced_layers) +
         " seed=" + std::to_string(p.seed) + " query_window=" + std::to_string(p.query_window_tokens) +
         " extra_queries=" + list_key(p.extra_query_positions) + " needles=" + std::to_string(p.num_needles) +
         " needle_tokens=" + std::to_string(p.needle_tokens) + " question=" + std::to_string(p.question_tokens) +
         " recon=" + std::to_string(p.recon_query_tokens) +
         // The head map's label names its file and hashes its bytes: another map, or the same
         // file edited, is another trace.
         " head_map=" + (p.head_map ? p.head_map->label : std::string("none"));
}

}  // namespace kvsim

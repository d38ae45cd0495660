// Which archetype each KV head follows, and how strongly each query head pursues it.
#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "traces/duo_sparsify.h"
#include "traces/synth_detail.h"

namespace kvsim::synth {

const char* archetype_name(Archetype a) {
  switch (a) {
    case Archetype::kSink: return "sink";
    case Archetype::kLocal: return "local";
    case Archetype::kRetrieval: return "retrieval";
    case Archetype::kHeavyHitter: return "heavy_hitter";
    case Archetype::kDiffuse: return "diffuse";
  }
  return "?";
}

namespace {

// Mix by depth x in [0, 1], after what is reported for real models: early layers are mostly
// local/diffuse, retrieval heads concentrate in the middle, later layers lean on sinks and heavy
// hitters. Sink and local heads (what sinks + a window serve) are about half of all heads, in line
// with DuoAttention (a large share of heads, up to about half on GQA models such as Llama-3-8B,
// serve as streaming heads); the local share was raised from 0.05 + 0.35 (1 - x) after a recorded
// trace showed most heads of a trained model local (docs/recorded.md).
std::array<double, kNumArchetypes> depth_weights(double x) {
  return {0.10 + 0.20 * x,                            // sink
          0.25 + 0.35 * (1.0 - x),                    // local
          0.05 + 0.30 * (1.0 - std::abs(2 * x - 1)),  // retrieval
          0.05 + 0.30 * x,                            // heavy hitter
          0.05 + 0.25 * (1.0 - x)};                   // diffuse
}

double signed_unit(KeyedRng& rng) { return 2.0 * rng.uniform() - 1.0; }

double depth(const SynthParams& params, int layer) {
  const int layers = params.model.num_layers;
  return layers > 1 ? static_cast<double>(layer) / (layers - 1) : 0.5;
}

Archetype archetype_named(const std::string& name) {
  for (int a = 0; a < kNumArchetypes; ++a) {
    if (name == archetype_name(static_cast<Archetype>(a))) return static_cast<Archetype>(a);
  }
  throw std::logic_error("head map: unknown archetype '" + name + "'");  // read_head_map refuses these
}

// With a head map: named cells as written; weight cells are retrieval heads where DuoAttention's
// rule (over all weight cells of the model) keeps the full cache, else streaming heads. A gate
// value only says "streaming" (sinks + recent window suffice), not which of the two a head leans
// on, so streaming heads are split into sink and local by the depth mix's sink : local ratio
// (quota by floor, the remainder drawn), placed by the seeded shuffle of the depth mix.
std::vector<Archetype> mapped_archetypes(const SynthParams& params, int layer) {
  const HeadMap& map = *params.head_map;
  std::vector<double> gates;
  for (const HeadMapCell& cell : map.cells) {
    if (cell.archetype.empty()) gates.push_back(cell.weight);
  }
  const std::vector<bool> full = duo_sparsify(gates, kHeadMapSparsity);
  std::size_t gate_index = 0;
  for (int l = 0; l < layer; ++l) {
    for (int h = 0; h < map.kv_heads; ++h) gate_index += map.at(l, h).archetype.empty() ? 1 : 0;
  }
  std::vector<Archetype> result;
  std::vector<int> streaming;
  for (int h = 0; h < map.kv_heads; ++h) {
    const HeadMapCell& cell = map.at(layer, h);
    if (!cell.archetype.empty()) {
      result.push_back(archetype_named(cell.archetype));
    } else if (full[gate_index++]) {
      result.push_back(Archetype::kRetrieval);
    } else {
      result.push_back(Archetype::kLocal);  // sink or local: decided below
      streaming.push_back(h);
    }
  }
  const auto weights = depth_weights(depth(params, layer));
  const double w_sink = weights[static_cast<int>(Archetype::kSink)];
  const double w_local = weights[static_cast<int>(Archetype::kLocal)];
  const double share = w_sink / (w_sink + w_local) * static_cast<double>(streaming.size());
  int sinks = static_cast<int>(std::floor(share));
  KeyedRng rng(hash_key(params.seed, static_cast<std::uint64_t>(layer), 0, 0, kArchetypeStream));
  if (rng.uniform() < share - sinks) ++sinks;
  for (std::size_t i = streaming.size(); i > 1; --i) {
    std::swap(streaming[i - 1], streaming[rng.below(static_cast<std::uint64_t>(i))]);
  }
  for (int i = 0; i < sinks; ++i)
    result[static_cast<std::size_t>(streaming[static_cast<std::size_t>(i)])] = Archetype::kSink;
  return result;
}

}  // namespace

std::vector<Archetype> layer_archetypes(const SynthParams& params, int layer) {
  if (params.head_map) return mapped_archetypes(params, layer);
  const int heads = params.model.num_kv_heads;
  const int layers = params.model.num_layers;
  auto weights = depth_weights(depth(params, layer));
  double total = 0.0;
  for (double w : weights) total += w;
  // Quota per archetype (floor of its share), the rest drawn by the leftover fractions: a layer's
  // mix follows its depth closely instead of at the mercy of independent draws.
  std::array<int, kNumArchetypes> count{};
  std::array<double, kNumArchetypes> frac{};
  int assigned = 0;
  for (int a = 0; a < kNumArchetypes; ++a) {
    const double share = weights[a] / total * heads;
    count[a] = static_cast<int>(std::floor(share));
    frac[a] = share - count[a];
    assigned += count[a];
  }
  KeyedRng rng(hash_key(params.seed, static_cast<std::uint64_t>(layer), 0, 0, kArchetypeStream));
  for (; assigned < heads; ++assigned) {
    double sum = 0.0;
    for (double f : frac) sum += f;
    double pick = rng.uniform() * sum;
    int a = 0;
    while (a < kNumArchetypes - 1 && (pick -= frac[a]) > 0.0) ++a;
    ++count[a];
    frac[a] = 0.0;
  }
  // Needle retention needs retrieval heads in every traced layer, whatever subset is traced.
  const int retrieval = static_cast<int>(Archetype::kRetrieval);
  const bool need_retrieval = params.num_needles > 0 && (heads >= 2 || layer % 2 == 1 || layers == 1);
  if (need_retrieval && count[retrieval] == 0) {
    // It takes the place of the most common archetype other than local, so that a layer with few
    // heads keeps its local heads (with 2 KV heads per layer it used to lose them all).
    std::array<int, kNumArchetypes> others = count;
    const int local = static_cast<int>(Archetype::kLocal);
    if (std::accumulate(count.begin(), count.end(), 0) > count[local]) others[local] = -1;
    const int largest = static_cast<int>(std::max_element(others.begin(), others.end()) - others.begin());
    --count[largest];
    ++count[retrieval];
  }
  std::vector<Archetype> result;
  for (int a = 0; a < kNumArchetypes; ++a) result.insert(result.end(), count[a], static_cast<Archetype>(a));
  for (int i = heads - 1; i > 0; --i) std::swap(result[i], result[rng.below(static_cast<std::uint64_t>(i) + 1)]);
  return result;
}

QueryStrengths query_strengths(const SynthParams& params, const Layout& layout, int layer, int q_head,
                               Archetype archetype, std::int64_t t) {
  // Per-query-head jitter, fixed over positions: heads of one GQA group share the archetype
  // (and K/V) but not exactly the same strengths.
  KeyedRng rng(hash_key(params.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(q_head), 0,
                        kHeadJitterStream));
  const double j_sink = signed_unit(rng), j_main = signed_unit(rng), j_local = signed_unit(rng);
  std::array<double, kNeedlePairs> j_needle{};
  for (double& j : j_needle) j = signed_unit(rng);

  // Boosts are relative to the query's own causal context so the pattern holds at any length.
  const double context = static_cast<double>(std::max<std::int64_t>(t + 1, kMinContext));
  const double ln_context = std::log(context);
  QueryStrengths s;
  s.needle.assign(kNeedlePairs, 0.0);
  s.sink = ln_context - 2.5 + j_sink;  // every head leans on the sinks somewhat
  // and on the last few tokens, also relative to the context (a fixed 2.0 faded to nothing at long
  // context, while every head of the recorded trace keeps some recency: docs/recorded.md).
  s.local_peak = ln_context - 3.0 + 0.5 * j_local;
  s.noise_std = 0.8;
  switch (archetype) {
    case Archetype::kSink: s.sink = ln_context + 2.0 + 0.5 * j_main; break;
    case Archetype::kLocal: s.local_peak = ln_context + 3.0 + 0.5 * j_main; break;
    case Archetype::kRetrieval:
      if (t >= layout.question_begin) {
        for (std::size_t j = 0; j < layout.needles.size() && j < kNeedlePairs; ++j) {
          s.needle[j] = std::log(context / static_cast<double>(params.needle_tokens)) + 3.0 + 0.5 * j_needle[j];
        }
      }
      break;
    case Archetype::kHeavyHitter: s.heavy = std::log(1.0 / kHeavyHitterFraction) + 2.0 + 0.5 * j_main; break;
    case Archetype::kDiffuse:
      s.sink = ln_context - 3.5 + 0.5 * j_sink;
      s.local_peak = 0.5;
      s.noise_std = 0.5;
      break;
  }
  return s;
}

QueryStrengths recon_query_strengths(const SynthParams& params, const Layout& layout, int layer, int q_head,
                                     Archetype archetype, std::int64_t target) {
  // Boosts relative to the whole prompt: a reconstruction query attends over all of it.
  const std::int64_t last = params.prompt_tokens - 1;
  QueryStrengths s = query_strengths(params, layout, layer, q_head, archetype, last);
  if (archetype != Archetype::kRetrieval) return s;
  // A retrieval head seeks a needle only while the pass re-reads it, then attends to the whole
  // needle (its marker) as question queries do. It is not made a sharp copy head: with strided
  // steps that would single out the re-read positions themselves, an artefact of the sampling.
  const double context = static_cast<double>(std::max<std::int64_t>(params.prompt_tokens, kMinContext));
  s.needle.assign(kNeedlePairs, 0.0);
  for (std::size_t j = 0; j < layout.needles.size(); ++j) {
    if (target >= layout.needles[j].begin && target < layout.needles[j].end) {
      s.needle[j % kNeedlePairs] = std::log(context / static_cast<double>(params.needle_tokens)) + 3.0;
    }
  }
  return s;
}

}  // namespace kvsim::synth

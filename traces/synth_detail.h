#pragma once
// Internals of the synthesiser shared by traces/synth*.cpp (not part of the public interface).
//
// Layout of a pre-RoPE key/query vector of head_dim d (p = d/2 RoPE pairs, dim i pairs with i+p):
//   pairs [0, local_pairs)        fast pairs: a per-KV-head vector r shared by keys and queries,
//                                 so after RoPE q_t·k_s = Σ|r_i|² cos(f_i (t-s)): a recency kernel
//   pairs [local_pairs, p-6)      content noise only
//   pair p-3-j (j < 4)            needle marker j (needles share these pairs modulo 4)
//   pair p-2                      heavy-hitter marker
//   pair p-1                      sink marker
// The marker pairs are the slowest, so a marker's logit q·k ≈ |q||k| cos(f·Δ) barely decays with
// distance. Each marker logit boost B is set by the query's amplitude B·sqrt(d)/kKeyMarker.
#include <cstdint>
#include <string>
#include <vector>

#include "traces/synth.h"
#include "util/rng.h"

namespace kvsim::synth {

enum class Archetype { kSink, kLocal, kRetrieval, kHeavyHitter, kDiffuse };
inline constexpr int kNumArchetypes = 5;
const char* archetype_name(Archetype a);

// Stream purposes: the last coordinate of every hash_key, so no two uses share a stream.
enum Purpose : std::uint64_t {
  kKeyStream = 1,
  kValueStream = 2,
  kQueryStream = 3,
  kLocalVectorStream = 4,
  kHeadJitterStream = 5,
  kArchetypeStream = 6,
  kNeedleStream = 7,
  kReconQueryStream = 8,
  kReconKeyStream = 9,
};

// ---- Tuned constants (measured in tests/traces/synth_test.cpp; see the report in the issue) ----
inline constexpr std::int64_t kSinkTokens = 4;
inline constexpr int kNeedlePairs = 4;
inline constexpr double kKeyMarker = 8.0;        // key amplitude in its marker dim
inline constexpr double kMarkerDimNoise = 0.1;   // key noise std in marker pairs
inline constexpr double kLocalDimNoise = 0.5;    // key noise std in the fast (local) pairs
inline constexpr double kContentDimNoise = 1.0;  // key noise std elsewhere
inline constexpr double kLocalVectorStd = 1.5;   // std of r per dim
inline constexpr double kHeavyHitterFraction = 0.01;
inline constexpr double kHeavyHitterSpread = 0.15;  // log-normal spread of heavy-hitter key markers
inline constexpr std::int64_t kMinContext = 64;     // boosts use ln(max(t+1, kMinContext))
// A head map's gate values become retrieval heads by DuoAttention's own rule at the sparsity it
// deploys GQA models with (its README and evaluation scripts: sparsity 0.5; traces/duo_sparsify.h).
inline constexpr double kHeadMapSparsity = 0.5;

// Request-wide geometry derived from SynthParams.
struct Layout {
  int head_dim = 0;
  int pairs = 0;
  int local_pairs = 0;
  int sink_pair = 0;
  int heavy_pair = 0;
  std::vector<int> needle_pair;            // per needle
  std::vector<double> needle_pair_centre;  // per needle pair j < kNeedlePairs: where queries aim
  std::vector<NeedleSpan> needles;
  std::int64_t question_begin = 0;  // first position whose retrieval queries seek needles
  std::int64_t total_tokens = 0;
};
Layout make_layout(const SynthParams& params);

std::vector<NeedleSpan> place_needles(const SynthParams& params);
std::vector<std::int64_t> stored_query_positions(const SynthParams& params);

// Archetype of every KV head of `layer` (a pure function of seed, layer and head map).
std::vector<Archetype> layer_archetypes(const SynthParams& params, int layer);

// What the query of one query head at position t aims for, in logit units.
struct QueryStrengths {
  double sink = 0.0;
  double heavy = 0.0;
  std::vector<double> needle;  // per needle pair
  double local_peak = 0.0;     // recency kernel logit at distance 0
  double noise_std = 0.0;      // per-dim query noise
};
QueryStrengths query_strengths(const SynthParams& params, const Layout& layout, int layer, int q_head,
                               Archetype archetype, std::int64_t t);

// What the query of one query head at reconstruction step aimed at prompt position `target` aims
// for: the head's archetype behaviour as seen from the end of the prompt (the reconstruction pass
// sees the whole prompt), its recency kernel centred on `target` (the query is rotated to
// `target`), and for retrieval heads, while `target` lies in a needle, that needle.
QueryStrengths recon_query_strengths(const SynthParams& params, const Layout& layout, int layer, int q_head,
                                     Archetype archetype, std::int64_t target);

// n normals of standard deviation `std` from rng, using both Box-Muller outputs.
void fill_normal(KeyedRng& rng, float* out, int n, double std);

}  // namespace kvsim::synth

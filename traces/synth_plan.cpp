// Request-wide parts of a synthetic trace: parameter checks, needle placement, stored query
// positions and the dimension layout.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>

#include <Eigen/Core>

#include "traces/synth_detail.h"
#include "util/error.h"
#include "util/memory.h"

namespace kvsim {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

// Needles go in [10%, 80%) of the prompt: away from the sinks and from the question at the end.
std::int64_t needle_region_begin(std::int64_t n) { return n / 10; }
std::int64_t needle_region_end(std::int64_t n) { return n * 8 / 10; }

}  // namespace

void validate_synth_params(const SynthParams& p, const std::string& where) {
  p.model.validate(where);
  if (p.model.head_dim < 16) {
    fail_input(where, "head_dim must be at least 16 for the synthesiser, got " + str(p.model.head_dim));
  }
  if (p.prompt_tokens < 1) fail_input(where, "prompt_tokens must be at least 1, got " + str(p.prompt_tokens));
  if (p.generated_tokens < 0) fail_input(where, "generated_tokens must be >= 0, got " + str(p.generated_tokens));
  const std::int64_t total = p.prompt_tokens + p.generated_tokens;
  // One layer's keys and values are generated at once (float32).
  check_fits_in_memory(2.0 * p.model.num_kv_heads * static_cast<double>(total) * p.model.head_dim * 4, where,
                       "one layer's keys and values (" + str(total) + " tokens)");
  std::set<int> seen;
  for (const int layer : p.traced_layers) {
    if (layer < 0 || layer >= p.model.num_layers) {
      fail_input(where, "layers: layer " + str(layer) + " is out of range [0, " + str(p.model.num_layers) + ")");
    }
    if (!seen.insert(layer).second) fail_input(where, "layers: layer " + str(layer) + " is listed twice");
  }
  if (p.query_window_tokens < 0) {
    fail_input(where, "query_window_tokens must be >= 0, got " + str(p.query_window_tokens));
  }
  for (const std::int64_t t : p.extra_query_positions) {
    if (t < 0 || t >= total) fail_input(where, "query position " + str(t) + " is out of range [0, " + str(total) + ")");
  }
  if (p.recon_query_tokens < 0) {
    fail_input(where, "recon_query_tokens must be >= 0, got " + str(p.recon_query_tokens));
  }
  if (p.head_map) p.head_map->check_shape(p.model);
  if (p.num_needles < 0) fail_input(where, "num_needles must be >= 0, got " + str(p.num_needles));
  if (p.question_tokens < 0) fail_input(where, "question_tokens must be >= 0, got " + str(p.question_tokens));
  if (p.num_needles > 0) {
    if (p.needle_tokens < 1) fail_input(where, "needle_tokens must be >= 1, got " + str(p.needle_tokens));
    const std::int64_t room = needle_region_end(p.prompt_tokens) - needle_region_begin(p.prompt_tokens);
    if (p.num_needles * p.needle_tokens > room) {
      fail_input(where, "num_needles * needle_tokens (" + str(p.num_needles) + " * " + str(p.needle_tokens) +
                            ") must fit in 10%..80% of prompt_tokens (" + str(room) + " tokens)");
    }
  }
}

std::vector<std::int64_t> recon_target_positions(std::int64_t context_tokens, std::int64_t recon_query_tokens,
                                                 std::int64_t begin) {
  const std::int64_t steps = std::min(recon_query_tokens, context_tokens);
  std::vector<std::int64_t> positions;
  positions.reserve(static_cast<std::size_t>(std::max<std::int64_t>(steps, 0)));
  // Centred strides: step i covers [i·C/T_r, (i+1)·C/T_r) and re-reads its middle.
  for (std::int64_t i = 0; i < steps; ++i) positions.push_back(begin + (2 * i + 1) * context_tokens / (2 * steps));
  return positions;
}

SynthReconPlan synth_recon_plan(const SynthParams& p) {
  SynthReconPlan plan;
  if (p.recon_query_tokens <= 0) return plan;
  // KVzip re-reads the context between the system prompt (here the sinks) and the question.
  const std::int64_t begin = std::min(synth::kSinkTokens, p.prompt_tokens - 1);
  const std::int64_t end = std::max(begin + 1, p.prompt_tokens - p.question_tokens);
  for (std::int64_t b = begin; b < end; b += kReconChunkTokens) {
    const std::int64_t e = std::min(end, b + kReconChunkTokens);
    const auto key_begin = static_cast<std::int64_t>(plan.key_positions.size());
    for (std::int64_t i = 0; i < kReconPromptTokens; ++i) plan.key_positions.push_back(b);
    if (b > begin) {
      for (std::int64_t j = std::max(begin, b - kReconPrevTokens); j < b; ++j) plan.key_positions.push_back(j);
    }
    for (std::int64_t j = b; j < e; ++j) plan.key_positions.push_back(j);
    plan.passes.push_back({b, e, key_begin, static_cast<std::int64_t>(plan.key_positions.size())});
  }
  plan.targets = recon_target_positions(end - begin, p.recon_query_tokens, begin);
  std::size_t pass = 0;
  for (const std::int64_t t : plan.targets) {
    while (plan.passes[pass].context_end <= t) ++pass;
    const ReconPass& r = plan.passes[pass];
    plan.query_rows.push_back(r.key_end - (r.context_end - t));  // the copy is the pass's tail
  }
  return plan;
}

namespace synth {

std::vector<NeedleSpan> place_needles(const SynthParams& p) {
  std::vector<NeedleSpan> needles;
  if (p.num_needles <= 0) return needles;
  const std::int64_t lo = needle_region_begin(p.prompt_tokens);
  const std::int64_t free = needle_region_end(p.prompt_tokens) - lo - p.num_needles * p.needle_tokens;
  // Stars and bars: sorted gaps give non-overlapping spans, uniformly placed.
  KeyedRng rng(hash_key(p.seed, 0, 0, 0, kNeedleStream));
  std::vector<std::int64_t> offsets(p.num_needles);
  for (auto& o : offsets) o = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(free) + 1));
  std::sort(offsets.begin(), offsets.end());
  for (int j = 0; j < p.num_needles; ++j) {
    const std::int64_t begin = lo + offsets[j] + j * p.needle_tokens;
    needles.push_back({begin, begin + p.needle_tokens});
  }
  return needles;
}

std::vector<std::int64_t> stored_query_positions(const SynthParams& p) {
  const std::int64_t n = p.prompt_tokens;
  std::vector<std::int64_t> positions;
  for (std::int64_t t = std::max<std::int64_t>(0, n - p.query_window_tokens); t < n + p.generated_tokens; ++t) {
    positions.push_back(t);
  }
  positions.insert(positions.end(), p.extra_query_positions.begin(), p.extra_query_positions.end());
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  return positions;
}

Layout make_layout(const SynthParams& p) {
  Layout l;
  l.head_dim = p.model.head_dim;
  l.pairs = l.head_dim / 2;
  l.local_pairs = std::min(l.head_dim / 4, l.pairs - 2 - kNeedlePairs);
  l.sink_pair = l.pairs - 1;
  l.heavy_pair = l.pairs - 2;
  l.needles = place_needles(p);
  l.needle_pair_centre.assign(kNeedlePairs, 0.0);
  std::vector<int> count(kNeedlePairs, 0);
  for (std::size_t j = 0; j < l.needles.size(); ++j) {
    const int slot = static_cast<int>(j % kNeedlePairs);
    l.needle_pair.push_back(l.pairs - 3 - slot);
    l.needle_pair_centre[slot] += 0.5 * static_cast<double>(l.needles[j].begin + l.needles[j].end - 1);
    ++count[slot];
  }
  for (int s = 0; s < kNeedlePairs; ++s) {
    if (count[s] > 0) l.needle_pair_centre[s] /= count[s];
  }
  l.question_begin = p.prompt_tokens - std::min(p.question_tokens, p.prompt_tokens);
  l.total_tokens = p.prompt_tokens + p.generated_tokens;
  return l;
}

void fill_normal(KeyedRng& rng, float* out, int n, double std) {
  // Box-Muller on Eigen arrays: its vectorised log/sin/cos make this ~20x faster than scalar libm,
  // and generation of K and V is dominated by these normals. Fixed-size blocks keep every call on
  // the same (packet) code path, so a value does not depend on how many were asked for.
  constexpr int kBlock = 64;
  using Block = Eigen::Array<float, kBlock, 1>;
  const float scale = static_cast<float>(std);
  for (int start = 0; start < n; start += 2 * kBlock) {
    const int count = std::min(kBlock, (n - start + 1) / 2);
    Block u1 = Block::Constant(0.5f), u2 = Block::Constant(0.5f);
    for (int i = 0; i < count; ++i) {
      const std::uint64_t bits = rng.next_u64();
      u1[i] = (static_cast<float>(bits >> 40) + 0.5f) * 0x1.0p-24f;  // (0, 1): log is finite
      u2[i] = static_cast<float>((bits >> 8) & 0xFFFFFF) * 0x1.0p-24f;
    }
    const Block radius = scale * (-2.0f * u1.log()).sqrt();
    const Block angle = (2.0f * std::numbers::pi_v<float>)*u2;
    const Block c = radius * angle.cos();
    const Block s = radius * angle.sin();
    for (int i = 0; i < count; ++i) {
      out[start + 2 * i] = c[i];
      if (start + 2 * i + 1 < n) out[start + 2 * i + 1] = s[i];
    }
  }
}

}  // namespace synth
}  // namespace kvsim

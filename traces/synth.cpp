// The synthetic TraceSource: builds pre-RoPE keys and queries whose post-RoPE softmax has each
// head's archetype (traces/synth_detail.h explains the dimension layout), then rotates them.
#include "traces/synth.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "traces/rope.h"
#include "traces/synth_detail.h"

namespace kvsim {

namespace {

using namespace synth;

constexpr std::int64_t kBlockTokens = 2048;  // parallel grain for key/value generation

class SyntheticSource final : public TraceSource {
 public:
  explicit SyntheticSource(SynthParams params) : params_(std::move(params)) {
    validate_synth_params(params_, "synth");
    layout_ = make_layout(params_);
    inv_freq_ = rope_inv_freq(params_.model);  // with the model's rope_scaling
    query_positions_ = stored_query_positions(params_);
    recon_ = synth_recon_plan(params_);
    key_noise_std_.assign(layout_.head_dim, kContentDimNoise);
    for (int i = 0; i < layout_.pairs; ++i) {
      const bool marker = i >= layout_.pairs - 2 - kNeedlePairs;
      const double std = marker ? kMarkerDimNoise : i < layout_.local_pairs ? kLocalDimNoise : kContentDimNoise;
      key_noise_std_[i] = key_noise_std_[i + layout_.pairs] = static_cast<float>(std);
    }
    build_header();
  }

  const TraceHeader& header() const override { return header_; }

  LayerTrace load_layer(const std::string& request_id, int layer) const override {
    if (request_id != "0") {
      throw std::logic_error("synthetic trace has only request '0', asked for '" + request_id + "'");
    }
    if (layer < 0 || layer >= params_.model.num_layers) throw std::logic_error("synthetic trace: layer out of range");
    const ModelShape& m = params_.model;
    LayerTrace trace;
    trace.layer = layer;
    trace.query_positions = query_positions_;
    const auto archetypes = layer_archetypes(params_, layer);
    for (int h = 0; h < m.num_kv_heads; ++h) {
      trace.head_archetypes.push_back(archetype_name(archetypes[h]));
      if (archetypes[h] == Archetype::kRetrieval) trace.needle_heads.push_back(h);
    }
    std::vector<std::vector<float>> local(m.num_kv_heads);
    for (int h = 0; h < m.num_kv_heads; ++h) local[h] = local_vector(layer, h);
    generate_keys_values(layer, local, trace);
    generate_queries(layer, archetypes, local, trace);
    if (!recon_.targets.empty()) {
      generate_recon_queries(layer, archetypes, local, trace);
      generate_recon_keys(layer, local, trace);
    }
    return trace;
  }

 private:
  void build_header() {
    header_.model = params_.model;
    header_.source = "synthetic";
    header_.traced_layers = params_.traced_layers;
    if (header_.traced_layers.empty()) {
      header_.traced_layers.resize(params_.model.num_layers);
      std::iota(header_.traced_layers.begin(), header_.traced_layers.end(), 0);
    }
    std::sort(header_.traced_layers.begin(), header_.traced_layers.end());
    RequestInfo request;
    request.id = "0";
    request.prompt_tokens = params_.prompt_tokens;
    request.generated_tokens = params_.generated_tokens;
    request.needles = layout_.needles;
    header_.requests.push_back(request);
    header_.seed = params_.seed;
    header_.generator = {
        {"generator", "kvsim-synth-v1"},
        {"query_window_tokens", std::to_string(params_.query_window_tokens)},
        {"extra_query_positions", std::to_string(params_.extra_query_positions.size())},
        {"num_needles", std::to_string(params_.num_needles)},
        {"needle_tokens", std::to_string(params_.needle_tokens)},
        {"question_tokens", std::to_string(params_.question_tokens)},
        {"sink_tokens", std::to_string(kSinkTokens)},
    };
    if (params_.head_map) header_.generator["head_map"] = params_.head_map->label;
    // Only when generated, so traces without recon queries keep their exact bytes.
    if (!recon_.targets.empty()) {
      header_.generator["recon_query_tokens"] = std::to_string(recon_.targets.size());
      for (const int layer : header_.traced_layers) header_.recon_query_layers["0"].push_back(layer);
      header_.recon_pass_layers["0"] = header_.recon_query_layers["0"];
    }
  }

  // The KV head's recency vector r, full head_dim with zeros outside the fast pairs.
  std::vector<float> local_vector(int layer, int h) const {
    std::vector<float> r(layout_.head_dim, 0.0f);
    KeyedRng rng(hash_key(params_.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(h), 0,
                          kLocalVectorStream));
    fill_normal(rng, r.data(), layout_.local_pairs, kLocalVectorStd);
    fill_normal(rng, r.data() + layout_.pairs, layout_.local_pairs, kLocalVectorStd);
    return r;
  }

  void generate_keys_values(int layer, const std::vector<std::vector<float>>& local, LayerTrace& trace) const {
    const int d = layout_.head_dim;
    const int heads = params_.model.num_kv_heads;
    const std::int64_t total = layout_.total_tokens;
    const RopeTable rope(0, total, inv_freq_);
    // Sized in place (not copied from a prototype): first touch then happens in the parallel loop.
    trace.keys.resize(heads);
    trace.values.resize(heads);
    for (int h = 0; h < heads; ++h) {
      trace.keys[h].resize(total, d);
      trace.values[h].resize(total, d);
    }
    const std::int64_t blocks = (total + kBlockTokens - 1) / kBlockTokens;
    tbb::parallel_for(std::int64_t{0}, heads * blocks, [&](std::int64_t job) {
      const int h = static_cast<int>(job / blocks);
      const std::int64_t begin = (job % blocks) * kBlockTokens;
      const std::int64_t end = std::min(total, begin + kBlockTokens);
      for (std::int64_t s = begin; s < end; ++s) {
        const auto coords = [&](Purpose purpose) {
          return hash_key(params_.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(h),
                          static_cast<std::uint64_t>(s), purpose);
        };
        float* key = trace.keys[h].row(s).data();
        KeyedRng rng(coords(kKeyStream));
        const bool heavy = rng.uniform() < kHeavyHitterFraction && s >= kSinkTokens;
        const double heavy_strength = std::exp(kHeavyHitterSpread * rng.normal());
        fill_normal(rng, key, d, 1.0);
        for (int i = 0; i < d; ++i) key[i] = key[i] * key_noise_std_[i] + local[h][i];
        if (s < kSinkTokens) key[layout_.sink_pair] += static_cast<float>(kKeyMarker);
        if (heavy) key[layout_.heavy_pair] += static_cast<float>(kKeyMarker * heavy_strength);
        for (std::size_t j = 0; j < layout_.needles.size(); ++j) {
          if (s >= layout_.needles[j].begin && s < layout_.needles[j].end) {
            key[layout_.needle_pair[j]] += static_cast<float>(kKeyMarker);
          }
        }
        rope.rotate(key, s);
        KeyedRng value_rng(coords(kValueStream));
        fill_normal(value_rng, trace.values[h].row(s).data(), d, 1.0);
      }
    });
  }

  // Adds a component to pair `pair` of the pre-RoPE query at t that, once rotated to t, points
  // where a marker key at position `centre` points: logit ≈ boost · cos(f · (centre - s)).
  void add_aimed(float* q, int pair, double boost, double centre, std::int64_t t) const {
    const double amplitude = boost * std::sqrt(static_cast<double>(layout_.head_dim)) / kKeyMarker;
    const double phase = (centre - static_cast<double>(t)) * inv_freq_[pair];
    q[pair] += static_cast<float>(amplitude * std::cos(phase));
    q[pair + layout_.pairs] += static_cast<float>(amplitude * std::sin(phase));
  }

  static std::vector<double> squared_norms(const std::vector<std::vector<float>>& local) {
    std::vector<double> norm2(local.size());
    for (std::size_t h = 0; h < local.size(); ++h) {
      for (float x : local[h]) norm2[h] += static_cast<double>(x) * x;
    }
    return norm2;
  }

  // One query with strengths `s` (noise from `rng`; `local` is its KV head's recency vector of
  // squared norm `local_norm2`), aimed as seen from position t and rotated to t. Heavy hitters are
  // aimed at `heavy_centre`.
  void build_query(float* q, const QueryStrengths& s, KeyedRng& rng, const std::vector<float>& local,
                   double local_norm2, std::int64_t t, double heavy_centre) const {
    const int d = layout_.head_dim;
    fill_normal(rng, q, d, s.noise_std);
    for (int i = layout_.pairs - 2 - kNeedlePairs; i < layout_.pairs; ++i) q[i] = q[i + layout_.pairs] = 0.0f;
    const double local_scale = s.local_peak * std::sqrt(static_cast<double>(d)) / local_norm2;
    for (int i = 0; i < d; ++i) q[i] += static_cast<float>(local_scale * local[i]);
    add_aimed(q, layout_.sink_pair, s.sink, 0.5 * (kSinkTokens - 1), t);
    if (s.heavy != 0.0) add_aimed(q, layout_.heavy_pair, s.heavy, heavy_centre, t);
    for (int j = 0; j < kNeedlePairs; ++j) {
      if (s.needle[j] != 0.0) add_aimed(q, layout_.pairs - 3 - j, s.needle[j], layout_.needle_pair_centre[j], t);
    }
    apply_rope(q, d, t, inv_freq_);
  }

  void generate_queries(int layer, const std::vector<Archetype>& archetypes,
                        const std::vector<std::vector<float>>& local, LayerTrace& trace) const {
    const int group = params_.model.group_size();
    const auto rows = static_cast<std::int64_t>(query_positions_.size());
    trace.queries.resize(params_.model.num_q_heads);
    for (auto& q : trace.queries) q.resize(rows, layout_.head_dim);
    const std::vector<double> local_norm2 = squared_norms(local);
    tbb::parallel_for(std::int64_t{0}, params_.model.num_q_heads * rows, [&](std::int64_t job) {
      const int g = static_cast<int>(job / rows);
      const std::int64_t row = job % rows;
      const std::int64_t t = query_positions_[row];
      const int h = g / group;
      const QueryStrengths s = query_strengths(params_, layout_, layer, g, archetypes[h], t);
      KeyedRng rng(hash_key(params_.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(g),
                            static_cast<std::uint64_t>(t), kQueryStream));
      build_query(trace.queries[g].row(row).data(), s, rng, local[h], local_norm2[h], t, 0.5 * static_cast<double>(t));
    });
  }

  // Reconstruction step i re-reads prompt position p_i: its query is built at p_i (so its recency
  // kernel peaks there) with the archetype's whole-prompt strengths; heavy hitters are sought over
  // the whole prompt. Noise has its own stream, keyed by the step, so regular queries are unchanged.
  void generate_recon_queries(int layer, const std::vector<Archetype>& archetypes,
                              const std::vector<std::vector<float>>& local, LayerTrace& trace) const {
    const int group = params_.model.group_size();
    const auto rows = static_cast<std::int64_t>(recon_.targets.size());
    trace.recon_queries.resize(params_.model.num_q_heads);
    for (auto& q : trace.recon_queries) q.resize(rows, layout_.head_dim);
    const std::vector<double> local_norm2 = squared_norms(local);
    const double heavy_centre = 0.5 * static_cast<double>(params_.prompt_tokens - 1);
    tbb::parallel_for(std::int64_t{0}, params_.model.num_q_heads * rows, [&](std::int64_t job) {
      const int g = static_cast<int>(job / rows);
      const std::int64_t row = job % rows;
      const std::int64_t target = recon_.targets[static_cast<std::size_t>(row)];
      const int h = g / group;
      const QueryStrengths s = recon_query_strengths(params_, layout_, layer, g, archetypes[h], target);
      KeyedRng rng(hash_key(params_.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(g),
                            static_cast<std::uint64_t>(row), kReconQueryStream));
      build_query(trace.recon_queries[g].row(row).data(), s, rng, local[h], local_norm2[h], target, heavy_centre);
    });
  }

  // The keys of every repeat token: its KV head's recency vector plus noise (its own stream), no
  // sink, heavy-hitter or needle marker, rotated to SynthReconPlan::key_positions. A copy thus
  // shares its original's recency, so local heads split their attention between the chunk and its
  // copy (as a real repeat pass's local heads attend to the tokens just repeated), while sink,
  // retrieval and heavy-hitter heads keep theirs on the originals.
  void generate_recon_keys(int layer, const std::vector<std::vector<float>>& local, LayerTrace& trace) const {
    const int d = layout_.head_dim;
    const int heads = params_.model.num_kv_heads;
    const auto rows = static_cast<std::int64_t>(recon_.key_positions.size());
    const RopeTable rope(0, params_.prompt_tokens, inv_freq_);
    trace.recon_passes = recon_.passes;
    trace.recon_query_rows = recon_.query_rows;
    trace.recon_keys.resize(heads);
    for (auto& k : trace.recon_keys) k.resize(rows, d);
    const std::int64_t blocks = (rows + kBlockTokens - 1) / kBlockTokens;
    tbb::parallel_for(std::int64_t{0}, heads * blocks, [&](std::int64_t job) {
      const int h = static_cast<int>(job / blocks);
      const std::int64_t begin = (job % blocks) * kBlockTokens;
      for (std::int64_t r = begin; r < std::min(rows, begin + kBlockTokens); ++r) {
        float* key = trace.recon_keys[h].row(r).data();
        KeyedRng rng(hash_key(params_.seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(h),
                              static_cast<std::uint64_t>(r), kReconKeyStream));
        fill_normal(rng, key, d, 1.0);
        for (int i = 0; i < d; ++i) key[i] = key[i] * key_noise_std_[i] + local[h][i];
        rope.rotate(key, recon_.key_positions[static_cast<std::size_t>(r)]);
      }
    });
  }

  SynthParams params_;
  Layout layout_;
  std::vector<double> inv_freq_;
  std::vector<std::int64_t> query_positions_;
  SynthReconPlan recon_;  // the reconstruction passes; empty without recon queries
  std::vector<float> key_noise_std_;
  TraceHeader header_;
};

}  // namespace

std::unique_ptr<TraceSource> make_synthetic_source(const SynthParams& params) {
  return std::make_unique<SyntheticSource>(params);
}

}  // namespace kvsim

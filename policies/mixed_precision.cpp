// mixed_precision: MiKV-style mixed-precision KV cache (Yang et al. 2024, "No Token Left Behind:
// Reliable KV Cache Compression via Importance-Aware Mixed Precision Quantization", arXiv
// 2402.18096). Instead of evicting, the entries an eviction policy would drop are kept at low
// precision and the ones it would keep at high precision. Importance here is SnapKV's (the same
// scores, window and capacity as `snapkv(budget=..., prefill=post_fill|chunk)`, policies/snapkv_select.h).
// prefill=post_fill splits the prompt once after it; prefill=chunk splits each chunk once it is done,
// as chunked SnapKV evicts: what it would evict after chunk j drops to low precision for good (a
// quantized entry cannot be restored), so the high class after chunk j is chunked SnapKV's kept set
// and holds its capacity sum_{i<=j} min(round(b c_i) + w, c_i). Decode entries stay at model.kv_bits.
// Quantization: asymmetric per token in groups of `group` channels for K and V alike (KIVI's value
// scheme, policies/quantize.h); a precision >= model.kv_bits stores the entry as is. (MiKV itself
// adds a per-channel balancer for outlier keys; not modelled.)
// Bytes of s kept entries once the first e positions are split (e = n after a prompt of n with
// post_fill; the end of the last finished chunk with chunk), H = the SnapKV capacity there (high
// class), per K and per V:  H * B(high_bits) + (e - H) * B(low_bits) + (s - e) * D * kv_bits/8,
// B(b) = D * b/8 + D/group * 4 (fp16 scale + zero per group), or D * kv_bits/8 if b >= kv_bits.
// Entries not yet split (post_fill: the prompt while it is being prefilled) are at kv_bits.
#include <algorithm>

#include "policies/quantize.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/snapkv_select.h"
#include "util/error.h"

namespace kvsim {

namespace {

class MixedPrecisionPolicy final : public SnapKvScoredPolicy {
 public:
  MixedPrecisionPolicy(std::string spec, Budget budget, SnapKvScoring scoring, PrefillEviction mode, int high_bits,
                       int low_bits, int group)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, {mode, 0}),
        high_bits_(high_bits),
        low_bits_(low_bits),
        group_(group) {}

  std::string spec() const override { return spec_; }
  // Nothing is evicted; the prefill points only decide precision (points_ still names them, so
  // SnapKvScoredPolicy asks the trace for the window queries they score with).
  EvictionPoints eviction_points() const override { return {}; }
  void evict(const EvictionContext&, LayerResidency&) const override {}

  bool compresses() const override { return true; }

  StoredEntries stored(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                       std::int64_t count) const override {
    check_head_dim(model);
    const double full = model.head_dim * model.kv_bits / 8.0;
    const std::vector<Pass> spans = compression_spans(request, prefill, points_.prefill);
    const int last = last_compressed_span(spans, count);
    if (last < 0) return {0, 0, {count * full, count * full}};
    const std::int64_t split = spans[static_cast<std::size_t>(last)].end;
    const std::int64_t high = high_count(spans, last);
    const double bytes = static_cast<double>(high) * entry_bytes(model, high_bits_) +
                         static_cast<double>(split - high) * entry_bytes(model, low_bits_) +
                         static_cast<double>(count - split) * full;
    return {split, split, {bytes, bytes}};
  }

  CompressedHead compressed_head(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                                 const LayerTrace& trace, int kv_head) const override {
    check_head_dim(model);
    const auto h = static_cast<std::size_t>(kv_head);
    const std::vector<bool> important = high_set(model, request, prefill, trace, kv_head);
    CompressedHead out{trace.keys[h], trace.values[h]};
    for (std::int64_t t = 0; t < request.prompt_tokens; ++t) {
      const int bits = important[static_cast<std::size_t>(t)] ? high_bits_ : low_bits_;
      if (bits >= model.kv_bits) continue;
      const auto row = static_cast<Eigen::Index>(t);
      out.keys.row(row) = fake_quantize_per_token(trace.keys[h].row(row), bits, group_);
      out.values.row(row) = fake_quantize_per_token(trace.values[h].row(row), bits, group_);
    }
    return out;
  }

 private:
  // The SnapKV capacity (window included) once spans[0..last] are split: entries per head in the
  // high class.
  std::int64_t high_count(std::span<const Pass> spans, int last) const {
    const Pass& span = spans[static_cast<std::size_t>(last)];
    return std::min(span.end, budget_.capacity(span, spans, points_.prefill, scoring_.window));
  }

  // Which prompt positions stay at high precision in this head: SnapKV's kept set, evicting once
  // after the prompt or after every chunk.
  std::vector<bool> high_set(const ModelShape& model, const RequestInfo& request, std::span<const Pass> prefill,
                             const LayerTrace& trace, int kv_head) const {
    const std::vector<Pass> spans = compression_spans(request, prefill, points_.prefill);
    LayerResidency residency(static_cast<std::size_t>(model.num_kv_heads));  // only this head scored
    auto& head = residency[static_cast<std::size_t>(kv_head)];
    for (std::size_t j = 0; j < spans.size(); ++j) {
      for (std::int64_t t = spans[j].begin; t < spans[j].end; ++t) head.push_back(static_cast<std::int32_t>(t));
      const EvictionContext ctx{model, request, trace.layer, &trace, spans[j], spans, nullptr};
      snapkv_evict_to_capacity(ctx, *this, residency, high_count(spans, static_cast<int>(j)), scoring_,
                               points_.prefill);
    }
    std::vector<bool> important(static_cast<std::size_t>(request.prompt_tokens), false);
    for (std::int32_t t : head) important[static_cast<std::size_t>(t)] = true;
    return important;
  }

  double entry_bytes(const ModelShape& model, int bits) const {  // one K (or V) vector
    if (bits >= model.kv_bits) return model.head_dim * model.kv_bits / 8.0;
    return quantized_bytes(model.head_dim, bits, group_);
  }

  void check_head_dim(const ModelShape& model) const {
    if (model.head_dim % group_ != 0) {
      throw InputError(spec() + ": group must divide head_dim " + std::to_string(model.head_dim));
    }
  }

  int high_bits_;
  int low_bits_;
  int group_;
};

}  // namespace

void register_mixed_precision(PolicyRegistry& registry) {
  registry.add(
      {"mixed_precision",
       "MiKV-style: SnapKV-important entries at high precision, the rest at low precision (nothing evicted)",
       "Yang et al. 2024, No Token Left Behind: Reliable KV Cache Compression via Importance-Aware Mixed "
       "Precision Quantization (arXiv 2402.18096); importance: SnapKV (policies/snapkv_select.h)",
       {{"budget", "0.2",
         "high-precision share: fraction (<1) of the prompt besides the window, or a token count (>=1) incl. it"},
        {"window", "32", "SnapKV observation window (always high precision)"},
        {"kernel", "7", "SnapKV pooling kernel (odd)"},
        {"pooling", "max", "max|avg"},
        {"high_bits", "16", "bits of the important entries: 4 | 8 | 16 (16: kept as stored, model.kv_bits)"},
        {"low_bits", "2", "bits of the other prompt entries: 2 | 4 | 8"},
        {"group", "32", "quantization group (channels per token); divides head_dim"},
        {"prefill", "post_fill",
         "post_fill (split the prompt once after it) | chunk (split each chunk once it is done)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const SnapKvScoring scoring = SnapKvScoring::read(args);
         scoring.check_budget(args, budget);
         const std::int64_t high = args.get_int("high_bits");
         const std::int64_t low = args.get_int("low_bits");
         const std::int64_t group = args.get_int("group");
         if (high != 4 && high != 8 && high != 16) args.fail("high_bits", "must be 4, 8 or 16");
         if (low != 2 && low != 4 && low != 8) args.fail("low_bits", "must be 2, 4 or 8");
         if (low > high) args.fail("low_bits", "must not exceed high_bits (" + std::to_string(high) + ")");
         if (group < 1 || group > 4096) args.fail("group", "must be an integer in [1, 4096]");
         const PrefillEviction mode = read_compression_point(args);
         return std::make_unique<MixedPrecisionPolicy>(args.canonical(), budget, scoring, mode, static_cast<int>(high),
                                                       static_cast<int>(low), static_cast<int>(group));
       }});
}

}  // namespace kvsim

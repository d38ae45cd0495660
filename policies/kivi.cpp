// kivi: 2/4-bit asymmetric KV quantization, keys per channel and values per token, with a
// full-precision residual window (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit
// Quantization for KV Cache", arXiv 2402.02750; reference jy-yuan/KIVI models/llama_kivi.py
// LlamaAttention_KIVI.forward and quant/new_pack.py). Evicts nothing.
//
// Storage of one KV head holding s entries (llama_kivi.py): keys are quantized R tokens at a time,
// so floor(s / R) * R keys are quantized (per channel, in groups of G tokens) and s mod R wait in
// full precision; values are quantized one token at a time once more than R are held, so
// max(0, s - R) values are quantized (per token, in groups of G channels) and the last R are full.
// Bytes: per quantized element bits/8, plus an fp16 scale and an fp16 zero-point per group
// (4 bytes / G elements); per full-precision element model.kv_bits / 8. With head_dim D:
//   key bytes   = Kq * D * (bits/8 + 4/G) + (s - Kq) * D * kv_bits/8,  Kq = floor(s/R) * R
//   value bytes = Vq * D * (bits/8 + 4/G) + (s - Vq) * D * kv_bits/8,  Vq = max(0, s - R)
// e.g. bits=2, G=32, D=128: 48 + 48 = 96 bytes per quantized entry vs 512 at fp16.
#include <algorithm>

#include "policies/quantize.h"
#include "policies/registry.h"
#include "util/error.h"

namespace kvsim {

namespace {

class KiviPolicy final : public Policy {
 public:
  KiviPolicy(std::string spec, int bits, int group, std::int64_t residual)
      : spec_(std::move(spec)), bits_(bits), group_(group), residual_(residual) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return {}; }
  void evict(const EvictionContext&, LayerResidency&) const override {}

  bool compresses() const override { return true; }

  StoredEntries stored(const ModelShape& model, const RequestInfo&, std::span<const Pass>,
                       std::int64_t count) const override {
    check_head_dim(model);
    const std::int64_t d = model.head_dim;
    const std::int64_t keys_quantized = count / residual_ * residual_;
    const std::int64_t values_quantized = std::max<std::int64_t>(0, count - residual_);
    const double full_bytes_per_element = model.kv_bits / 8.0;
    auto bytes = [&](std::int64_t quantized) {
      // Keys: a group is G tokens of one channel; values: G channels of one token. Either way
      // quantized * D elements in quantized * D / G groups.
      return quantized_bytes(quantized * d, bits_, group_) +
             static_cast<double>((count - quantized) * d) * full_bytes_per_element;
    };
    return {keys_quantized, values_quantized, {bytes(keys_quantized), bytes(values_quantized)}};
  }

  CompressedHead compressed_head(const ModelShape& model, const RequestInfo&, std::span<const Pass>,
                                 const LayerTrace& trace, int kv_head) const override {
    check_head_dim(model);
    const auto h = static_cast<std::size_t>(kv_head);
    // Key groups start at multiples of G from position 0 (R is a multiple of G), as KIVI's blocks do.
    return {fake_quantize_per_channel(trace.keys[h], bits_, group_),
            fake_quantize_per_token(trace.values[h], bits_, group_)};
  }

 private:
  void check_head_dim(const ModelShape& model) const {
    if (model.head_dim % group_ != 0) {
      throw InputError(spec() + ": group must divide head_dim " + std::to_string(model.head_dim) +
                       " (values are quantized in groups of channels)");
    }
  }

  std::string spec_;
  int bits_;
  int group_;
  std::int64_t residual_;
};

}  // namespace

void register_kivi(PolicyRegistry& registry) {
  registry.add(
      {"kivi",
       "KIVI: keys per-channel, values per-token asymmetric quantization, full-precision residual window",
       "Liu et al. 2024, KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache (arXiv 2402.02750); "
       "jy-yuan/KIVI models/llama_kivi.py, quant/new_pack.py",
       {{"bits", "2", "bits per quantized element: 2 | 4"},
        {"group", "32", "quantization group size (tokens per key group, channels per value group); divides head_dim"},
        {"residual", "128",
         "tokens kept in full precision (a multiple of group): keys quantized R at a time, "
         "values once older than the last R"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const std::int64_t bits = args.get_int("bits");
         const std::int64_t group = args.get_int("group");
         const std::int64_t residual = args.get_int("residual");
         if (bits != 2 && bits != 4) args.fail("bits", "must be 2 or 4");
         if (group < 1 || group > 4096) args.fail("group", "must be an integer in [1, 4096]");
         if (residual < group || residual % group != 0) {
           args.fail("residual", "must be a positive multiple of group (" + std::to_string(group) + ")");
         }
         return std::make_unique<KiviPolicy>(args.canonical(), static_cast<int>(bits), static_cast<int>(group),
                                             residual);
       }});
}

}  // namespace kvsim

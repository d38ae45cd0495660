// duoattention and prulong: per-head masks. Each (layer, KV head) either keeps its full cache
// (retrieval head) or only the first `sinks` tokens and the `window` most recent (streaming head),
// evicting at every prefill chunk and decode step (DESIGN.md §4).
//
// DuoAttention (Xiao et al. 2024, arXiv 2410.10819; mit-han-lab/duo-attention duo_attn/utils.py,
// NVIDIA/kvpress duo_attention_press.py) and PruLong (Bhaskar et al. 2025, "Cache Me If You Can",
// arXiv 2506.17121; qqtang-code/PruLong prulong/) differ only in how the per-head gate values are
// trained (DuoAttention: distillation on synthetic passkey retrieval; PruLong: end-to-end
// next-token loss on natural long data with hard-concrete masks) and in their defaults. Applying
// trained values is the same procedure, so both names share this file:
//   duoattention: sparsity 0.5, sinks 128, window 256 (released Llama-3.1-8B pattern config.json;
//                 kvpress's on-the-fly fallback); streaming heads = the round(N x sparsity) lowest
//                 gate values over all layers x KV heads (kvpress; the original thresholds at
//                 np.quantile(values, sparsity) after random tie-breaking noise);
//   prulong:      sparsity 0.7, sinks 128, window 1024 (run_scripts/prulong_masksonly.sh
//                 end_head_sparsity, sink_size, context_window_if_toggled); full heads = the
//                 int(N x (1 - sparsity)) highest (modeling_flash_llama.py round_masks_for_sparsity).
// Ties in both: the lower (layer, head) keeps the full cache (the originals break ties randomly).
//
// Gate values come from `mask=PATH` (policies/head_mask_file.h); without one, duoattention uses the
// model preset's published gate values where kvsim bundles them (configs/head_maps/<model>.tsv,
// traces/head_map.h; issue 19), made a mask by the original's own rule, quantile threshold and
// seeded tie-breaking noise included (traces/duo_sparsify.h). Otherwise, and always for prulong
// (no PruLong-trained masks are bundled; DuoAttention's gates answer a different objective), the
// gates come from the trace by a proxy (policies/head_mask_proxy.h). The proxy is known one traced layer at a time, so
// it ranks heads within a layer: the count rule is applied to all layers x KV heads and the full heads are spread
// evenly over the layers (even_share), so the model's fraction of full heads is the method's; an untraced layer has its
// share of full heads, which is all its accounting needs (Policy::untraced_head_groups).
#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>

#include "policies/head_mask_file.h"
#include "policies/head_mask_proxy.h"
#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "traces/duo_sparsify.h"
#include "traces/head_map.h"
#include "util/error.h"

namespace kvsim {

namespace {

enum class CountRule { kDuoAttention, kPruLong };

struct Method {
  const char* name;
  CountRule rule;
  double sparsity;
  std::int64_t sinks;
  std::int64_t window;
};

constexpr Method kDuoAttention{"duoattention", CountRule::kDuoAttention, 0.5, 128, 256};
constexpr Method kPruLong{"prulong", CountRule::kPruLong, 0.7, 128, 1024};

struct HeadMaskState final : PolicyState {
  std::vector<bool> full;  // per KV head of the layer; empty until the first eviction
};

class HeadMaskPolicy final : public Policy {
 public:
  HeadMaskPolicy(std::string spec, const Method& method, double sparsity, std::int64_t sinks, std::int64_t window,
                 std::optional<HeadScoreTable> table, std::int64_t proxy_window, EvictionPoints points)
      : spec_(std::move(spec)),
        method_(method),
        sparsity_(sparsity),
        sinks_(sinks),
        window_(window),
        table_(std::move(table)),
        proxy_window_(proxy_window),
        points_(points) {
    if (table_) full_ = top_score_mask(table_->values, full_count(static_cast<std::int64_t>(table_->values.size())));
  }

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }

  void add_required_queries(const RequestInfo& request, std::span<const Pass> /*prefill*/,
                            std::vector<std::int64_t>* positions) const override {
    if (table_ || (points_.prefill == PrefillEviction::kNone && points_.decode_every == 0)) return;
    for (const std::int64_t t : observed(request)) positions->push_back(t);
  }

  std::unique_ptr<PolicyState> make_state() const override { return std::make_unique<HeadMaskState>(); }

  std::vector<int> untraced_head_groups(const ModelShape& model, int layer) const override {
    int full = 0;
    if (table_) {
      check_table(model);
      const auto row = static_cast<std::size_t>(layer) * static_cast<std::size_t>(model.num_kv_heads);
      for (int h = 0; h < model.num_kv_heads; ++h) full += full_[row + static_cast<std::size_t>(h)];
    } else if (const std::vector<bool>* bundled = bundled_full(model)) {
      const auto row = static_cast<std::size_t>(layer) * static_cast<std::size_t>(model.num_kv_heads);
      for (int h = 0; h < model.num_kv_heads; ++h) full += (*bundled)[row + static_cast<std::size_t>(h)];
    } else {
      full = static_cast<int>(proxy_full_count(model, layer));
    }
    return {full, model.num_kv_heads - full};
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::vector<bool> full = full_heads(ctx);
    for (std::size_t h = 0; h < residency.size(); ++h) {
      if (full[h]) continue;
      keep_sinks_and_window(residency[h], sinks_, window_);
    }
  }

 private:
  // Heads (of `heads` ranked together) that keep the full cache.
  std::int64_t full_count(std::int64_t heads) const {
    const auto n = static_cast<double>(heads);
    if (method_.rule == CountRule::kDuoAttention) return heads - round_half_even(n * sparsity_);
    return static_cast<std::int64_t>(n * (1.0 - sparsity_));  // Python int(): truncation
  }

  // Without a mask file: layer `layer`'s even share of the model's full heads.
  std::int64_t proxy_full_count(const ModelShape& model, int layer) const {
    const std::int64_t total = full_count(static_cast<std::int64_t>(model.num_layers) * model.num_kv_heads);
    return even_share(total, model.num_layers, layer);
  }

  std::vector<std::int64_t> observed(const RequestInfo& request) const {
    std::vector<std::int64_t> positions;
    const std::int64_t n = request.prompt_tokens;
    for (std::int64_t t = std::max<std::int64_t>(0, n - proxy_window_); t < n; ++t) positions.push_back(t);
    return positions;
  }

  void check_table(const ModelShape& model) const {
    if (table_->layers != model.num_layers || table_->kv_heads != model.num_kv_heads) {
      fail_input(table_->path, "has " + std::to_string(table_->layers) + " lines (layers) of " +
                                   std::to_string(table_->kv_heads) + " values (KV heads), but model " + model.name +
                                   " has " + std::to_string(model.num_layers) + " layers of " +
                                   std::to_string(model.num_kv_heads) + " KV heads");
    }
  }

  // duoattention without a mask file, for a model with a bundled map: its full heads per (layer, KV
  // head), row-major, by DuoAttention's sparsify rule; null otherwise. A named cell counts as gate 1
  // (retrieval) or 0 (any other archetype). Read once per model, under a lock: evict() runs in parallel.
  const std::vector<bool>* bundled_full(const ModelShape& model) const {
    if (method_.rule != CountRule::kDuoAttention) return nullptr;
    const std::lock_guard lock(bundled_mutex_);
    auto [it, inserted] = bundled_.try_emplace(model.name);
    if (inserted) {
      if (const std::shared_ptr<const HeadMap> map = select_head_map("", model)) {
        std::vector<double> gates;
        for (const HeadMapCell& cell : map->cells) {
          gates.push_back(cell.archetype.empty() ? cell.weight : cell.archetype == "retrieval" ? 1.0 : 0.0);
        }
        it->second = duo_sparsify(gates, sparsity_);
      }
    }
    return it->second ? &*it->second : nullptr;
  }

  // The layer's full heads: from the mask file, from the bundled map, from the proxy (once per layer and request), or
  // for an untraced layer its groups {full, streaming} (untraced_head_groups).
  std::vector<bool> full_heads(const EvictionContext& ctx) const {
    if (ctx.trace == nullptr) return {true, false};
    const int heads = ctx.model.num_kv_heads;
    if (table_) {
      check_table(ctx.model);
      const auto first = full_.begin() + static_cast<std::ptrdiff_t>(ctx.layer) * heads;
      return std::vector<bool>(first, first + heads);
    }
    if (const std::vector<bool>* bundled = bundled_full(ctx.model)) {
      const auto first = bundled->begin() + static_cast<std::ptrdiff_t>(ctx.layer) * heads;
      return std::vector<bool>(first, first + heads);
    }
    auto& state = static_cast<HeadMaskState&>(*ctx.state);
    if (state.full.empty()) {
      const std::vector<std::int64_t> positions = observed(ctx.request);
      const std::vector<double> scores = streaming_loss_scores(*ctx.trace, ctx.model, positions, sinks_, window_);
      state.full = top_score_mask(scores, proxy_full_count(ctx.model, ctx.layer));
    }
    return state.full;
  }

  std::string spec_;
  Method method_;
  double sparsity_;
  std::int64_t sinks_;
  std::int64_t window_;
  std::optional<HeadScoreTable> table_;
  std::vector<bool> full_;  // with a mask file: per (layer, KV head), row-major
  std::int64_t proxy_window_;
  EvictionPoints points_;
  mutable std::mutex bundled_mutex_;
  mutable std::map<std::string, std::optional<std::vector<bool>>> bundled_;  // by model name
};

PolicyInfo head_mask_info(const Method& m, const std::string& summary, const std::string& reference) {
  return {
      m.name,
      summary,
      reference,
      {{"sparsity", format_spec_number(m.sparsity), "fraction of KV heads that are streaming heads, in [0, 1]"},
       {"sinks", std::to_string(m.sinks), "first tokens a streaming head keeps"},
       {"window", std::to_string(m.window), "most recent tokens a streaming head keeps"},
       {"mask", "",
        "file of gate values (path relative to the working directory): one line per layer, one value in [0, 1] per KV "
        "head (DuoAttention "
        "full_attention_heads.tsv / PruLong masks.tsv); without it, duoattention uses the preset's published gate "
        "values "
        "(configs/head_maps/<model>.tsv: llama-3.1-8b, mistral-7b-v0.3) by DuoAttention's quantile rule with its "
        "seed-42 "
        "tie-breaking noise; otherwise heads are ranked per traced layer by "
        "the attention mass the last proxy_window prompt queries pay outside sinks + window, the model's full heads "
        "spread evenly over the layers"},
       {"proxy_window", "32", "observation queries of the proxy (without mask)"},
       {"prefill", "chunk", "none|post_fill|chunk"},
       {"decode", "step", "none|step|every:K|length:K"}},
      [&m](PolicyArgs& args) -> std::unique_ptr<Policy> {
        const double sparsity = args.get_double("sparsity");
        const std::int64_t sinks = args.get_int("sinks");
        const std::int64_t window = args.get_int("window");
        const std::string mask = args.get_string("mask");
        const std::int64_t proxy_window = args.get_int("proxy_window");
        const auto points = read_eviction_points(args);
        if (!(sparsity >= 0.0 && sparsity <= 1.0)) args.fail("sparsity", "must be in [0, 1]");
        if (sinks < 0) args.fail("sinks", "must be >= 0");
        if (window < 1) args.fail("window", "must be >= 1");
        if (proxy_window < 1) args.fail("proxy_window", "must be >= 1");
        if (!mask.empty() && args.has("proxy_window")) args.fail("proxy_window", "applies only without mask");
        if (!mask.empty()) args.set_canonical("proxy_window", "");  // the mask replaces the proxy
        std::optional<HeadScoreTable> table;
        if (!mask.empty()) {
          try {
            table = read_head_score_table(mask);
          } catch (const InputError& e) {
            args.fail("mask", e.what());
          }
        }
        return std::make_unique<HeadMaskPolicy>(args.canonical(), m, sparsity, sinks, window, std::move(table),
                                                proxy_window, points);
      }};
}

}  // namespace

void register_head_masks(PolicyRegistry& registry) {
  registry.add(head_mask_info(
      kDuoAttention,
      "DuoAttention: retrieval heads keep the full cache, streaming heads (the lowest gate values) sinks + window",
      "Xiao et al. 2024, DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads "
      "(arXiv 2410.10819); mit-han-lab/duo-attention, NVIDIA/kvpress duo_attention_press.py"));
  registry.add(head_mask_info(
      kPruLong, "PruLong: DuoAttention's head split with end-to-end trained masks; streaming heads keep sinks + window",
      "Bhaskar et al. 2025, Cache Me If You Can: How Many KVs Do You Need for Effective Long-Context LMs? "
      "(arXiv 2506.17121); qqtang-code/PruLong (princeton-pli/PruLong)"));
}

}  // namespace kvsim

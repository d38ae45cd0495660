// kvcompress: KV-Compress (Rehg 2024, arXiv 2410.00161), as IsaacRe/vllm-kvcompress @5e2a639 keeps
// it (docs/policy-sources.md "kvcompress" cites file and line for each step). A paged cache whose
// blocks hold one KV head's entries, so heads keep different counts.
//
// Metric (vllm/attention/backends/flash_attn.py _naive_kvc_masked_attention, the path the engine runs:
// config.py forces enable_flash_kvc off): per query head, the squared causal attention each resident
// entry receives from the last `window` queries ("L2-sum"), summed over them, with the metric buffer
// of the run scripts (0) so the window's own entries get a metric too; then max_pool1d(kernel 7)
// along ALL resident entries, window included; then summed over the GQA group's query heads
// (metrics.py CompressionMetrics.aggregate_prefill). The sum over the group is the authors' GQA
// handling: one cache per KV head.
//
// Protection (metrics.py schedule_evictions, scheduler.py _schedule_compression): the engine
// compresses before the step that caches the token just sampled, and protects positions above
// seq_len - 1 - protected_window_size, seq_len counting that sampled token; so of the cached entries
// only the newest window - 1 are protected (31 with the run scripts' window of 32).
//
// Blocks (schedule_evictions steps 1-3 and the count_block_evictions kernel in
// csrc/kvcompress_eviction_kernels.cu): per head the evictable entries are sorted by metric, lowest
// first, and cut into blocks; with `hanging` = the entries in the head's last, partly filled cache
// block, evicting k blocks removes the head's lowest (k - 1) x block_tokens + hanging entries, so
// block c's metric is that of entry c x block_tokens + hanging - 1 in the order, and a block reaching
// a protected entry is not evictable. The blocks to evict are the number of blocks over the budget
// (scheduler.py _schedule_seq_evictions, max_cache_tokens mode, which run_longbench.py uses; the
// budget is rounded up to whole blocks first), the lowest-metric blocks go first.
//
// rank=sequence (the original): blocks compete across all layers and heads of the request. The
// engine replays one layer at a time, so every traced layer's block metrics are computed at the end
// of the prompt before any layer evicts (Policy::layer_statistic) and each layer evicts its own
// blocks among the sequence's lowest. Only the post-fill eviction can see those statistics: after it
// a layer keeps the block total it then had (decode eviction ranks within the layer against it), and
// prefill=chunk ranks within the layer. An untraced layer keeps the uniform budget, i.e. it counts
// as taking exactly the mean share; the traced layers share their own total (exactly the original
// when every layer is traced). rank=layer (kvsim's earlier variant): each layer evicts its blocks
// over its own budget, ranked across its heads only.
//
// Not modelled: the original's running metric during decode (aggregate_decode adds each decode
// query's squared attention; kvsim rescores with the window at each eviction point).
#include <tbb/parallel_for.h>
#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

// One KV head's evictable entries in eviction order and the metric of each of its evictable blocks.
struct HeadBlocks {
  std::vector<std::int64_t> order;   // indices into the resident vector, lowest metric first
  std::int64_t hanging = 0;          // entries in the head's last cache block (1..block_tokens)
  std::vector<double> block_metric;  // block c: metric of order[c x block_tokens + hanging - 1]
};

// The layer's blocks at an eviction point and how many of them are over its budget.
struct LayerBlocks {
  std::vector<HeadBlocks> heads;
  std::int64_t over_budget = 0;  // cache blocks minus the budget's blocks (may be negative)
};

// After the post-fill eviction under rank=sequence: the layer's block total, its budget from then on.
class KvCompressState final : public PolicyState {
 public:
  std::int64_t layer_blocks = -1;  // -1: not set (no sequence-wide eviction has run)
};

struct BlockRef {
  double metric;
  std::int32_t head;
  std::int32_t block;
};

class KvCompressPolicy final : public Policy {
 public:
  KvCompressPolicy(std::string spec, Budget budget, std::int64_t block_tokens, std::int64_t window, int kernel,
                   bool rank_sequence, EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        block_tokens_(block_tokens),
        window_(window),
        kernel_(kernel),
        rank_sequence_(rank_sequence),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_, points_, positions);
  }

  bool uses_layer_statistics(bool /*every_layer_traced*/) const override { return sequence_wide(); }

  // {blocks over the layer's budget, then every evictable block's metric in (head, block) order}.
  LayerStatistic layer_statistic(const EvictionContext& ctx, const LayerResidency& prompt) const override {
    const LayerBlocks layer = layer_blocks(ctx, prompt, uniform_budget_blocks(ctx, prompt.size()));
    LayerStatistic out{static_cast<double>(layer.over_budget)};
    for (const HeadBlocks& head : layer.heads)
      out.insert(out.end(), head.block_metric.begin(), head.block_metric.end());
    return out;
  }

  std::unique_ptr<PolicyState> make_state() const override {
    return sequence_wide() ? std::make_unique<KvCompressState>() : nullptr;
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    if (ctx.trace == nullptr) {
      // Only the count is accounted: the uniform budget per head (file header).
      keep_newest(residency, budget_tokens(ctx));
      return;
    }
    auto* state = dynamic_cast<KvCompressState*>(ctx.state);
    const bool ranked_across_layers = sequence_wide() && ctx.pass.prefill && !ctx.layer_statistics.empty() &&
                                      !ctx.layer_statistics[static_cast<std::size_t>(ctx.layer)].empty();
    std::int64_t budget_blocks = uniform_budget_blocks(ctx, residency.size());
    if (state != nullptr && state->layer_blocks >= 0) budget_blocks = state->layer_blocks;
    const LayerBlocks layer = layer_blocks(ctx, residency, budget_blocks);

    std::vector<BlockRef> blocks;
    for (std::size_t h = 0; h < layer.heads.size(); ++h) {
      const auto& metric = layer.heads[h].block_metric;
      for (std::size_t c = 0; c < metric.size(); ++c)
        blocks.push_back({metric[c], static_cast<std::int32_t>(h), static_cast<std::int32_t>(c)});
    }
    std::int64_t evict_blocks = ranked_across_layers ? sequence_share(ctx, static_cast<std::int64_t>(blocks.size()))
                                                     : std::max<std::int64_t>(0, layer.over_budget);
    evict_blocks = std::min<std::int64_t>(evict_blocks, static_cast<std::int64_t>(blocks.size()));
    // Lowest metric first; ties: lower head, then a head's earlier block, so each head loses a
    // prefix of its blocks (its block metrics do not decrease) and the choice depends on metrics alone.
    std::nth_element(blocks.begin(), blocks.begin() + evict_blocks, blocks.end(),
                     [](const BlockRef& a, const BlockRef& b) {
                       if (a.metric != b.metric) return a.metric < b.metric;
                       return a.head != b.head ? a.head < b.head : a.block < b.block;
                     });
    std::vector<std::int64_t> evicted(residency.size(), 0);
    for (std::int64_t i = 0; i < evict_blocks; ++i)
      ++evicted[static_cast<std::size_t>(blocks[static_cast<std::size_t>(i)].head)];

    std::int64_t kept_blocks = 0;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      auto& resident = residency[h];
      const HeadBlocks& head = layer.heads[h];
      if (evicted[h] > 0) {
        // The count_block_evictions rule: k blocks take the lowest (k - 1) x block_tokens + hanging.
        const std::int64_t drop_count = (evicted[h] - 1) * block_tokens_ + head.hanging;
        std::vector<bool> drop(resident.size(), false);
        for (std::int64_t k = 0; k < drop_count; ++k)
          drop[static_cast<std::size_t>(head.order[static_cast<std::size_t>(k)])] = true;
        std::vector<std::int32_t> kept;
        kept.reserve(resident.size() - static_cast<std::size_t>(drop_count));
        for (std::size_t i = 0; i < resident.size(); ++i) {
          if (!drop[i]) kept.push_back(resident[i]);
        }
        resident = std::move(kept);
      }
      kept_blocks += ceil_blocks(static_cast<std::int64_t>(resident.size()));
    }
    if (ranked_across_layers && state != nullptr) state->layer_blocks = kept_blocks;
  }

 private:
  // Ranking across the sequence's layers needs every layer's metrics at the end of the prompt: only
  // the post-fill eviction has them (file header).
  bool sequence_wide() const { return rank_sequence_ && points_.prefill == PrefillEviction::kPostFill; }

  std::int64_t ceil_blocks(std::int64_t entries) const { return (entries + block_tokens_ - 1) / block_tokens_; }

  // The budget per head in entries, rounded up to whole blocks as _schedule_seq_evictions rounds
  // max_cache_tokens.
  std::int64_t budget_tokens(const EvictionContext& ctx) const {
    return ceil_blocks(budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_)) * block_tokens_;
  }
  std::int64_t uniform_budget_blocks(const EvictionContext& ctx, std::size_t heads) const {
    return static_cast<std::int64_t>(heads) * budget_tokens(ctx) / block_tokens_;
  }

  // How many of the sequence's lowest-metric blocks are this layer's: the blocks over budget summed
  // over the traced layers, ranked by (metric, layer, block in the layer's (head, block) order).
  std::int64_t sequence_share(const EvictionContext& ctx, std::int64_t own_blocks) const {
    const LayerStatistic& own = ctx.layer_statistics[static_cast<std::size_t>(ctx.layer)];
    if (static_cast<std::int64_t>(own.size()) - 1 != own_blocks) {
      throw std::logic_error(spec() + ": layer " + std::to_string(ctx.layer) +
                             " blocks differ from its end-of-prompt statistics");
    }
    struct Ranked {
      double metric;
      std::int32_t layer;
      std::int32_t index;
    };
    std::vector<Ranked> all;
    std::int64_t over = 0;
    for (std::size_t l = 0; l < ctx.layer_statistics.size(); ++l) {
      const LayerStatistic& s = ctx.layer_statistics[l];
      if (s.empty()) continue;  // untraced
      over += static_cast<std::int64_t>(s.front());
      for (std::size_t i = 1; i < s.size(); ++i)
        all.push_back({s[i], static_cast<std::int32_t>(l), static_cast<std::int32_t>(i)});
    }
    const std::int64_t picks = std::clamp<std::int64_t>(over, 0, static_cast<std::int64_t>(all.size()));
    std::nth_element(all.begin(), all.begin() + picks, all.end(), [](const Ranked& a, const Ranked& b) {
      if (a.metric != b.metric) return a.metric < b.metric;
      return a.layer != b.layer ? a.layer < b.layer : a.index < b.index;
    });
    std::int64_t share = 0;
    for (std::int64_t i = 0; i < picks; ++i) share += all[static_cast<std::size_t>(i)].layer == ctx.layer ? 1 : 0;
    return share;
  }

  LayerBlocks layer_blocks(const EvictionContext& ctx, const LayerResidency& residency,
                           std::int64_t budget_blocks) const {
    const std::int64_t window_begin = snapkv_window_begin(ctx, window_, points_.prefill);
    // Protected: positions above pass.end - window (the sampled token at pass.end counts; header).
    const std::int64_t protected_begin = ctx.pass.end - window_ + 1;
    LayerBlocks out;
    out.heads.resize(residency.size());
    out.over_budget = -budget_blocks;
    for (const auto& r : residency) out.over_budget += ceil_blocks(static_cast<std::int64_t>(r.size()));
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      const auto& resident = residency[h];
      const auto size = static_cast<std::int64_t>(resident.size());
      HeadBlocks& head = out.heads[h];
      if (size == 0) return;
      head.hanging = size - (ceil_blocks(size) - 1) * block_tokens_;
      const std::int64_t evictable = size - snapkv_window_count(resident, protected_begin);
      if (evictable < head.hanging) return;
      const std::vector<double> metric =
          head_metric(ctx, static_cast<int>(h), resident, snapkv_window_count(resident, window_begin));
      head.order.resize(static_cast<std::size_t>(evictable));
      std::iota(head.order.begin(), head.order.end(), std::int64_t{0});
      // Lowest metric first; ties: the older entry first.
      std::stable_sort(head.order.begin(), head.order.end(), [&](std::int64_t a, std::int64_t b) {
        return metric[static_cast<std::size_t>(a)] < metric[static_cast<std::size_t>(b)];
      });
      for (std::int64_t last = head.hanging - 1; last < evictable; last += block_tokens_)
        head.block_metric.push_back(metric[static_cast<std::size_t>(head.order[static_cast<std::size_t>(last)])]);
    });
    return out;
  }

  // The metric of every resident entry of KV head `kv_head` (file header): per query head the squared
  // window attention, max-pooled along all resident entries, summed over the group.
  std::vector<double> head_metric(const EvictionContext& ctx, int kv_head, std::span<const std::int32_t> resident,
                                  std::int64_t window) const {
    std::vector<double> total(resident.size(), 0.0);
    if (window <= 0) return total;
    const std::vector<std::int64_t> rows = window_query_rows(ctx, *this, resident, window);
    for (const HeadMatrix* head : group_query_heads(ctx, kv_head)) {
      const WindowAttention attention = window_attention_with_squares(
          ctx.trace->keys[static_cast<std::size_t>(kv_head)], resident, window, {std::span(&head, 1), rows});
      const std::vector<double> pooled = max_pool(std::span<const double>(attention.squares), kernel_);
      for (std::size_t i = 0; i < total.size(); ++i) total[i] += pooled[i];
    }
    return total;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t block_tokens_;
  std::int64_t window_;
  int kernel_;
  bool rank_sequence_;
  EvictionPoints points_;
};

}  // namespace

void register_kvcompress(PolicyRegistry& registry) {
  registry.add(
      {"kvcompress",
       "KV-Compress: paged per-head blocks; the lowest-metric blocks (squared window attention, max-pooled, summed "
       "over the GQA group) are evicted across all layers and heads until the mean per-head count meets the budget, "
       "so heads and layers keep different counts. GQA: one cache per KV head (the authors' code sums the group)",
       "Rehg 2024, KV-Compress: Paged KV-Cache Compression with Variable Compression Rates per Attention Head "
       "(arXiv 2410.00161); IsaacRe/vllm-kvcompress @5e2a639 vllm/kvcompress/metrics.py (schedule_evictions), "
       "scheduler.py, csrc/kvcompress_eviction_kernels.cu (count_block_evictions), run scripts' window 32; "
       "rescoring replaces the reference's running decode metric",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the "
         "window; rounded up to whole blocks as the reference's max_cache_tokens"},
        {"block_tokens", "16",
         "entries per cache block; evicting k blocks of a head removes its lowest "
         "(k-1) x block_tokens + hanging entries"},
        {"window", "32",
         "metric window (its queries score) and protected window; the newest window-1 cached entries are kept, as "
         "the reference counts the token just sampled"},
        {"kernel", "7", "max-pooling kernel of each query head's metric along positions (odd; 1: no pooling)"},
        {"rank", "sequence",
         "sequence (the reference: blocks ranked across all layers and heads at the post-fill eviction) | layer "
         "(each layer ranks its own heads' blocks against its own budget)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t block_tokens = args.get_int("block_tokens");
         const std::int64_t window = args.get_int("window");
         const int kernel = read_pool_kernel(args, "kernel");
         const bool rank_sequence = args.get_choice("rank", {"sequence", "layer"}) == "sequence";
         const auto points = read_eviction_points(args);
         if (block_tokens < 1) args.fail("block_tokens", "must be an integer >= 1");
         if (window < 1) args.fail("window", "must be >= 1");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<KvCompressPolicy>(args.canonical(), budget, block_tokens, window, kernel,
                                                   rank_sequence, points);
       }});
}

}  // namespace kvsim

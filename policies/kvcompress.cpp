// kvcompress: KV-Compress (Rehg 2024, arXiv 2410.00161; IsaacRe/vllm-kvcompress
// vllm/kvcompress/metrics.py schedule_evictions, scheduler.py _schedule_seq_evictions). A paged
// cache whose blocks hold one KV head's entries, so heads can keep different counts. Each entry's
// metric is the squared attention it receives from the observation window ("L2-sum"), per query
// head max-pooled along positions with `kernel` (the reference's kv_metric_use_maxpool, kernel 7,
// flash_attn.py _collect_kv_prefill_metrics; pooled over the non-window entries, whose metric the
// reference's buffer mask leaves), then summed over the group's query heads (aggregate_prefill). Per head the evictable
// entries are sorted by metric and cut, lowest first, into eviction blocks of block_tokens; a block's metric is that of
// its last (highest) entry, and a block that would include a protected entry is never evicted. The layer then evicts
// its floor((entries - H x capacity) / block_tokens) lowest-metric blocks across heads, as the
// reference evicts floor(excess / block_size) blocks per sequence (the reference ranks across all
// layers of a sequence; kvsim evicts one layer at a time, so the budget holds per layer).
// Also unlike the reference (docs/policy-sources.md): its protected window (50) differs from its
// metric window (32); kvsim uses one window for both.
#include <tbb/parallel_for.h>
#include <algorithm>
#include <numeric>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

struct EvictionBlock {
  double metric;
  std::int32_t head;
  std::int32_t index;  // among the head's eviction blocks, lowest metric first
};

class KvCompressPolicy final : public Policy {
 public:
  KvCompressPolicy(std::string spec, Budget budget, std::int64_t block_tokens, std::int64_t window, int kernel,
                   EvictionPoints points)
      : spec_(std::move(spec)),
        budget_(budget),
        block_tokens_(block_tokens),
        window_(window),
        kernel_(kernel),
        points_(points) {}

  std::string spec() const override { return spec_; }
  EvictionPoints eviction_points() const override { return points_; }
  void add_required_queries(const RequestInfo& request, std::span<const Pass> prefill,
                            std::vector<std::int64_t>* positions) const override {
    snapkv_required_queries(request, prefill, window_, points_, positions);
  }

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = budget_.capacity(ctx.pass, ctx.prefill, points_.prefill, window_);
    if (ctx.trace == nullptr) {
      // One representative head stands for all: the uniform count gives the layer total H x capacity,
      // within block_tokens of what a traced layer keeps (only the total is accounted).
      keep_newest(residency, capacity);
      return;
    }
    std::int64_t total = 0;
    for (const auto& r : residency) total += static_cast<std::int64_t>(r.size());
    const std::int64_t excess = total - static_cast<std::int64_t>(residency.size()) * capacity;
    if (excess < block_tokens_) return;

    const std::int64_t window_begin = snapkv_window_begin(ctx, window_, points_.prefill);
    // Per head: evictable indices (into the resident vector) in eviction order, and their metrics.
    std::vector<std::vector<std::int64_t>> order(residency.size());
    std::vector<std::vector<double>> metrics(residency.size());
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      const auto& resident = residency[h];
      const std::int64_t window = snapkv_window_count(resident, window_begin);
      const auto prefix = static_cast<std::int64_t>(resident.size()) - window;
      if (prefix <= 0) return;
      metrics[h] = metric(ctx, static_cast<int>(h), resident, window);
      order[h].resize(static_cast<std::size_t>(prefix));
      std::iota(order[h].begin(), order[h].end(), std::int64_t{0});
      // Lowest metric first; ties: the older entry first.
      std::stable_sort(order[h].begin(), order[h].end(), [&](std::int64_t a, std::int64_t b) {
        return metrics[h][static_cast<std::size_t>(a)] < metrics[h][static_cast<std::size_t>(b)];
      });
    });

    std::vector<EvictionBlock> blocks;
    for (std::size_t h = 0; h < residency.size(); ++h) {
      // Only whole blocks of evictable entries: the remainder block would hold a protected one.
      const auto full = static_cast<std::int64_t>(order[h].size()) / block_tokens_;
      for (std::int64_t b = 0; b < full; ++b) {
        const std::int64_t last = order[h][static_cast<std::size_t>((b + 1) * block_tokens_ - 1)];
        blocks.push_back(
            {metrics[h][static_cast<std::size_t>(last)], static_cast<std::int32_t>(h), static_cast<std::int32_t>(b)});
      }
    }
    // Lowest metric first; ties: lower head, then a head's earlier block, so each head loses a prefix
    // of its eviction order and the result is a function of the metrics alone.
    const auto before = [](const EvictionBlock& a, const EvictionBlock& b) {
      if (a.metric != b.metric) return a.metric < b.metric;
      return a.head != b.head ? a.head < b.head : a.index < b.index;
    };
    const auto evict_blocks = std::min<std::int64_t>(excess / block_tokens_, static_cast<std::int64_t>(blocks.size()));
    std::nth_element(blocks.begin(), blocks.begin() + evict_blocks, blocks.end(), before);
    std::vector<std::int64_t> evicted(residency.size(), 0);
    for (std::int64_t i = 0; i < evict_blocks; ++i)
      ++evicted[static_cast<std::size_t>(blocks[static_cast<std::size_t>(i)].head)];

    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      if (evicted[h] == 0) return;
      auto& resident = residency[h];
      std::vector<bool> drop(resident.size(), false);
      for (std::int64_t k = 0; k < evicted[h] * block_tokens_; ++k)
        drop[static_cast<std::size_t>(order[h][static_cast<std::size_t>(k)])] = true;
      std::vector<std::int32_t> kept;
      kept.reserve(resident.size() - static_cast<std::size_t>(evicted[h] * block_tokens_));
      for (std::size_t i = 0; i < resident.size(); ++i) {
        if (!drop[i]) kept.push_back(resident[i]);
      }
      resident = std::move(kept);
    });
  }

 private:
  // The metric of KV head `kv_head`'s non-window entries (file header).
  std::vector<double> metric(const EvictionContext& ctx, int kv_head, std::span<const std::int32_t> resident,
                             std::int64_t window) const {
    const std::vector<std::int64_t> rows = window_query_rows(ctx, *this, resident, window);
    const auto prefix = resident.size() - static_cast<std::size_t>(window);
    std::vector<double> total(prefix, 0.0);
    for (const HeadMatrix* head : group_query_heads(ctx, kv_head)) {
      const WindowAttention attention = window_attention_with_squares(
          ctx.trace->keys[static_cast<std::size_t>(kv_head)], resident, window, {std::span(&head, 1), rows});
      const std::span<const double> squares(attention.squares.data(), prefix);
      const std::vector<double> pooled = max_pool(squares, kernel_);
      for (std::size_t i = 0; i < prefix; ++i) total[i] += pooled[i];
    }
    return total;
  }

  std::string spec_;
  Budget budget_;
  std::int64_t block_tokens_;
  std::int64_t window_;
  int kernel_;
  EvictionPoints points_;
};

}  // namespace

void register_kvcompress(PolicyRegistry& registry) {
  registry.add(
      {"kvcompress",
       "KV-Compress: paged per-head blocks; the layer evicts its lowest-metric blocks (squared window attention) "
       "across heads until its mean per-head count meets the budget, so heads keep different counts",
       "Rehg 2024, KV-Compress: Paged KV-Cache Compression with Variable Compression Rates per Attention Head "
       "(arXiv 2410.00161); IsaacRe/vllm-kvcompress vllm/kvcompress/metrics.py (schedule_evictions) and "
       "scheduler.py; kvsim ranks per layer (the reference across a sequence's layers) and rescoring replaces the "
       "reference's running decode metric",
       {{"budget", "0.2",
         "per-head mean: fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window"},
        {"block_tokens", "16", "entries per cache block; each head evicts whole blocks of its lowest-metric entries"},
        {"window", "32", "observation window (the reference's protected window and metric window): always kept"},
        {"kernel", "7", "max-pooling kernel of each query head's metric along positions (odd; 1: no pooling)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const std::int64_t block_tokens = args.get_int("block_tokens");
         const std::int64_t window = args.get_int("window");
         const int kernel = read_pool_kernel(args, "kernel");
         const auto points = read_eviction_points(args);
         if (block_tokens < 1) args.fail("block_tokens", "must be an integer >= 1");
         if (window < 1) args.fail("window", "must be >= 1");
         if (!budget.is_fraction && budget.tokens <= window) {
           args.fail("budget", "a token budget must exceed the window (" + std::to_string(window) + ")");
         }
         return std::make_unique<KvCompressPolicy>(args.canonical(), budget, block_tokens, window, kernel, points);
       }});
}

}  // namespace kvsim

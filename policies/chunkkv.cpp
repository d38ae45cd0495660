// chunkkv: ChunkKV (Liu et al. 2025, arXiv 2502.00299; NVIDIA/kvpress
// kvpress/presses/chunkkv_press.py over SnapKVPress). Entries are scored by SnapKV's window
// attention, summed over the layer's KV heads, and kept or evicted in whole chunks of
// `chunk_length` consecutive cache entries, the same chunks in every head, so that the kept
// context stays semantically contiguous.
//
// Budget rounding (kvpress keeps max(1, int(chunks x (1 - r))) position-aligned chunks of the whole
// cache, the partial one included, so its kept count depends on which chunks win): with S
// resident entries, w of them in the window and capacity C (DESIGN.md §4),
//  - the S - w entries before the window are cut, from the oldest, into m = floor((S - w)/L)
//    whole chunks plus rho = (S - w) mod L entries just before the window;
//  - the window and those rho entries are always kept (they form the chunk that holds the window's
//    first entries; in kvpress it wins by the window's maximum scores);
//  - the best floor((C - w - rho)/L) whole chunks (at least 0) are kept: the budget rounds DOWN to
//    whole chunks, so a head keeps w + rho + L x floor((C - w - rho)/L) <= C entries (more than C
//    only when w + rho > C, by less than L).
// The count depends only on S, w, C and L, so an untraced layer keeps the same number. With no
// whole chunk (m = 0) kvpress falls back to its scorer: SnapKV's per-head selection at capacity C.
#include <tbb/parallel_for.h>
#include <algorithm>

#include "policies/registry.h"
#include "policies/schedule.h"
#include "policies/select.h"
#include "policies/snapkv_select.h"

namespace kvsim {

namespace {

class ChunkKvPolicy final : public SnapKvScoredPolicy {
 public:
  ChunkKvPolicy(std::string spec, Budget budget, SnapKvScoring scoring, std::int64_t chunk_length,
                EvictionPoints points)
      : SnapKvScoredPolicy(std::move(spec), budget, scoring, points), chunk_length_(chunk_length) {}

  void evict(const EvictionContext& ctx, LayerResidency& residency) const override {
    const std::int64_t capacity = uniform_capacity(ctx);
    // Every head holds the same positions: chunks are chosen for the whole layer.
    const std::vector<std::int32_t>& resident = residency.front();
    const auto size = static_cast<std::int64_t>(resident.size());
    if (size <= capacity) return;
    const std::int64_t window =
        snapkv_window_count(resident, snapkv_window_begin(ctx, scoring_.window, points_.prefill));
    const std::int64_t chunks = (size - window) / chunk_length_;
    if (chunks == 0) {
      snapkv_evict_to_capacity(ctx, *this, residency, capacity, scoring_, points_.prefill);
      return;
    }
    const std::int64_t tail = size - chunks * chunk_length_;  // leftover + window, always kept
    const std::int64_t keep_chunks = std::clamp<std::int64_t>((capacity - tail) / chunk_length_, 0, chunks);
    std::vector<std::int32_t> selected;  // chunk indices, ascending
    if (ctx.trace == nullptr) {
      // Untraced layer: only the count matters.
      for (std::int64_t c = chunks - keep_chunks; c < chunks; ++c) selected.push_back(static_cast<std::int32_t>(c));
    } else {
      selected = top_k_indices(chunk_scores(ctx, residency, window, chunks), keep_chunks);
    }
    std::vector<std::int32_t> kept;
    kept.reserve(static_cast<std::size_t>(keep_chunks * chunk_length_ + tail));
    for (std::int32_t c : selected) {
      const auto begin = resident.begin() + c * chunk_length_;
      kept.insert(kept.end(), begin, begin + chunk_length_);
    }
    kept.insert(kept.end(), resident.end() - tail, resident.end());
    for (auto& head : residency) head = kept;
  }

 private:
  // Mean over each whole chunk of the per-entry scores summed over KV heads (kvpress: sum over
  // heads, then mean over the chunk).
  std::vector<float> chunk_scores(const EvictionContext& ctx, const LayerResidency& residency, std::int64_t window,
                                  std::int64_t chunks) const {
    std::vector<std::vector<float>> per_head(residency.size());
    tbb::parallel_for(std::size_t{0}, residency.size(), [&](std::size_t h) {
      per_head[h] = snapkv_head_scores(ctx, *this, static_cast<int>(h), residency[h], window, scoring_);
    });
    std::vector<float> out(static_cast<std::size_t>(chunks));
    for (std::int64_t c = 0; c < chunks; ++c) {
      float chunk_sum = 0.0f;
      for (std::int64_t j = c * chunk_length_; j < (c + 1) * chunk_length_; ++j) {
        float entry = 0.0f;
        for (const auto& s : per_head) entry += s[static_cast<std::size_t>(j)];
        chunk_sum += entry;
      }
      out[static_cast<std::size_t>(c)] = chunk_sum / static_cast<float>(chunk_length_);
    }
    return out;
  }

  std::int64_t chunk_length_;
};

}  // namespace

void register_chunkkv(PolicyRegistry& registry) {
  registry.add(
      {"chunkkv",
       "ChunkKV: SnapKV scores summed over heads; keep the best whole chunks of consecutive entries, same in all heads",
       "Liu et al. 2025, ChunkKV: Semantic-Preserving KV Cache Compression for Efficient Long-Context LLM Inference "
       "(arXiv 2502.00299); NVIDIA/kvpress kvpress/presses/chunkkv_press.py",
       {{"budget", "0.2",
         "fraction (<1) of the prompt kept besides the window, or a token count (>=1) incl. the window; rounded down "
         "to whole chunks"},
        {"window", "64", "observation window of the SnapKV scorer: the most recent queries, always kept"},
        {"kernel", "5", "pooling kernel along positions (odd)"},
        {"pooling", "avg", "max|avg"},
        {"chunk_length", "20", "entries per chunk, the unit of eviction (>= 1)"},
        {"prefill", "post_fill", "post_fill (once after the prompt) | chunk (after every prefill chunk) | none"},
        {"decode", "none", "none|step|every:K|length:K (keeps the capacity reached at the end of prefill)"}},
       [](PolicyArgs& args) -> std::unique_ptr<Policy> {
         const Budget budget = Budget::read(args, "budget");
         const SnapKvScoring scoring = SnapKvScoring::read(args);
         const std::int64_t chunk_length = args.get_int("chunk_length");
         const auto points = read_eviction_points(args);
         if (chunk_length < 1) args.fail("chunk_length", "must be >= 1");
         scoring.check_budget(args, budget);
         return std::make_unique<ChunkKvPolicy>(args.canonical(), budget, scoring, chunk_length, points);
       }});
}

}  // namespace kvsim

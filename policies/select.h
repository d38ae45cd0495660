#pragma once
// Selection rules shared by score-based policies.
#include <cstdint>
#include <span>
#include <vector>

namespace kvsim {

// Indices of the `k` largest scores, returned in ascending index order. Ties are broken towards
// the lower index, so the kept set is a deterministic function of the scores (torch.topk leaves
// ties unspecified; DESIGN.md keeps sets comparable by fixing this rule).
std::vector<std::int32_t> top_k_indices(std::span<const float> scores, std::int64_t k);

// An entry of one head competing for a budget shared by a layer's heads (AdaKV, LAVa).
struct HeadCandidate {
  float score;
  std::int32_t head;
  std::int32_t index;  // into the head's resident vector
};

// Higher score first; ties go to the lower head, then the lower index, so a shared pick is a
// function of the scores alone.
inline bool ranks_before(const HeadCandidate& a, const HeadCandidate& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.head != b.head ? a.head < b.head : a.index < b.index;
}

// Keeps the newest `capacity` entries of one head's sorted positions, or of every head: how an
// untraced layer, where only the count matters, evicts.
void keep_newest(std::vector<std::int32_t>& resident, std::int64_t capacity);
void keep_newest(std::vector<std::vector<std::int32_t>>& residency, std::int64_t capacity);

// StreamingLLM's cache on one head's sorted positions: keeps the positions below `sinks` and the
// `window` newest entries, drops the rest (streaming, the streaming heads of head masks, KVzip-head).
void keep_sinks_and_window(std::vector<std::int32_t>& resident, std::int64_t sinks, std::int64_t window);

// Part `index` of `total` split as evenly as possible into `parts`: floor((i+1)T/P) - floor(iT/P).
// E.g. how many of a model's full heads fall in each layer when they are counted over all layers
// but chosen one layer at a time (head masks, KVzip-head).
std::int64_t even_share(std::int64_t total, int parts, int index);

// 1-D pooling along the cache order with stride 1 and padding kernel/2, as torch's
// avg_pool1d (zero padding, divided by kernel: count_include_pad) and max_pool1d (padding ignored).
// REQUIRES: kernel odd, >= 1 and at most kMaxPoolKernel (specs refuse larger ones).
constexpr std::int64_t kMaxPoolKernel = 1 << 20;
std::vector<float> avg_pool(std::span<const float> x, int kernel);
std::vector<float> max_pool(std::span<const float> x, int kernel);
std::vector<double> max_pool(std::span<const double> x, int kernel);

}  // namespace kvsim

#include "policies/kvzip_scores.h"

#include <tbb/blocked_range.h>
#include <tbb/collaborative_call_once.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <stdexcept>

namespace kvsim {

namespace {

// Reconstruction queries per GEMM: 64 x 32K logits (8 MiB) per task at a time. Blocks are fixed
// by row index, so each one's GEMM (and result) is the same whatever the thread count.
constexpr Eigen::Index kBlockRows = 64;

// For one KV head: max over the group's reconstruction queries of softmax_j(q·k_j/sqrt(d)) over the
// prompt keys. Kept as log-probabilities l_ij - logsumexp_i until the end: exp is monotonic, so
// the maximum commutes with it and only one exp per entry is spent on the result.
std::vector<float> head_scores(const HeadMatrix& keys, const std::vector<const HeadMatrix*>& group, Eigen::Index n) {
  const Eigen::Index d = keys.cols();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto prompt_keys = keys.topRows(n);
  const Eigen::Index per_head = group.front()->rows();
  const Eigen::Index total = per_head * static_cast<Eigen::Index>(group.size());
  const Eigen::Index blocks = (total + kBlockRows - 1) / kBlockRows;
  using Best = Eigen::ArrayXf;
  const Best lowest = Best::Constant(n, -std::numeric_limits<float>::infinity());
  const Best best = tbb::parallel_reduce(
      tbb::blocked_range<Eigen::Index>(0, blocks), lowest,
      [&](const tbb::blocked_range<Eigen::Index>& range, Best acc) {
        HeadMatrix q(kBlockRows, d);
        HeadMatrix logits(kBlockRows, n);
        for (Eigen::Index b = range.begin(); b != range.end(); ++b) {
          const Eigen::Index first = b * kBlockRows;
          const Eigen::Index rows = std::min(kBlockRows, total - first);
          for (Eigen::Index k = 0; k < rows; ++k) {
            const Eigen::Index i = first + k;
            q.row(k) = group[static_cast<std::size_t>(i / per_head)]->row(i % per_head) * scale;
          }
          logits.topRows(rows).noalias() = q.topRows(rows) * prompt_keys.transpose();
          for (Eigen::Index k = 0; k < rows; ++k) {
            const auto x = logits.row(k).array();
            const float max = x.maxCoeff();
            const float log_total = max + std::log((x - max).exp().sum());
            acc = acc.max(x.transpose() - log_total);
          }
        }
        return acc;
      },
      [](const Best& a, const Best& b) -> Best { return a.max(b); });
  const Best scores = best.exp();
  return std::vector<float>(scores.data(), scores.data() + n);
}

// 64-bit content hash (multiply-rotate over the raw bits): a cache key, not a security measure.
class ContentHash {
 public:
  void add(std::uint64_t word) {
    state_ = (state_ ^ (word * 0x9E3779B97F4A7C15ull));
    state_ = ((state_ << 27) | (state_ >> 37)) * 0xBF58476D1CE4E5B9ull;
  }
  void add(const float* data, std::size_t count) {
    std::size_t i = 0;
    for (; i + 2 <= count; i += 2) {
      std::uint64_t word = 0;
      std::memcpy(&word, data + i, sizeof word);
      add(word);
    }
    if (i < count) {
      std::uint32_t last = 0;
      std::memcpy(&last, data + i, sizeof last);
      add(last);
    }
  }
  std::uint64_t value() const { return state_ ^ (state_ >> 29); }

 private:
  std::uint64_t state_ = 0x243F6A8885A308D3ull;
};

std::uint64_t content_key(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens) {
  ContentHash hash;
  for (const std::int64_t v :
       {static_cast<std::int64_t>(trace.layer), prompt_tokens, static_cast<std::int64_t>(model.num_q_heads),
        static_cast<std::int64_t>(model.num_kv_heads), static_cast<std::int64_t>(model.head_dim)}) {
    hash.add(static_cast<std::uint64_t>(v));
  }
  for (const HeadMatrix& k : trace.keys) hash.add(k.data(), static_cast<std::size_t>(prompt_tokens * k.cols()));
  for (const HeadMatrix& q : trace.recon_queries) {
    hash.add(static_cast<std::uint64_t>(q.rows()));
    hash.add(q.data(), static_cast<std::size_t>(q.size()));
  }
  return hash.value();
}

struct CacheEntry {
  std::uint64_t key = 0;
  tbb::collaborative_once_flag once;
  std::shared_ptr<const KvzipScores> scores;
};

constexpr std::size_t kCacheEntries = 4;  // a run scores one layer at a time; tests interleave a few

}  // namespace

KvzipScores compute_kvzip_scores(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens) {
  const int group = model.group_size();
  if (trace.recon_queries.size() != static_cast<std::size_t>(model.num_q_heads) ||
      trace.keys.size() != static_cast<std::size_t>(model.num_kv_heads)) {
    throw std::logic_error("compute_kvzip_scores: trace layer " + std::to_string(trace.layer) +
                           " lacks recon_queries or keys for every head");
  }
  KvzipScores out;
  out.prompt_tokens = prompt_tokens;
  out.pair.resize(static_cast<std::size_t>(model.num_kv_heads));
  tbb::parallel_for(0, model.num_kv_heads, [&](int h) {
    std::vector<const HeadMatrix*> heads;
    for (int g = h * group; g < (h + 1) * group; ++g)
      heads.push_back(&trace.recon_queries[static_cast<std::size_t>(g)]);
    if (heads.front()->rows() == 0) {
      out.pair[static_cast<std::size_t>(h)].assign(static_cast<std::size_t>(prompt_tokens), 0.0f);
      return;
    }
    out.pair[static_cast<std::size_t>(h)] = head_scores(trace.keys[static_cast<std::size_t>(h)], heads, prompt_tokens);
  });
  return out;
}

std::shared_ptr<const KvzipScores> kvzip_scores(const LayerTrace& trace, const ModelShape& model,
                                                std::int64_t prompt_tokens) {
  static std::mutex mutex;
  static std::deque<std::shared_ptr<CacheEntry>> cache;  // most recent first
  const std::uint64_t key = content_key(trace, model, prompt_tokens);
  std::shared_ptr<CacheEntry> entry;
  {
    const std::lock_guard lock(mutex);
    const auto it = std::find_if(cache.begin(), cache.end(), [&](const auto& e) { return e->key == key; });
    if (it != cache.end()) {
      entry = *it;
      cache.erase(it);
    } else {
      entry = std::make_shared<CacheEntry>();
      entry->key = key;
    }
    cache.push_front(entry);
    if (cache.size() > kCacheEntries) cache.pop_back();
  }
  // Waiters help with the computation's parallel work instead of blocking a worker thread.
  tbb::collaborative_call_once(entry->once, [&] {
    entry->scores = std::make_shared<const KvzipScores>(compute_kvzip_scores(trace, model, prompt_tokens));
  });
  return entry->scores;
}

}  // namespace kvsim

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

// scoring=chunk for one KV head and one pass: the pass's queries of the group (rows of
// recon_queries whose own token lies in the pass), each softmaxed over [keys 0..sinks | the chunk |
// the pass's keys up to its own token]; the max over them of the chunk's share, written to
// out[c_b, c_e).
void chunk_scores(const LayerTrace& trace, const std::vector<const HeadMatrix*>& group, int h, const ReconPass& pass,
                  std::int64_t sinks, float* out) {
  const HeadMatrix& keys = trace.keys[static_cast<std::size_t>(h)];
  const Eigen::Index d = keys.cols();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto& rows = trace.recon_query_rows;
  const auto first = std::lower_bound(rows.begin(), rows.end(), pass.key_begin) - rows.begin();
  const auto last = std::lower_bound(rows.begin(), rows.end(), pass.key_end) - rows.begin();
  const Eigen::Index sink = std::min(sinks, pass.context_begin);
  const Eigen::Index chunk = pass.context_end - pass.context_begin;
  const Eigen::Index repeat = pass.key_end - pass.key_begin;
  // The softmax's keys in the original's order: sinks, chunk, the pass's own tokens.
  HeadMatrix k(sink + chunk + repeat, d);
  k.topRows(sink) = keys.topRows(sink);
  k.middleRows(sink, chunk) = keys.middleRows(pass.context_begin, chunk);
  k.bottomRows(repeat) = trace.recon_keys[static_cast<std::size_t>(h)].middleRows(pass.key_begin, repeat);
  Eigen::ArrayXf best = Eigen::ArrayXf::Constant(chunk, -std::numeric_limits<float>::infinity());
  const Eigen::Index count = last - first;
  HeadMatrix q(count, d);
  HeadMatrix logits(count, k.rows());
  for (const HeadMatrix* g : group) {
    q = g->middleRows(first, count) * scale;
    logits.noalias() = q * k.transpose();
    for (Eigen::Index i = 0; i < count; ++i) {
      // Causal among the pass's tokens: the query sees the pass's keys up to its own.
      const Eigen::Index seen = sink + chunk + (rows[static_cast<std::size_t>(first + i)] - pass.key_begin) + 1;
      const auto x = logits.row(i).head(seen).array();
      const float max = x.maxCoeff();
      const float log_total = max + std::log((x - max).exp().sum());
      best = best.max(x.segment(sink, chunk).transpose() - log_total);
    }
  }
  const Eigen::ArrayXf scores = best.exp();  // no query in the pass: exp(-inf) = 0
  std::copy(scores.data(), scores.data() + chunk, out + pass.context_begin);
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

std::uint64_t content_key(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens,
                          KvzipScoring scoring, std::int64_t sinks) {
  ContentHash hash;
  for (const std::int64_t v :
       {static_cast<std::int64_t>(trace.layer), prompt_tokens, static_cast<std::int64_t>(scoring), sinks,
        static_cast<std::int64_t>(model.num_q_heads), static_cast<std::int64_t>(model.num_kv_heads),
        static_cast<std::int64_t>(model.head_dim)}) {
    hash.add(static_cast<std::uint64_t>(v));
  }
  for (const HeadMatrix& k : trace.keys) hash.add(k.data(), static_cast<std::size_t>(prompt_tokens * k.cols()));
  for (const HeadMatrix& q : trace.recon_queries) {
    hash.add(static_cast<std::uint64_t>(q.rows()));
    hash.add(q.data(), static_cast<std::size_t>(q.size()));
  }
  if (scoring == KvzipScoring::kChunk) {
    for (const ReconPass& p : trace.recon_passes) {
      for (const std::int64_t v : {p.context_begin, p.context_end, p.key_begin, p.key_end})
        hash.add(static_cast<std::uint64_t>(v));
    }
    for (const std::int64_t r : trace.recon_query_rows) hash.add(static_cast<std::uint64_t>(r));
    for (const HeadMatrix& k : trace.recon_keys) hash.add(k.data(), static_cast<std::size_t>(k.size()));
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

KvzipScores compute_kvzip_scores(const LayerTrace& trace, const ModelShape& model, std::int64_t prompt_tokens,
                                 KvzipScoring scoring, std::int64_t sinks) {
  const int group = model.group_size();
  if (trace.recon_queries.size() != static_cast<std::size_t>(model.num_q_heads) ||
      trace.keys.size() != static_cast<std::size_t>(model.num_kv_heads) ||
      (scoring == KvzipScoring::kChunk &&
       (trace.recon_passes.empty() || trace.recon_keys.size() != static_cast<std::size_t>(model.num_kv_heads)))) {
    throw std::logic_error("compute_kvzip_scores: trace layer " + std::to_string(trace.layer) +
                           " lacks recon_queries, recon passes or keys for every head");
  }
  KvzipScores out;
  out.prompt_tokens = prompt_tokens;
  out.pair.resize(static_cast<std::size_t>(model.num_kv_heads));
  const auto group_of = [&](int h) {
    std::vector<const HeadMatrix*> heads;
    for (int g = h * group; g < (h + 1) * group; ++g)
      heads.push_back(&trace.recon_queries[static_cast<std::size_t>(g)]);
    return heads;
  };
  if (scoring == KvzipScoring::kChunk) {
    for (auto& p : out.pair) p.assign(static_cast<std::size_t>(prompt_tokens), 0.0f);
    const auto passes = static_cast<int>(trace.recon_passes.size());
    // Each (head, pass) writes its own chunk of its head's scores.
    tbb::parallel_for(0, model.num_kv_heads * passes, [&](int job) {
      const int h = job / passes;
      const ReconPass& pass = trace.recon_passes[static_cast<std::size_t>(job % passes)];
      if (pass.context_end > prompt_tokens) return;  // the reader keeps passes within the prompt
      chunk_scores(trace, group_of(h), h, pass, sinks, out.pair[static_cast<std::size_t>(h)].data());
    });
    return out;
  }
  tbb::parallel_for(0, model.num_kv_heads, [&](int h) {
    const std::vector<const HeadMatrix*> heads = group_of(h);
    if (heads.front()->rows() == 0) {
      out.pair[static_cast<std::size_t>(h)].assign(static_cast<std::size_t>(prompt_tokens), 0.0f);
      return;
    }
    out.pair[static_cast<std::size_t>(h)] = head_scores(trace.keys[static_cast<std::size_t>(h)], heads, prompt_tokens);
  });
  return out;
}

std::shared_ptr<const KvzipScores> kvzip_scores(const LayerTrace& trace, const ModelShape& model,
                                                std::int64_t prompt_tokens, KvzipScoring scoring, std::int64_t sinks) {
  static std::mutex mutex;
  static std::deque<std::shared_ptr<CacheEntry>> cache;  // most recent first
  const std::uint64_t key = content_key(trace, model, prompt_tokens, scoring, sinks);
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
    entry->scores =
        std::make_shared<const KvzipScores>(compute_kvzip_scores(trace, model, prompt_tokens, scoring, sinks));
  });
  return entry->scores;
}

}  // namespace kvsim

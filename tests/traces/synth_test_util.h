#pragma once
// Attention statistics computed from a trace's own post-RoPE Q and K, for the synthesiser tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "traces/trace.h"

namespace kvsim::test {

// Softmax over the causal keys [0, t] of query head g at stored row `row`.
inline std::vector<double> causal_attention(const LayerTrace& trace, int g, std::int64_t row) {
  const int group = static_cast<int>(trace.queries.size() / trace.keys.size());
  const HeadMatrix& keys = trace.keys[g / group];
  const std::int64_t t = trace.query_positions[row];
  const auto q = trace.queries[g].row(row).cast<double>();
  const double scale = 1.0 / std::sqrt(static_cast<double>(keys.cols()));
  std::vector<double> p(t + 1);
  double top = -1e300;
  for (std::int64_t s = 0; s <= t; ++s) {
    p[s] = keys.row(s).cast<double>().dot(q) * scale;
    top = std::max(top, p[s]);
  }
  double sum = 0.0;
  for (double& x : p) sum += (x = std::exp(x - top));
  for (double& x : p) x /= sum;
  return p;
}

struct AttentionStats {
  double sink = 0.0;     // mass on the first 4 tokens
  double needle = 0.0;   // mass on the planted needle spans
  double local = 0.0;    // mass on the last 256 positions (t-255..t)
  double top2 = 0.0;     // mass on the top 2% of keys
  double entropy = 0.0;  // entropy / ln(t+1)
};

inline AttentionStats attention_stats(const std::vector<double>& p, const std::vector<NeedleSpan>& needles) {
  AttentionStats a;
  const auto n = static_cast<std::int64_t>(p.size());
  for (std::int64_t s = 0; s < std::min<std::int64_t>(4, n); ++s) a.sink += p[s];
  for (const auto& span : needles) {
    for (std::int64_t s = span.begin; s < std::min(span.end, n); ++s) a.needle += p[s];
  }
  for (std::int64_t s = std::max<std::int64_t>(0, n - 256); s < n; ++s) a.local += p[s];
  std::vector<double> sorted = p;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const auto top = static_cast<std::int64_t>(std::ceil(0.02 * static_cast<double>(n)));
  for (std::int64_t i = 0; i < top; ++i) a.top2 += sorted[i];
  for (double x : p) {
    if (x > 0) a.entropy -= x * std::log(x);
  }
  a.entropy /= std::log(static_cast<double>(n));
  return a;
}

// Mean statistics of query head g over the stored rows at positions >= first_position.
inline AttentionStats mean_stats(const LayerTrace& trace, int g, std::int64_t first_position,
                                 const std::vector<NeedleSpan>& needles) {
  AttentionStats mean;
  int count = 0;
  for (std::size_t row = 0; row < trace.query_positions.size(); ++row) {
    if (trace.query_positions[row] < first_position) continue;
    const AttentionStats a = attention_stats(causal_attention(trace, g, static_cast<std::int64_t>(row)), needles);
    mean.sink += a.sink;
    mean.needle += a.needle;
    mean.local += a.local;
    mean.top2 += a.top2;
    mean.entropy += a.entropy;
    ++count;
  }
  for (double* x : {&mean.sink, &mean.needle, &mean.local, &mean.top2, &mean.entropy}) *x /= std::max(count, 1);
  return mean;
}

}  // namespace kvsim::test

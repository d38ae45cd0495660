#include "policies/h2o_attention.h"

#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace kvsim {

void add_pass_attention(const HeadMatrix& keys, std::span<const std::int32_t> visible, std::int64_t cached,
                        std::int64_t pass_begin, const PassQueries& queries, std::span<double> score) {
  const auto v = static_cast<Eigen::Index>(visible.size());
  const Eigen::Index d = keys.cols();
  const auto group = static_cast<Eigen::Index>(queries.heads.size());
  const auto count = static_cast<Eigen::Index>(queries.positions.size());
  if (count == 0 || v == 0) return;

  HeadMatrix k(v, d);
  for (Eigen::Index j = 0; j < v; ++j) k.row(j) = keys.row(visible[static_cast<std::size_t>(j)]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const double inv_group = 1.0 / static_cast<double>(group);
  auto visible_to = [&](Eigen::Index i) {
    return static_cast<Eigen::Index>(cached + (queries.positions[static_cast<std::size_t>(i)] - pass_begin) + 1);
  };

  // Blocks of queries bound the logits' memory (block x visible) and skip most of the causal
  // triangle's masked half in long prefill passes. Blocks run in parallel a wave at a time; each
  // keeps its own sums, added to `score` in block order, so the result is the serial one to the bit
  // at any thread count.
  constexpr Eigen::Index kBlock = 64, kWave = 8;
  // Per thread, sized once for the widest block (a fresh multi-MiB allocation per block costs its
  // page faults, which here cost as much as the GEMM), and no taller than the call's queries need
  // (a decode step has one).
  struct Scratch {
    HeadMatrix q;
    HeadMatrix logits;
  };
  const Eigen::Index max_rows = group * std::min(kBlock, count), max_cols = visible_to(count - 1);
  tbb::enumerable_thread_specific<Scratch> scratch;
  const Eigen::Index blocks = (count + kBlock - 1) / kBlock;
  std::vector<Eigen::ArrayXf> sums(static_cast<std::size_t>(std::min(kWave, blocks)));
  for (Eigen::Index w0 = 0; w0 < blocks; w0 += kWave) {
    const Eigen::Index wn = std::min(kWave, blocks - w0);
    tbb::parallel_for(Eigen::Index{0}, wn, [&](Eigen::Index w) {
      const Eigen::Index b0 = (w0 + w) * kBlock;
      const Eigen::Index bn = std::min(kBlock, count - b0);
      const Eigen::Index cols = visible_to(b0 + bn - 1);
      Scratch& s = scratch.local();
      if (s.logits.size() == 0) {
        s.q.resize(max_rows, d);
        s.logits.resize(max_rows, max_cols);
      }
      for (Eigen::Index g = 0; g < group; ++g) {
        for (Eigen::Index i = 0; i < bn; ++i) {
          s.q.row(g * bn + i) =
              queries.heads[static_cast<std::size_t>(g)]->row(queries.rows[static_cast<std::size_t>(b0 + i)]);
        }
      }
      auto logits = s.logits.topLeftCorner(group * bn, cols);
      logits.noalias() = (s.q.topRows(group * bn) * scale) * k.topRows(cols).transpose();
      Eigen::ArrayXf& block_sum = sums[static_cast<std::size_t>(w)];
      block_sum.setZero(cols);
      for (Eigen::Index row = 0; row < group * bn; ++row) {
        const Eigen::Index seen = visible_to(b0 + row % bn);
        auto x = logits.row(row).head(seen).array();
        const float max = x.maxCoeff();
        x = (x - max).exp();
        const float inv_total = 1.0f / x.sum();
        block_sum.head(seen) += x.transpose() * inv_total;
      }
    });
    for (Eigen::Index w = 0; w < wn; ++w) {
      const Eigen::ArrayXf& block_sum = sums[static_cast<std::size_t>(w)];
      for (Eigen::Index j = 0; j < block_sum.size(); ++j) {
        score[static_cast<std::size_t>(j)] += static_cast<double>(block_sum[j]) * inv_group;
      }
    }
  }
}

}  // namespace kvsim

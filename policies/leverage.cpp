#include "policies/leverage.h"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "policies/select.h"
#include "util/rng.h"

namespace kvsim {

ProtectedEnds ProtectedEnds::clipped(std::int64_t size) const {
  ProtectedEnds out;
  out.sinks = std::clamp<std::int64_t>(sinks, 0, size);
  out.recent = std::clamp<std::int64_t>(recent, 0, size - out.sinks);
  return out;
}

std::vector<std::int32_t> keep_ends_and_top(std::span<const std::int32_t> resident,
                                            std::span<const float> middle_scores, ProtectedEnds ends,
                                            std::int64_t capacity) {
  const auto size = static_cast<std::int64_t>(resident.size());
  if (capacity >= size) return {resident.begin(), resident.end()};
  if (capacity <= ends.total()) {
    // Not even the protected entries fit: keep the most recent ones, then the oldest sinks.
    const std::int64_t recent = std::min(capacity, ends.recent);
    std::vector<std::int32_t> kept(resident.begin(), resident.begin() + (capacity - recent));
    kept.insert(kept.end(), resident.end() - recent, resident.end());
    return kept;
  }
  std::vector<std::int32_t> kept(resident.begin(), resident.begin() + ends.sinks);
  for (std::int32_t index : top_k_indices(middle_scores, capacity - ends.total())) {
    kept.push_back(resident[static_cast<std::size_t>(ends.sinks + index)]);
  }
  kept.insert(kept.end(), resident.end() - ends.recent, resident.end());
  return kept;
}

Eigen::VectorXd centered_leverage(Eigen::MatrixXd x) {
  const Eigen::Index n = x.rows();
  if (n == 0) return Eigen::VectorXd();
  x.rowwise() -= x.colwise().mean();
  // d x d Gram matrix: cheap next to the S x d data, and its eigenbasis gives the pseudo-inverse.
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(x.cols(), x.cols());
  gram.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());  // the solver reads the lower half only
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(gram);
  const Eigen::VectorXd& lambda = eig.eigenvalues();
  const double largest = lambda.maxCoeff();
  if (!(largest > 0.0)) return Eigen::VectorXd::Zero(n);
  std::vector<Eigen::Index> kept;
  for (Eigen::Index i = 0; i < lambda.size(); ++i) {
    if (lambda[i] > 1e-10 * largest) kept.push_back(i);
  }
  Eigen::MatrixXd whiten(x.cols(), static_cast<Eigen::Index>(kept.size()));
  for (std::size_t j = 0; j < kept.size(); ++j) {
    whiten.col(static_cast<Eigen::Index>(j)) = eig.eigenvectors().col(kept[j]) / std::sqrt(lambda[kept[j]]);
  }
  // lev = squared row norms of x * whiten, formed in cache-sized row blocks: one tall GEMM with a
  // 32K x 128 output runs several times slower than the same work done block by block.
  Eigen::VectorXd lev(n);
  Eigen::MatrixXd block;
  for (Eigen::Index begin = 0; begin < n; begin += 256) {
    const Eigen::Index len = std::min<Eigen::Index>(256, n - begin);
    block.noalias() = x.middleRows(begin, len) * whiten;
    lev.segment(begin, len) = block.rowwise().squaredNorm();
  }
  return lev;
}

namespace {

// torch.linalg.cholesky_ex(G + jitter I), retried with max(1e-8, 10 jitter) (1e-2 after a zero
// jitter) up to `max_tries` times, as LeverageScorePress.chol_with_jitter.
Eigen::LLT<Eigen::MatrixXd> cholesky_with_jitter(const Eigen::MatrixXd& gram, double jitter, int max_tries) {
  const Eigen::MatrixXd identity = Eigen::MatrixXd::Identity(gram.rows(), gram.cols());
  for (int attempt = 0; attempt < max_tries; ++attempt) {
    Eigen::LLT<Eigen::MatrixXd> llt(gram + jitter * identity);
    if (llt.info() == Eigen::Success) return llt;
    jitter = std::max(1e-8, jitter == 0.0 ? 1e-2 : 10.0 * jitter);
  }
  throw std::runtime_error("compactor: Cholesky of the sketched Gram matrix failed after " + std::to_string(max_tries) +
                           " tries");
}

}  // namespace

Eigen::VectorXd sketched_leverage(Eigen::MatrixXd x, const Eigen::MatrixXd& phi, double jitter) {
  if (x.rows() == 0) return Eigen::VectorXd();
  x.rowwise() -= x.colwise().mean();  // sequence-centering, then the sketch
  const Eigen::MatrixXd y = x * phi;  // S x k
  const Eigen::MatrixXd gram = y.transpose() * y;
  const Eigen::LLT<Eigen::MatrixXd> llt = cholesky_with_jitter(0.5 * (gram + gram.transpose()), jitter, 5);
  const Eigen::MatrixXd solved = llt.solve(y.transpose());  // (Y^T Y + jitter I)^-1 Y^T, k x S
  // diag(Y (Y^T Y + jitter I)^-1 Y^T) without the S x S matrix: (X * inv_Xt^T).sum(-1).clamp_min(0).
  return (y.array() * solved.transpose().array()).rowwise().sum().cwiseMax(0.0).matrix();
}

Eigen::MatrixXd gaussian_sketch(std::uint64_t key, Eigen::Index rows_d, Eigen::Index cols_k) {
  KeyedRng rng(key);
  const double scale = 1.0 / std::sqrt(static_cast<double>(cols_k));
  Eigen::MatrixXd phi(rows_d, cols_k);
  for (Eigen::Index i = 0; i < rows_d; ++i) {
    for (Eigen::Index j = 0; j < cols_k; ++j) phi(i, j) = rng.normal() * scale;
  }
  return phi;
}

std::uint64_t fnv1a64(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint64_t sketch_key(std::uint64_t seed, std::string_view request_id, int layer, int kv_head,
                         std::int64_t pass_end) {
  return hash_key(seed, static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(kv_head),
                  static_cast<std::uint64_t>(pass_end), fnv1a64(request_id));
}

Eigen::VectorXf noncausal_chunk_attention(const HeadMatrix& keys, std::span<const HeadMatrix> queries,
                                          std::int64_t chunk, bool zero_pad_last) {
  // kvpress fills the pad keys' logits with -1e-9 (not -inf), so they stay in every softmax.
  constexpr float kPadLogit = -1e-9f;
  const Eigen::Index s = keys.rows();
  Eigen::VectorXf total = Eigen::VectorXf::Zero(s);
  HeadMatrix logits;
  for (const HeadMatrix& q : queries) {
    for (Eigen::Index begin = 0; begin < s; begin += chunk) {
      const Eigen::Index len = std::min<Eigen::Index>(chunk, s - begin);
      const Eigen::Index pad = zero_pad_last ? chunk - len : 0;
      logits.noalias() = q.middleRows(begin, len) * keys.middleRows(begin, len).transpose();
      for (Eigen::Index i = 0; i < len; ++i) {
        auto row = logits.row(i).array();
        const float top = pad > 0 ? std::max(row.maxCoeff(), kPadLogit) : row.maxCoeff();
        row = (row - top).exp();
        row /= row.sum() + static_cast<float>(pad) * std::exp(kPadLogit - top);
      }
      total.segment(begin, len) += logits.colwise().sum().transpose();
      if (pad > 0) {
        // The pad queries' rows are all 0 on the real keys, -1e-9 on the pad keys: uniform.
        const float uniform = 1.0f / (static_cast<float>(len) + static_cast<float>(pad) * std::exp(kPadLogit));
        total.segment(begin, len).array() += static_cast<float>(pad) * uniform;
      }
    }
  }
  if (!queries.empty()) total /= static_cast<float>(queries.size());
  return total;
}

HeadMatrix gather_rows(const HeadMatrix& m, std::span<const std::int32_t> positions) {
  HeadMatrix out(static_cast<Eigen::Index>(positions.size()), m.cols());
  for (std::size_t i = 0; i < positions.size(); ++i) out.row(static_cast<Eigen::Index>(i)) = m.row(positions[i]);
  return out;
}

ZStats z_stats(std::span<const Eigen::VectorXd> parts) {
  double sum = 0.0;
  Eigen::Index count = 0;
  for (const auto& p : parts) {
    sum += p.sum();
    count += p.size();
  }
  ZStats z;
  if (count == 0) return z;
  z.mean = sum / static_cast<double>(count);
  double squares = 0.0;
  for (const auto& p : parts) squares += (p.array() - z.mean).square().sum();
  // torch: scores.std().clamp_min(1e-6), unbiased; a single value has no spread.
  z.std = count > 1 ? std::max(std::sqrt(squares / static_cast<double>(count - 1)), 1e-6) : 1e-6;
  return z;
}

}  // namespace kvsim

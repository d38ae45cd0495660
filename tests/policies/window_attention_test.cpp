#include "policies/window_attention.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_support.h"

namespace kvsim {
namespace {

// Straight double-precision loops over the definition: softmax of q.k/sqrt(d) over the resident
// entries at positions <= the query's, summed over the window, averaged over the group.
std::vector<double> brute_force(const HeadMatrix& keys, const std::vector<std::int32_t>& resident, int window,
                                const std::vector<const HeadMatrix*>& heads) {
  const std::size_t prefix = resident.size() - window;
  std::vector<double> score(prefix, 0.0);
  const double d = static_cast<double>(keys.cols());
  for (const HeadMatrix* q : heads) {
    for (int i = 0; i < window; ++i) {
      const std::int32_t pos = resident[prefix + i];
      std::vector<double> logit;
      for (std::size_t j = 0; j <= prefix + i; ++j) {
        double dot = 0;
        for (Eigen::Index c = 0; c < keys.cols(); ++c) dot += double(q->coeff(pos, c)) * keys.coeff(resident[j], c);
        logit.push_back(dot / std::sqrt(d));
      }
      const double mx = *std::max_element(logit.begin(), logit.end());
      double total = 0;
      for (double& l : logit) total += (l = std::exp(l - mx));
      for (std::size_t j = 0; j < prefix; ++j) score[j] += logit[j] / total / heads.size();
    }
  }
  return score;
}

TEST(WindowAttention, MatchesDefinitionWithGapsAndGqa) {
  std::mt19937_64 rng(7);
  const HeadMatrix keys = testing_support::random_matrix(rng, 50, 16, 1.5f);
  const HeadMatrix q0 = testing_support::random_matrix(rng, 50, 16, 1.5f);
  const HeadMatrix q1 = testing_support::random_matrix(rng, 50, 16, 1.5f);
  // An evicted cache: gaps in the positions; the last 4 resident entries are the window.
  const std::vector<std::int32_t> resident{0, 1, 3, 7, 8, 20, 21, 30, 46, 47, 48, 49};
  const std::vector<const HeadMatrix*> heads{&q0, &q1};
  const std::vector<std::int64_t> rows{46, 47, 48, 49};  // queries stored at every position
  const auto got = window_attention_scores(keys, resident, 4, {heads, rows});
  const auto want = brute_force(keys, resident, 4, heads);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t j = 0; j < want.size(); ++j) EXPECT_NEAR(got[j], want[j], 1e-6 * std::max(1.0, want[j])) << j;
}

}  // namespace
}  // namespace kvsim

#include "util/confidence.h"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <stdexcept>

namespace kvsim {

double student_t_quantile(double p, int dof) {
  if (dof < 1 || !(p > 0 && p < 1)) throw std::invalid_argument("student_t_quantile: needs dof >= 1 and p in (0, 1)");
  return boost::math::quantile(boost::math::students_t_distribution<double>(dof), p);
}

MeanInterval student_t_interval(std::span<const double> draws, double confidence) {
  if (draws.empty()) throw std::invalid_argument("student_t_interval: no draws");
  if (!(confidence > 0 && confidence < 1)) throw std::invalid_argument("student_t_interval: confidence in (0, 1)");
  const double first = draws.front();
  if (std::all_of(draws.begin(), draws.end(), [&](double x) { return x == first; })) return {first, 0.0};
  const auto n = static_cast<double>(draws.size());
  double sum = 0;
  for (const double x : draws) sum += x;
  const double mean = sum / n;
  double squares = 0;  // two passes: the one-pass formula cancels badly when the spread is small
  for (const double x : draws) squares += (x - mean) * (x - mean);
  const double sd = std::sqrt(squares / (n - 1));
  const int dof = static_cast<int>(draws.size()) - 1;
  return {mean, student_t_quantile(0.5 + confidence / 2, dof) * sd / std::sqrt(n)};
}

}  // namespace kvsim

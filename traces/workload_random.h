#pragma once
// Samplers for synthetic workloads, built on KeyedRng's uniform and normal doubles. std::*_distribution
// is not used: its algorithms differ between standard libraries, so the same seed would give a
// different workload with libstdc++ and libc++.
#include <cmath>

#include "util/rng.h"

namespace kvsim::workload_random {

// Exponential with the given mean, by inverting the CDF.
inline double exponential(KeyedRng& rng, double mean) { return -mean * std::log(rng.uniform()); }

// Gamma(shape, scale) with mean shape * scale, by Marsaglia and Tsang, "A simple method for
// generating gamma variables" (ACM TOMS 2000): a squeeze and rejection on a cubed normal for
// shape >= 1; for shape < 1, Gamma(shape + 1) * U^(1/shape) (their section 6).
inline double gamma(KeyedRng& rng, double shape, double scale) {
  if (shape < 1.0) {
    const double boost = std::exp(std::log(rng.uniform()) / shape);
    return gamma(rng, shape + 1.0, scale) * boost;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x = 0, v = 0;
    do {
      x = rng.normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.uniform();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v * scale;
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v * scale;
  }
}

// Lognormal with the given mean and coefficient of variation (standard deviation / mean):
// sigma^2 = ln(1 + cv^2), mu = ln(mean) - sigma^2 / 2. cv = 0 gives the mean itself.
inline double lognormal(KeyedRng& rng, double mean, double cv) {
  if (cv == 0.0) return mean;
  const double sigma2 = std::log1p(cv * cv);
  const double mu = std::log(mean) - 0.5 * sigma2;
  return std::exp(mu + std::sqrt(sigma2) * rng.normal());
}

}  // namespace kvsim::workload_random

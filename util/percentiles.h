#pragma once
// Percentiles as numpy computes them by default (linear interpolation between order statistics).
#include <vector>

namespace kvsim {

// The q-th percentile of `values`, q in [0, 100]. REQUIRES: values not empty.
double percentile(std::vector<double> values, double q);

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
};

// p50/p90/p99 of `values`; zeros when empty.
Percentiles percentiles_of(const std::vector<double>& values);

}  // namespace kvsim

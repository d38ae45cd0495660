#pragma once
// The mean of independent draws and its confidence interval ([workload] seeds, README "Scenario
// files"). Student's t with N - 1 degrees of freedom, because the spread is estimated from the same
// few draws: with 5 draws the normal quantile (1.96) would make the interval 30 % too narrow
// (t = 2.78), and a bootstrap of 5 values undercovers worse still.
#include <span>

namespace kvsim {

struct MeanInterval {
  double mean = 0;
  double half_width = 0;  // the interval is mean +- half_width; 0 for one draw and for equal draws
};

// The two-sided Student-t interval at `confidence` for the mean of `draws`. Equal draws give their
// value exactly (not a rounded sum / N) and half-width 0. REQUIRES: draws not empty, confidence in (0, 1).
MeanInterval student_t_interval(std::span<const double> draws, double confidence = 0.95);

// The p-quantile of Student's t distribution with `dof` degrees of freedom. REQUIRES: dof >= 1, p in (0, 1).
double student_t_quantile(double p, int dof);

}  // namespace kvsim

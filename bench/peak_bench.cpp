// This machine's dense SGEMM peak through Eigen, the yardstick of the scoring kernels (issue 8):
// a square GEMM per thread. Eigen is built without OpenMP, so "2 threads" runs one GEMM per TBB
// worker at once, which is how kvsim's kernels use cores (heads in parallel).
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <random>
#include <vector>

#include "bench/bench_shapes.h"
#include "tests/test_support.h"

namespace kvsim::bench {
namespace {

void BM_SgemmPeak(benchmark::State& state) {
  const auto threads = static_cast<int>(state.range(0));
  const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  std::mt19937_64 rng(1);
  const HeadMatrix a = testing_support::random_matrix(rng, kPeakGemmSize, kPeakGemmSize);
  const HeadMatrix b = testing_support::random_matrix(rng, kPeakGemmSize, kPeakGemmSize);
  std::vector<HeadMatrix> out(static_cast<std::size_t>(threads), HeadMatrix(kPeakGemmSize, kPeakGemmSize));
  for (auto _ : state) {
    tbb::parallel_for(0, threads, [&](int t) { out[static_cast<std::size_t>(t)].noalias() = a * b; });
    benchmark::DoNotOptimize(out.front().data());
  }
  const double flops = 2.0 * threads * static_cast<double>(kPeakGemmSize) * kPeakGemmSize * kPeakGemmSize;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = threads;
}
BENCHMARK(BM_SgemmPeak)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The GEMM inside window attention alone, [group*window x d] x [d x keys]: how close a skinny GEMM
// of this shape gets to the square peak.
void BM_SkinnySgemm(benchmark::State& state) {
  const auto keys = state.range(0);
  std::mt19937_64 rng(1);
  const HeadMatrix q = testing_support::random_matrix(rng, kGroup * kWindow, kHeadDim);
  const HeadMatrix k = testing_support::random_matrix(rng, keys, kHeadDim);
  HeadMatrix out(kGroup * kWindow, keys);
  for (auto _ : state) {
    out.noalias() = q * k.transpose();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(window_attention_flops(keys) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SkinnySgemm)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvsim::bench

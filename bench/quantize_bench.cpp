// KIVI's quantization kernel (issue 8) at d = 128 for 4K, 32K and 128K keys, in GB/s of float32
// K/V read: one KV head's keys quantized per channel and its values per token, 2 bits in groups
// of 32 (kivi's defaults), dequantized as the fidelity proxies use them, into reused buffers. A plain copy of the same
// bytes in the same run is the memory-bound limit it is judged against; bench/torch_reference.py
// times the same computation in PyTorch.
#include <benchmark/benchmark.h>

#include <random>

#include "bench/bench_shapes.h"
#include "policies/quantize.h"
#include "tests/test_support.h"

namespace kvsim::bench {
namespace {

double kv_bytes(std::int64_t keys) { return 2.0 * static_cast<double>(keys) * kHeadDim * sizeof(float); }

// One KV head's keys and values, and output buffers of the same size that every iteration reuses
// (no reallocation, so no page faults are timed).
struct KvInput {
  HeadMatrix keys, values, k, v;
  explicit KvInput(std::int64_t n) {
    std::mt19937_64 rng(5);
    keys = testing_support::random_matrix(rng, n, kHeadDim);
    values = testing_support::random_matrix(rng, n, kHeadDim);
    k = keys;
    v = values;
  }
  void copy() {
    k = keys;
    v = values;
  }
};

void set_rate(benchmark::State& state) {
  state.counters["GB/s"] =
      benchmark::Counter(kv_bytes(state.range(0)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_KiviQuantize(benchmark::State& state) {
  KvInput in(state.range(0));
  for (auto _ : state) {
    in.copy();
    fake_quantize_per_channel_in_place(in.k, kKiviBits, kKiviGroup);
    fake_quantize_per_token_in_place(in.v, kKiviBits, kKiviGroup);
    benchmark::DoNotOptimize(in.k.data());
    benchmark::DoNotOptimize(in.v.data());
  }
  set_rate(state);
}
BENCHMARK(BM_KiviQuantize)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

// The bound: copying the same K/V into the reused output buffers (the read and write the quantizer
// does at least).
void BM_KvCopy(benchmark::State& state) {
  KvInput in(state.range(0));
  for (auto _ : state) {
    in.copy();
    benchmark::DoNotOptimize(in.k.data());
    benchmark::DoNotOptimize(in.v.data());
  }
  set_rate(state);
}
BENCHMARK(BM_KvCopy)->Arg(4096)->Arg(32768)->Arg(131072)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvsim::bench

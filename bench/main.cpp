// kvsim_bench: every benchmark of bench/ in one binary; tools/bench.sh runs it.
#include <benchmark/benchmark.h>

#include "util/allocator.h"

int main(int argc, char** argv) {
  kvsim::tune_allocator();  // as kvsim itself runs
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

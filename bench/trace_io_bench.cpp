// Trace reading speed (issue 8): MB/s of loading one traced layer of a llama-3.1-8b-shaped HDF5
// trace (32K-token prompt, 8 KV heads of d = 128, 64 stored queries per head), float32 and float16,
// with and without gzip. The file is written once per shape into the temporary directory.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <map>

#include "traces/synth.h"
#include "traces/trace_file.h"

namespace kvsim::bench {
namespace {

constexpr std::int64_t kPromptTokens = 32768;

// Element bytes of one layer as kvsim holds it (float32 K, V, Q), the work the reader delivers.
std::int64_t layer_bytes(const LayerTrace& layer) {
  std::int64_t elements = 0;
  for (const auto* part : {&layer.keys, &layer.values, &layer.queries}) {
    for (const HeadMatrix& m : *part) elements += m.size();
  }
  return elements * static_cast<std::int64_t>(sizeof(float));
}

const std::string& trace_path(bool float16, int gzip_level) {
  static std::map<std::pair<bool, int>, std::string> paths;
  auto& path = paths[{float16, gzip_level}];
  if (path.empty()) {
    SynthParams params;
    params.model = ModelShape{"bench-8b", 32, 32, 8, 128};
    params.prompt_tokens = kPromptTokens;
    params.generated_tokens = 0;
    params.traced_layers = {0};
    path = (std::filesystem::temp_directory_path() /
            ("kvsim_bench_trace_" + std::to_string(float16) + "_" + std::to_string(gzip_level) + ".h5"))
               .string();
    write_trace_file(path, *make_synthetic_source(params), {float16, gzip_level});
  }
  return path;
}

// args: float16 (0|1), gzip level.
void BM_TraceRead(benchmark::State& state) {
  const std::string& path = trace_path(state.range(0) != 0, static_cast<int>(state.range(1)));
  std::int64_t bytes = 0;
  for (auto _ : state) {
    const auto source = open_trace_file(path);
    const LayerTrace layer = source->load_layer(source->header().requests.front().id, 0);
    bytes = layer_bytes(layer);
    benchmark::DoNotOptimize(layer.keys.data());
  }
  state.counters["MB/s"] =
      benchmark::Counter(static_cast<double>(bytes) * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["file_MB"] = static_cast<double>(std::filesystem::file_size(path)) * 1e-6;
}
BENCHMARK(BM_TraceRead)->Args({0, 0})->Args({1, 0})->Args({1, 1})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvsim::bench

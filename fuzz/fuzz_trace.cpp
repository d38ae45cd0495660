// libFuzzer target: the HDF5 trace reader. The input is written to a file, opened, validated,
// and every traced layer of every request is loaded. Any input must give a trace or an
// InputError. (Known: libhdf5 1.10 itself crashes on some corrupt global heaps; see
// tests/bad_inputs/run_bad_inputs.py EXPECTED_FAILURES and tools/fuzz.sh.)
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "traces/trace_file.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/kvsim_fuzz_trace_" + std::to_string(getpid()) + ".h5";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto source = kvsim::open_trace_file(path);
    for (const auto& request : source->header().requests) {
      for (const int layer : source->header().traced_layers) source->load_layer(request.id, layer);
    }
  } catch (const kvsim::InputError&) {}
  return 0;
}

// libFuzzer target: workload readers. The input is written to a file and read both as an Azure
// CSV and as a Mooncake JSONL trace; it is also tried as a synthetic spec. Any input must give a
// workload or an InputError.
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "traces/workload.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string stem = "/tmp/kvsim_fuzz_workload_" + std::to_string(getpid());
  for (const char* ext : {".csv", ".jsonl"}) {
    const std::string path = stem + ext;
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
      kvsim::WorkloadLimits limits;
      limits.max_requests = 10000;
      kvsim::load_workload(path, "", 1, limits, "fuzz");
    } catch (const kvsim::InputError&) {}
  }
  if (size < 256) {
    try {
      kvsim::WorkloadLimits limits;
      limits.max_requests = 1000;  // a fuzzed spec may ask for millions of requests
      kvsim::make_synthetic_workload(std::string(reinterpret_cast<const char*>(data), size), 1, "fuzz", limits);
    } catch (const kvsim::InputError&) {}
  }
  return 0;
}

// libFuzzer target: hardware INI files (preset or attachment syntax: [device], [tier.*], [link.*],
// units, the check that every tier is reachable from the compute tier), then the hierarchy built
// from what loads: every tier's path and bottleneck from the compute tier. Any input must give
// hardware or an InputError.
#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/kvsim_fuzz_hardware_" + std::to_string(getpid()) + ".ini";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const kvsim::Hierarchy hierarchy(kvsim::load_hardware(path));
    const kvsim::Hardware& hw = hierarchy.hardware();
    for (const kvsim::Tier& tier : hw.tiers) (void)hierarchy.bottleneck_bytes_per_s(hw.device.compute_tier, tier.name);
    (void)hierarchy.to_dot();
  } catch (const kvsim::InputError&) {}
  return 0;
}

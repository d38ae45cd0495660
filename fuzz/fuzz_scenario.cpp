// libFuzzer target: scenario INI text (Boost.Program_options INI parsing, a leading byte-order
// mark, every key's validation and bound, policy specs, placements, serving keys), then, for a
// scenario naming a built-in hardware preset, the up-front check of its placement and swap tiers
// against that hardware. Any input must give a Scenario or an InputError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const kvsim::Scenario scenario = kvsim::load_scenario_text(text, "fuzz.ini");
    // Built-in presets only: a fuzzed path could name any file on the machine.
    if (!scenario.hardware_preset.empty() && scenario.hardware_preset.find_first_of("/.") == std::string::npos) {
      kvsim::check_scenario_tiers(scenario, kvsim::load_hardware(scenario.hardware_preset, {}));
    }
  } catch (const kvsim::InputError&) {}
  return 0;
}

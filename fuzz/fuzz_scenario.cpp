// libFuzzer target: scenario INI text (Boost.Program_options INI parsing, every key's validation,
// policy specs, placements, serving keys). Any input must give a Scenario or an InputError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "sim/scenario.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    kvsim::load_scenario_text(text, "fuzz.ini");
  } catch (const kvsim::InputError&) {
  }
  return 0;
}

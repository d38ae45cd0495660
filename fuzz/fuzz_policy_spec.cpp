// libFuzzer target: policy spec strings through the registry (parser, every policy's parameter
// checks). Any input must give a policy or an InputError.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policies/registry.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto policy = kvsim::PolicyRegistry::builtin().create(text);
    (void)policy->spec();
  } catch (const kvsim::InputError&) {
  }
  return 0;
}

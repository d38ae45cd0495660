// libFuzzer target: policy spec strings through the registry (parser, every policy's parameter
// checks), and every spec that makes a policy is then replayed on a small synthetic scenario, so
// that parameters the parser accepts but the replay cannot handle (overflow, hangs, huge
// allocations) are found too. Any input must give a result or an InputError.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policies/registry.h"
#include "sim/replay/run.h"
#include "sim/scenario.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto policy = kvsim::PolicyRegistry::builtin().create(text);
    (void)policy->spec();
    // Only a spec that is one INI value (no line breaks or comment characters) can be replayed.
    if (text.find_first_of("\r\n#;") != std::string_view::npos) return 0;
    const std::string scenario =
        "[model]\nname = toy\nnum_layers = 2\nnum_q_heads = 4\nnum_kv_heads = 2\nhead_dim = 16\nrope_theta = 10000\n"
        "[workload]\nprompt_tokens = 96\ngenerated_tokens = 3\nchunk_tokens = 32\ntrace = synthetic\nseed = 1\n"
        "[policy]\nspec = " +
        std::string(text) + "\n[sim]\nthreads = 1\n";
    (void)kvsim::run_scenario(kvsim::load_scenario_text(scenario, "/fuzz/scenario.ini"), false);
  } catch (const kvsim::InputError&) {}
  return 0;
}

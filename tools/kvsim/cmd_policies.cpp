// kvsim policies: what can go in a [policy] spec.
#include <iostream>

#include "policies/registry.h"
#include "tools/kvsim/commands.h"
#include "util/error.h"

namespace kvsim::cli {

int cmd_policies(const Args& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "kvsim policies: list every registered KV policy with its parameters and defaults.\n"
                 "A spec is name(key=value, ...), e.g. snapkv(budget=0.2, window=32, prefill=chunk).\n";
    return 0;
  }
  if (!args.empty()) fail_input("kvsim policies", "takes no arguments, got '" + args[0] + "'");
  for (const auto& info : PolicyRegistry::builtin().all()) {
    std::cout << info.name << ": " << info.summary << "\n";
    std::cout << "    reference: " << info.reference << "\n";
    for (const auto& p : info.params) {
      std::cout << "    " << p.name << " = " << documented_default(p, info.params) << "    " << p.help << "\n";
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace kvsim::cli

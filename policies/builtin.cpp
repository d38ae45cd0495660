// The built-in policies: one registration line each.
#include "policies/registry.h"

namespace kvsim {

const PolicyRegistry& PolicyRegistry::builtin() {
  static const PolicyRegistry registry = [] {
    PolicyRegistry r;
    register_full(r);
    register_streaming(r);
    register_snapkv(r);
    return r;
  }();
  return registry;
}

}  // namespace kvsim

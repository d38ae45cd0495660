// The built-in policies: one registration line each.
#include "policies/registry.h"

namespace kvsim {

const PolicyRegistry& PolicyRegistry::builtin() {
  static const PolicyRegistry registry = [] {
    PolicyRegistry r;
    register_full(r);
    register_streaming(r);
    register_snapkv(r);
    register_pyramidkv(r);
    register_adakv(r);
    register_lava(r);
    register_chunkkv(r);
    register_l2norm(r);
    register_compactor(r);
    register_curdkv(r);
    register_h2o(r);
    register_tova(r);
    register_kvzip(r);
    register_head_masks(r);
    register_expected_attention(r);
    register_rkv(r);
    register_morphkv(r);
    register_obcache(r);
    register_kivi(r);
    register_think(r);
    register_mixed_precision(r);
    register_dbudget(r);
    register_kvcompress(r);
    return r;
  }();
  return registry;
}

}  // namespace kvsim

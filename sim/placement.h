#pragma once
// Where KV entries live across the memory tiers (issue 5 item 4), written like a policy spec in
// the scenario's [hardware] placement key:
//   hbm_only                      every kept entry in the compute tier; report when it overflows
//   offload(tier=cxl, prefetch=none|layer)
//                                 the oldest entries beyond the compute tier's KV capacity spill to
//                                 `tier`; each pass streams them back over the links to attend to
//                                 them, serialised with compute unless prefetch=layer overlaps it
//   layer_prefetch(tier=cxl)      alias of offload(tier=cxl, prefetch=layer); spec() prints the offload form
//   score_tiering(tier=cxl)       entries the policy evicts are demoted to `tier` instead of dropped
//                                 (recallable, as in ClusterKV/InfiniGen); attention reads the hot set
#include <string>

namespace kvsim {

struct Placement {
  enum class Kind { kHbmOnly, kOffload, kScoreTiering };
  Kind kind = Kind::kHbmOnly;
  std::string tier;          // the lower tier (offload, score_tiering)
  bool prefetch = false;     // offload: overlap the fetch of layer L+1 with layer L
  double hbm_reserve = 0.1;  // fraction of the compute tier kept free for activations and runtime

  std::string spec() const;
};

// Throws InputError naming `where` for an unknown placement or parameter.
Placement parse_placement(const std::string& text, const std::string& where);

}  // namespace kvsim

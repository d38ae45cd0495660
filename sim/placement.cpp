#include "sim/placement.h"

#include "policies/spec.h"
#include "util/error.h"

namespace kvsim {

std::string Placement::spec() const {
  const std::string reserve = ", hbm_reserve=" + format_spec_number(hbm_reserve);
  switch (kind) {
    case Kind::kHbmOnly: return "hbm_only(" + reserve.substr(2) + ")";
    case Kind::kOffload: return "offload(tier=" + tier + ", prefetch=" + (prefetch ? "layer" : "none") + reserve + ")";
    case Kind::kScoreTiering: return "score_tiering(tier=" + tier + reserve + ")";
  }
  return "";
}

Placement parse_placement(const std::string& text, const std::string& where) {
  try {
    SpecArgs args(parse_spec(text, "placement '" + text + "'"), "placement");
    Placement p;
    if (args.name() == "hbm_only") {
      p.kind = Placement::Kind::kHbmOnly;
    } else if (args.name() == "offload") {
      p.kind = Placement::Kind::kOffload;
      p.tier = args.get_string("tier", "dram");
      p.prefetch = args.get_choice("prefetch", "none", {"none", "layer"}) == "layer";
    } else if (args.name() == "layer_prefetch") {
      // The name for offload with the fetch of layer L+1 overlapped with layer L: an alias
      // whose spec() is the canonical offload(..., prefetch=layer).
      p.kind = Placement::Kind::kOffload;
      p.tier = args.get_string("tier", "dram");
      p.prefetch = true;
    } else if (args.name() == "score_tiering") {
      p.kind = Placement::Kind::kScoreTiering;
      p.tier = args.get_string("tier", "dram");
    } else {
      args.fail("",
                "unknown placement '" + args.name() + "' (known: hbm_only, offload, layer_prefetch, score_tiering)");
    }
    p.hbm_reserve = args.get_double("hbm_reserve", 0.1);
    if (!(p.hbm_reserve >= 0 && p.hbm_reserve < 1)) args.fail("hbm_reserve", "must be in [0, 1)");
    args.finish();
    return p;
  } catch (const InputError& e) {
    fail_input(where, e.what());
  }
}

}  // namespace kvsim

// full: the baseline, no eviction.
#include "policies/registry.h"

namespace kvsim {

namespace {

class FullPolicy final : public Policy {
 public:
  std::string spec() const override { return "full"; }
  EvictionPoints eviction_points() const override { return {}; }
  void evict(const EvictionContext&, LayerResidency&) const override {}
};

}  // namespace

void register_full(PolicyRegistry& registry) {
  registry.add({"full",
                "keep every KV entry (the baseline every scenario runs)",
                "-",
                {},
                [](PolicyArgs&) -> std::unique_ptr<Policy> { return std::make_unique<FullPolicy>(); }});
}

}  // namespace kvsim

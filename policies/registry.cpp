#include "policies/registry.h"

#include "util/error.h"

namespace kvsim {

void PolicyRegistry::add(PolicyInfo info) {
  for (const auto& existing : infos_) {
    if (existing.name == info.name) throw std::logic_error("policy registered twice: " + info.name);
  }
  infos_.push_back(std::move(info));
}

std::unique_ptr<Policy> PolicyRegistry::create(std::string_view spec) const {
  ParsedSpec parsed = parse_policy_spec(spec);
  for (const auto& info : infos_) {
    if (info.name == parsed.name) {
      PolicyArgs args(SpecArgs(std::move(parsed)), info.params);
      auto policy = info.make(args);
      args.finish();
      policy->token_budget_ = args.token_budget();
      return policy;
    }
  }
  std::string known;
  for (const auto& info : infos_) known += (known.empty() ? "" : ", ") + info.name;
  fail_input("policy spec '" + std::string(spec) + "'", "unknown policy '" + parsed.name + "' (known: " + known + ")");
}

}  // namespace kvsim

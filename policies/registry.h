#pragma once
// Policy registry: name -> factory, with the parameter table (policies/params.h) that documents,
// parses and canonicalises its spec. Adding a policy is one new file that defines a
// register_<name>() function, plus one line in policies/builtin.cpp that calls it.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policies/params.h"
#include "policies/policy.h"

namespace kvsim {

struct PolicyInfo {
  std::string name;
  std::string summary;              // one line
  std::string reference;            // paper / reference implementation
  std::vector<PolicyParam> params;  // every parameter, in the order the canonical spec writes them
  // Builds the policy from its arguments (each default from `params`); its spec() is
  // args.canonical(). The registry calls args.finish() afterwards.
  std::function<std::unique_ptr<Policy>(PolicyArgs& args)> make;
};

class PolicyRegistry {
 public:
  // The registry with every built-in policy (policies/builtin.cpp).
  static const PolicyRegistry& builtin();

  void add(PolicyInfo info);
  // Throws InputError for an unknown name (listing the known ones) or bad arguments.
  std::unique_ptr<Policy> create(std::string_view spec) const;
  const std::vector<PolicyInfo>& all() const { return infos_; }

 private:
  std::vector<PolicyInfo> infos_;
};

// One per built-in policy file.
void register_full(PolicyRegistry& registry);
void register_streaming(PolicyRegistry& registry);
void register_snapkv(PolicyRegistry& registry);
void register_pyramidkv(PolicyRegistry& registry);
void register_adakv(PolicyRegistry& registry);
void register_lava(PolicyRegistry& registry);
void register_chunkkv(PolicyRegistry& registry);
void register_l2norm(PolicyRegistry& registry);
void register_compactor(PolicyRegistry& registry);
void register_curdkv(PolicyRegistry& registry);
void register_h2o(PolicyRegistry& registry);
void register_tova(PolicyRegistry& registry);
void register_kvzip(PolicyRegistry& registry);
void register_head_masks(PolicyRegistry& registry);  // duoattention, prulong
void register_expected_attention(PolicyRegistry& registry);
void register_rkv(PolicyRegistry& registry);
void register_morphkv(PolicyRegistry& registry);
void register_obcache(PolicyRegistry& registry);
void register_kivi(PolicyRegistry& registry);
void register_think(PolicyRegistry& registry);
void register_mixed_precision(PolicyRegistry& registry);
void register_dbudget(PolicyRegistry& registry);
void register_kvcompress(PolicyRegistry& registry);

}  // namespace kvsim

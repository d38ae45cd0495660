#include "sim/scenario_sources.h"

#include "policies/registry.h"
#include "traces/layer_list.h"
#include "traces/synth.h"
#include "util/error.h"

namespace kvsim {

std::vector<std::unique_ptr<Policy>> make_scenario_policies(const Scenario& scenario) {
  const PolicyRegistry& registry = PolicyRegistry::builtin();
  std::vector<std::unique_ptr<Policy>> policies;
  policies.push_back(registry.create("full"));
  for (const std::string& spec : scenario.policy_specs) {
    std::unique_ptr<Policy> policy;
    try {
      policy = registry.create(spec);
    } catch (const InputError& e) {
      fail_input(scenario.path + ": [policy] spec", e.what());
    }
    if (policy->spec() == "full") continue;
    for (const auto& existing : policies) {
      if (existing->spec() == policy->spec()) {
        fail_input(scenario.path + ": [policy] spec", "policy '" + policy->spec() + "' is listed twice");
      }
    }
    policies.push_back(std::move(policy));
  }
  return policies;
}

std::unique_ptr<TraceSource> make_synthetic_request(const Scenario& scenario, const PassPlan& plan, std::uint64_t seed,
                                                    int needles, std::span<const Policy* const> policies) {
  return make_synthetic_source(synthetic_request_params(scenario, plan, seed, needles, policies));
}

SynthParams synthetic_request_params(const Scenario& scenario, const PassPlan& plan, std::uint64_t seed, int needles,
                                     std::span<const Policy* const> policies) {
  const std::int64_t prompt_tokens = plan.prompt_tokens();
  const std::int64_t generated_tokens = plan.generated_tokens();
  SynthParams params;
  params.model = scenario.model;
  params.prompt_tokens = prompt_tokens;
  params.generated_tokens = generated_tokens;
  params.traced_layers =
      parse_layer_list(scenario.traced_layers, scenario.model.num_layers, scenario.path + ": [workload] traced_layers");
  params.seed = seed;
  params.num_needles = needles;
  params.needle_tokens = scenario.needle_tokens;
  params.head_map = scenario.head_map;
  RequestInfo shape;
  shape.prompt_tokens = prompt_tokens;
  shape.generated_tokens = generated_tokens;
  for (const Policy* p : policies) {
    p->add_required_queries(shape, {plan.prefill_begin(), plan.prefill_end()}, &params.extra_query_positions);
    if (p->requires_recon_queries()) params.recon_query_tokens = kDefaultReconQueryTokens;
  }
  validate_synth_params(params, scenario.path + ": [workload]");
  return params;
}

}  // namespace kvsim

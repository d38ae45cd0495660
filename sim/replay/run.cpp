#include "sim/replay/run.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hw/hardware.h"
#include "traces/layer_list.h"
#include "traces/trace_file.h"
#include "util/error.h"

namespace kvsim {

namespace {

// A view of a trace file restricted to some of its traced layers, with the model as the scenario
// describes it: a trace stores attention shapes only, so the KV precision and the dense-layer shape
// (for the cost model) come from the scenario's [model] when it has one.
class ScenarioTraceView final : public TraceSource {
 public:
  ScenarioTraceView(std::unique_ptr<TraceSource> inner, std::vector<int> layers, const Scenario& scenario)
      : inner_(std::move(inner)), header_(inner_->header()) {
    header_.traced_layers = std::move(layers);
    if (scenario.model_given) {
      header_.model.kv_bits = scenario.model.kv_bits;
      header_.model.hidden_size = scenario.model.hidden_size;
      header_.model.intermediate_size = scenario.model.intermediate_size;
      header_.model.vocab_size = scenario.model.vocab_size;
    }
  }
  const TraceHeader& header() const override { return header_; }
  LayerTrace load_layer(const std::string& request_id, int layer) const override {
    return inner_->load_layer(request_id, layer);
  }

 private:
  std::unique_ptr<TraceSource> inner_;
  TraceHeader header_;
};

void check_model_matches(const Scenario& s, const ModelShape& file_model) {
  auto mismatch = [&](const char* key, long long scenario_value, long long file_value) {
    if (scenario_value != file_value) {
      fail_input(s.path + ": [model] " + key, "is " + std::to_string(scenario_value) + " but the trace file " +
                                                  s.trace + " has " + std::to_string(file_value));
    }
  };
  mismatch("num_layers", s.model.num_layers, file_model.num_layers);
  mismatch("num_q_heads", s.model.num_q_heads, file_model.num_q_heads);
  mismatch("num_kv_heads", s.model.num_kv_heads, file_model.num_kv_heads);
  mismatch("head_dim", s.model.head_dim, file_model.head_dim);
}

std::unique_ptr<TraceSource> open_file_source(const Scenario& s, RequestInfo* request) {
  std::unique_ptr<TraceSource> source;
  try {
    source = open_trace_file(s.trace);
  } catch (const InputError& e) {
    fail_input(s.path + ": [workload] trace", e.what());
  }
  const TraceHeader& header = source->header();
  if (s.model_given) check_model_matches(s, header.model);
  const auto& requests = header.requests;
  const auto it = s.request.empty() ? requests.begin()
                                    : std::find_if(requests.begin(), requests.end(),
                                                   [&](const RequestInfo& r) { return r.id == s.request; });
  if (it == requests.end()) fail_input(s.path + ": [workload] request", "no request '" + s.request + "' in " + s.trace);
  *request = *it;
  auto check_length = [&](const char* key, std::int64_t scenario_value, std::int64_t file_value) {
    if (scenario_value != 0 && scenario_value != file_value) {
      fail_input(s.path + ": [workload] " + key, "is " + std::to_string(scenario_value) + " but request '" +
                                                     request->id + "' in " + s.trace + " has " +
                                                     std::to_string(file_value));
    }
  };
  check_length("prompt_tokens", s.prompt_tokens, request->prompt_tokens);
  check_length("generated_tokens", s.generated_tokens, request->generated_tokens);
  std::vector<int> layers = header.traced_layers;
  if (s.traced_layers != "all") {
    layers = parse_layer_list(s.traced_layers, header.model.num_layers, s.path + ": [workload] traced_layers");
    for (int layer : layers) {
      if (!std::binary_search(header.traced_layers.begin(), header.traced_layers.end(), layer)) {
        fail_input(s.path + ": [workload] traced_layers",
                   "layer " + std::to_string(layer) + " is not traced in " + s.trace);
      }
    }
  }
  return std::make_unique<ScenarioTraceView>(std::move(source), std::move(layers), s);
}

// The first traced layer of `request` that `by_request` (request id -> its layers holding a dataset,
// sorted) does not list, or -1 if every traced layer has it.
int first_layer_without(const std::map<std::string, std::vector<int>>& by_request, const TraceHeader& header,
                        const std::string& request) {
  const auto found = by_request.find(request);
  for (const int layer : header.traced_layers) {
    if (found == by_request.end() || !std::binary_search(found->second.begin(), found->second.end(), layer)) {
      return layer;
    }
  }
  return -1;
}

// A policy that scores with a reconstruction pass needs recon_queries in every traced layer (and
// KVzip's chunked scoring its recon_passes): refused before any layer is loaded, naming the
// scenario, the trace and the dataset.
void check_recon_queries(const Scenario& s, const TraceHeader& header, const RequestInfo& request,
                         std::span<const Policy* const> policies) {
  const std::string where = " has no dataset /requests/" + request.id + "/layer_";
  for (const Policy* policy : policies) {
    if (!policy->requires_recon_queries()) continue;
    if (const int layer = first_layer_without(header.recon_query_layers, header, request.id); layer >= 0) {
      fail_input(s.path + ": [policy] spec",
                 policy->spec() + " scores with a context-reconstruction pass, but the trace " + s.trace + where +
                     std::to_string(layer) + "/recon_queries (record it, or use trace = synthetic)");
    }
    if (!policy->requires_recon_passes()) continue;
    if (const int layer = first_layer_without(header.recon_pass_layers, header, request.id); layer >= 0) {
      fail_input(s.path + ": [policy] spec",
                 policy->spec() + " scores each reconstruction pass's own chunk (KVzip's scoring), but the trace " +
                     s.trace + where + std::to_string(layer) +
                     "/recon_passes (trace format 1.1: re-record with --recon, or use scoring=whole for the "
                     "whole-prompt approximation)");
    }
  }
}

// Every query position the fidelity measurement or a policy needs must be stored in every traced
// layer: refused before any layer is loaded, naming the trace and the dataset.
void check_stored_queries(const Scenario& s, const TraceHeader& header, const RequestInfo& request,
                          const PassPlan& plan, std::span<const Policy* const> policies) {
  const auto found = header.query_positions.find(request.id);
  if (found == header.query_positions.end()) return;
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  std::vector<std::pair<std::int64_t, std::string>> needed;
  for (const std::int64_t t : evaluation_positions(request, s.fidelity_queries)) {
    needed.emplace_back(t, "the fidelity measurement (decode positions; [sim] fidelity_queries)");
  }
  for (const Policy* policy : policies) {
    std::vector<std::int64_t> positions;
    policy->add_required_queries(request, prefill, &positions);
    for (const std::int64_t t : positions) needed.emplace_back(t, policy->spec());
  }
  for (const int layer : header.traced_layers) {
    const auto stored = found->second.find(layer);
    if (stored == found->second.end()) continue;
    for (const auto& [t, why] : needed) {
      if (std::binary_search(stored->second.begin(), stored->second.end(), t)) continue;
      fail_input(s.path + ": [workload] trace",
                 s.trace + ": /requests/" + request.id + "/layer_" + std::to_string(layer) +
                     "/query_positions has no query at position " + std::to_string(t) + ", needed by " + why +
                     " (synthesise with matching --chunk-tokens/--window, or record those positions)");
    }
  }
}

// A token budget at or above the prompt keeps every entry: the policy would silently be the full
// cache. Refused for a single-request replay, where the prompt is known (serving workloads mix
// prompt lengths, so there a count above some prompts is normal and allowed).
void check_token_budgets(const Scenario& s, std::span<const Policy* const> policies, std::int64_t prompt_tokens) {
  for (const Policy* policy : policies) {
    const std::int64_t tokens = policy->token_budget();
    if (tokens > 0 && tokens >= prompt_tokens) {
      fail_input(s.path + ": [policy] spec",
                 "'" + policy->spec() + "': budget=" + std::to_string(tokens) + " tokens is not below the prompt (" +
                     std::to_string(prompt_tokens) +
                     " tokens), so nothing would be evicted; give a count below the prompt or a fraction in (0, 1)");
    }
  }
}

}  // namespace

ScenarioRun run_scenario(const Scenario& scenario, bool keep_masks,
                         const std::function<void(const std::string&)>& progress) {
  const auto policies = make_scenario_policies(scenario);
  std::vector<const Policy*> policy_ptrs;
  for (const auto& p : policies) policy_ptrs.push_back(p.get());

  ScenarioRun run;
  // Hardware first: a placement it cannot serve is refused before the replay, not after it.
  if (!scenario.hardware_preset.empty()) {
    try {
      run.hardware = load_hardware(scenario.hardware_preset, scenario.hardware_attach);
    } catch (const InputError& e) {
      fail_input(scenario.path + ": [hardware] preset", e.what());
    }
    check_scenario_tiers(scenario, *run.hardware);
  }
  std::unique_ptr<TraceSource> source;
  if (scenario.synthetic()) {
    check_token_budgets(scenario, policy_ptrs, scenario.prompt_tokens);
    run.plan = make_pass_plan(scenario.prompt_tokens, scenario.generated_tokens, scenario.chunk_tokens);
    RequestInfo request;
    request.prompt_tokens = scenario.prompt_tokens;
    request.generated_tokens = scenario.generated_tokens;
    check_replay_fits(scenario.model, request, run.plan, policies.size(), scenario.path + ": [model] num_layers");
    source = make_synthetic_request(scenario, run.plan, scenario.seed, scenario.needles, policy_ptrs);
    run.request = source->header().requests.front();
  } else {
    source = open_file_source(scenario, &run.request);
    check_token_budgets(scenario, policy_ptrs, run.request.prompt_tokens);
    check_recon_queries(scenario, source->header(), run.request, policy_ptrs);
    run.plan = make_pass_plan(run.request.prompt_tokens, run.request.generated_tokens, scenario.chunk_tokens);
    check_stored_queries(scenario, source->header(), run.request, run.plan, policy_ptrs);
    check_replay_fits(source->header().model, run.request, run.plan, policies.size(),
                      scenario.path + ": [workload] trace " + scenario.trace + ": root attribute num_layers");
  }
  run.model = source->header().model;
  // The cost model's checks (dense-layer shape, tp) too, before the replay rather than after it.
  std::optional<CostModel> cost;
  if (run.hardware) cost.emplace(*run.hardware, run.model, scenario.tensor_parallel, scenario.path + ": [hardware]");
  run.traced_layers = source->header().traced_layers;
  run.trace_source = source->header().source;
  ReplayOptions options;
  options.max_eval_queries = scenario.fidelity_queries;
  options.keep_masks = keep_masks;
  options.progress = progress;
  run.results = replay_request(*source, run.request, run.plan, policy_ptrs, options);
  if (run.hardware) {
    const ModelShape& model = run.model;
    const Hierarchy hierarchy(*run.hardware);
    const Placement& placement = scenario.placement;
    const TimingInput input{*cost, hierarchy, model, run.plan, placement, scenario.tensor_parallel};
    for (const auto& result : run.results) {
      try {
        run.timings.push_back(time_request(input, result));
      } catch (const InputError& e) {
        fail_input(scenario.path + ": [hardware] placement", e.what());
      }
    }
  }
  return run;
}

ScenarioDraws run_scenario_draws(const Scenario& scenario, bool keep_masks,
                                 const std::function<void(const std::string&)>& progress) {
  ScenarioDraws draws;
  draws.seeds = scenario.seeds;
  if (draws.seeds.size() <= 1) {
    draws.runs.push_back(run_scenario(scenario, keep_masks, progress));
    return draws;
  }
  for (std::size_t d = 0; d < draws.seeds.size(); ++d) {
    Scenario one = scenario;
    one.seed = draws.seeds[d];
    one.seeds = {one.seed};
    const std::string prefix = "draw " + std::to_string(d + 1) + "/" + std::to_string(draws.seeds.size()) + " (seed " +
                               std::to_string(one.seed) + "): ";
    std::function<void(const std::string&)> tagged;
    if (progress) tagged = [&](const std::string& message) { progress(prefix + message); };
    draws.runs.push_back(run_scenario(one, keep_masks, tagged));
  }
  return draws;
}

}  // namespace kvsim

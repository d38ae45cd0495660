#include "sim/replay/engine.h"

#include <tbb/parallel_for.h>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/shared_results.h"
#include "sim/replay/fidelity.h"
#include "sim/replay/layer_replay.h"
#include "util/error.h"
#include "util/memory.h"

namespace kvsim {

std::vector<std::int64_t> evaluation_positions(const RequestInfo& request, int max_queries) {
  std::vector<std::int64_t> positions;
  const std::int64_t m = request.generated_tokens;
  if (m <= 0 || max_queries <= 0) return positions;
  const std::int64_t count = std::min<std::int64_t>(m, max_queries);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t step = count == 1 ? m - 1 : (i * (m - 1)) / (count - 1);
    positions.push_back(request.prompt_tokens + step);
  }
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  return positions;
}

void check_replay_fits(const ModelShape& model, const RequestInfo& request, const PassPlan& plan,
                       std::size_t num_policies, const std::string& where) {
  // Per (layer, policy): the LayerReplay itself, pass_entries + pass_entry_steps (+ pass_bytes),
  // and one kept position (int32) per token of at least one head group.
  const double per_layer_policy =
      256.0 + 24.0 * static_cast<double>(plan.passes.size()) + 4.0 * static_cast<double>(request.total_tokens());
  const double bytes = per_layer_policy * model.num_layers * static_cast<double>(num_policies);
  check_fits_in_memory(bytes, where,
                       "the replay's bookkeeping (" + std::to_string(model.num_layers) + " layers x " +
                           std::to_string(num_policies) + " policies x " + std::to_string(plan.passes.size()) +
                           " passes)");
}

namespace {

Summary summarise(const std::vector<double>& samples, double tail_q) {
  const double sum = std::accumulate(samples.begin(), samples.end(), 0.0);
  return {sum / static_cast<double>(samples.size()), percentile(samples, tail_q)};
}

void check_queries(const LayerTrace& trace, std::span<const std::int64_t> positions, const std::string& why) {
  for (std::int64_t t : positions) {
    if (trace.query_row(t) < 0) {
      throw InputError(trace.where() + ": no stored query at position " + std::to_string(t) + ", needed by " + why +
                       " (synthesise with matching --chunk-tokens/--window, or record those positions)");
    }
  }
}

// The reconstruction-pass data a policy scores with (kvzip): checked before any use of the layer.
void check_recon_inputs(const LayerTrace& trace, const Policy& policy) {
  if (policy.requires_recon_queries() && trace.recon_queries.empty()) {
    throw InputError(trace.where() + ": no recon_queries dataset, which " + policy.spec() +
                     " scores with (record a context-reconstruction pass, or synthesise one)");
  }
  if (policy.requires_recon_passes() && trace.recon_passes.empty()) {
    throw InputError(trace.where() + ": no recon_passes dataset (trace format 1.1), which " + policy.spec() +
                     " scores with (re-record with --recon, or use scoring=whole)");
  }
}

// Policy::layer_statistic of every traced layer for each policy that uses_layer_statistics() (empty
// elsewhere; no layers at all for the other policies). A pass of its own over the traced layers,
// one layer in memory at a time, because every layer's value is needed before any layer evicts.
std::vector<std::vector<LayerStatistic>> prompt_layer_statistics(const TraceSource& source, const RequestInfo& request,
                                                                 std::span<const Pass> prefill,
                                                                 std::span<const Policy* const> policies,
                                                                 const ReplayOptions& options) {
  const ModelShape& model = source.header().model;
  const bool every_layer_traced = static_cast<int>(source.header().traced_layers.size()) == model.num_layers;
  std::vector<std::vector<LayerStatistic>> statistics(policies.size());
  std::vector<std::size_t> users;
  for (std::size_t p = 0; p < policies.size(); ++p) {
    if (!policies[p]->uses_layer_statistics(every_layer_traced)) continue;
    statistics[p].assign(static_cast<std::size_t>(model.num_layers), LayerStatistic{});
    users.push_back(p);
  }
  if (users.empty() || prefill.empty()) return statistics;
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(request.prompt_tokens));
  std::iota(prompt.begin(), prompt.end(), 0);
  for (int layer : source.header().traced_layers) {
    if (options.progress) options.progress("layer " + std::to_string(layer) + ": layer budget statistics");
    const LayerTrace trace = source.load_layer(request.id, layer);
    for (const std::size_t p : users) check_recon_inputs(trace, *policies[p]);
    const EvictionContext ctx{model, request, layer, &trace, prefill.back(), prefill, nullptr};
    tbb::parallel_for(std::size_t{0}, users.size(), [&](std::size_t u) {
      const std::size_t p = users[u];
      const LayerResidency residency(
          static_cast<std::size_t>(model.num_kv_heads) * static_cast<std::size_t>(policies[p]->kv_copies(model)),
          prompt);
      statistics[p][static_cast<std::size_t>(layer)] = policies[p]->layer_statistic(ctx, residency);
    });
  }
  return statistics;
}

}  // namespace

std::vector<PolicyResult> replay_request(const TraceSource& source, const RequestInfo& request,
                                         std::span<const Policy* const> policies, const ReplayOptions& options) {
  return replay_request(source, request,
                        make_pass_plan(request.prompt_tokens, request.generated_tokens, options.chunk_tokens), policies,
                        options);
}

namespace {

// What the replay adds up per policy over the layers.
struct ReplayTally {
  std::vector<PolicyResult> results;
  std::vector<FidelitySamples> fidelity;
  std::vector<double> needle_sum;
  std::vector<int> needle_heads;

  ReplayTally(const PassPlan& plan, std::span<const Policy* const> policies)
      : results(policies.size()),
        fidelity(policies.size()),
        needle_sum(policies.size(), 0.0),
        needle_heads(policies.size(), 0) {
    for (std::size_t p = 0; p < policies.size(); ++p) {
      results[p].spec = policies[p]->spec();
      results[p].pass_entries.assign(plan.passes.size(), 0);
      results[p].pass_entry_steps.assign(plan.passes.size(), 0);
      if (policies[p]->compresses()) results[p].pass_bytes.assign(plan.passes.size(), 0.0);
    }
  }

  void add_counts(std::size_t p, const LayerReplay& replay) {
    PolicyResult& r = results[p];
    r.footprint_entry_steps += replay.footprint_entry_steps;
    r.footprint_byte_steps += replay.footprint_byte_steps;
    for (std::size_t i = 0; i < replay.pass_bytes.size(); ++i) r.pass_bytes[i] += replay.pass_bytes[i];
    for (std::size_t i = 0; i < replay.pass_entries.size(); ++i) {
      r.pass_entries[i] += replay.pass_entries[i];
      r.pass_entry_steps[i] += replay.pass_entry_steps[i];
    }
  }

  // Needle retention of one traced layer's needle heads. With kv_copies() > 1 (gqa=expand) each
  // copy of a needle head counts as a head.
  void add_needles(std::size_t p, const LayerTrace& trace, const RequestInfo& request, const LayerResidency& kept_sets,
                   int copies) {
    for (int h : trace.needle_heads) {
      for (int c = 0; c < copies; ++c) {
        std::int64_t kept = 0, needles = 0;
        const auto& res =
            kept_sets[static_cast<std::size_t>(h) * static_cast<std::size_t>(copies) + static_cast<std::size_t>(c)];
        for (const NeedleSpan& span : request.needles) {
          needles += span.end - span.begin;
          kept +=
              std::lower_bound(res.begin(), res.end(), span.end) - std::lower_bound(res.begin(), res.end(), span.begin);
        }
        if (needles > 0) {
          needle_sum[p] += static_cast<double>(kept) / static_cast<double>(needles);
          ++needle_heads[p];
        }
      }
    }
  }
};

// Every query position and dataset the policies and the fidelity measurement read from this layer.
void check_layer_inputs(const LayerTrace& trace, std::span<const std::int64_t> eval, const RequestInfo& request,
                        std::span<const Pass> prefill, std::span<const Policy* const> policies) {
  check_queries(trace, eval, "the fidelity measurement (decode positions)");
  for (const Policy* policy : policies) {
    std::vector<std::int64_t> needed;
    policy->add_required_queries(request, prefill, &needed);
    check_queries(trace, needed, policy->spec());
    check_recon_inputs(trace, *policy);
  }
}

// A position is in a layer's kept mask if any copy of its KV head holds it.
std::vector<std::uint8_t> kept_mask(const LayerResidency& kept_sets, int copies, int kv_heads, std::int64_t total) {
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(kv_heads * total), 0);
  for (std::size_t v = 0; v < kept_sets.size(); ++v) {
    const auto h = static_cast<std::int64_t>(v) / copies;
    for (std::int32_t pos : kept_sets[v]) mask[static_cast<std::size_t>(h * total + pos)] = 1;
  }
  return mask;
}

// One traced layer: every policy's replay (in parallel), then fidelity per KV head against the
// layer's own attention, needle retention and the kept mask.
void replay_traced_layer(const TraceSource& source, const RequestInfo& request, const PassPlan& plan, int layer,
                         std::span<const Policy* const> policies, const ReplayOptions& options,
                         std::span<const std::int64_t> eval,
                         const std::vector<std::vector<LayerStatistic>>& layer_statistics, ReplayTally& tally) {
  const ModelShape& model = source.header().model;
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const std::size_t np = policies.size();
  if (options.progress) options.progress("layer " + std::to_string(layer) + ": loading");
  const LayerTrace trace = source.load_layer(request.id, layer);
  check_layer_inputs(trace, eval, request, prefill, policies);
  std::vector<LayerReplay> replays(np);
  SharedResults shared;
  tbb::parallel_for(std::size_t{0}, np, [&](std::size_t p) {
    replays[p] = replay_layer({model, request, plan, layer, &trace, eval, layer_statistics[p], &shared}, *policies[p]);
  });

  std::vector<const LayerReplay*> replay_ptrs;
  for (const auto& r : replays) replay_ptrs.push_back(&r);
  std::vector<std::vector<FidelitySamples>> per_head(static_cast<std::size_t>(model.num_kv_heads),
                                                     std::vector<FidelitySamples>(np));
  if (!eval.empty()) {
    tbb::parallel_for(0, model.num_kv_heads, [&](int h) {
      measure_head_fidelity(model, request, prefill, trace, h, eval, policies, replay_ptrs,
                            per_head[static_cast<std::size_t>(h)]);
    });
  }
  for (std::size_t p = 0; p < np; ++p) {
    tally.add_counts(p, replays[p]);
    FidelitySamples& samples = tally.fidelity[p];
    for (const auto& head : per_head) {
      samples.recall.insert(samples.recall.end(), head[p].recall.begin(), head[p].recall.end());
      samples.output_error.insert(samples.output_error.end(), head[p].output_error.begin(), head[p].output_error.end());
    }
    const int copies = policies[p]->kv_copies(model);
    tally.add_needles(p, trace, request, replays[p].final_residency, copies);
    if (options.keep_masks) {
      tally.results[p].kept_masks[layer] =
          kept_mask(replays[p].final_residency, copies, model.num_kv_heads, request.total_tokens());
    }
  }
}

// Untraced layers: counts only, every (layer, policy) independent.
void count_untraced_layers(const TraceHeader& header, const RequestInfo& request, const PassPlan& plan,
                           std::span<const Policy* const> policies, const ReplayOptions& options,
                           const std::vector<std::vector<LayerStatistic>>& layer_statistics, ReplayTally& tally) {
  const ModelShape& model = header.model;
  const std::size_t np = policies.size();
  std::vector<bool> traced(static_cast<std::size_t>(model.num_layers), false);
  for (int layer : header.traced_layers) traced[static_cast<std::size_t>(layer)] = true;
  std::vector<int> untraced;
  for (int layer = 0; layer < model.num_layers; ++layer) {
    if (!traced[static_cast<std::size_t>(layer)]) untraced.push_back(layer);
  }
  if (options.progress && !untraced.empty()) {
    options.progress(std::to_string(untraced.size()) + " untraced layers: counting");
  }
  std::vector<LayerReplay> counted(untraced.size() * np);
  tbb::parallel_for(std::size_t{0}, counted.size(), [&](std::size_t i) {
    const LayerReplayInput input{model, request, plan, untraced[i / np], nullptr, {}, layer_statistics[i % np]};
    counted[i] = replay_layer(input, *policies[i % np]);
  });
  for (std::size_t i = 0; i < counted.size(); ++i) tally.add_counts(i % np, counted[i]);
}

// Footprint and peak normalised by the full cache, bytes, fidelity summaries, needle retention.
void finish_results(const ModelShape& model, const RequestInfo& request, std::span<const Policy* const> policies,
                    ReplayTally& tally) {
  const std::int64_t total = request.total_tokens();
  const double heads = static_cast<double>(model.num_layers) * model.num_kv_heads;
  const double full_footprint = static_cast<double>(total) * static_cast<double>(total + 1) / 2.0;
  const auto entry_bytes = static_cast<double>(model.entry_bytes());
  for (std::size_t p = 0; p < policies.size(); ++p) {
    PolicyResult& r = tally.results[p];
    r.peak_entries = *std::max_element(r.pass_entries.begin(), r.pass_entries.end());
    if (policies[p]->compresses()) {
      // Byte-weighted: the footprint in units of full-precision entries.
      r.footprint_normalized = r.footprint_byte_steps / (full_footprint * heads * entry_bytes);
      r.peak_bytes = std::llround(*std::max_element(r.pass_bytes.begin(), r.pass_bytes.end()));
    } else {
      r.footprint_normalized = static_cast<double>(r.footprint_entry_steps) / (full_footprint * heads);
      r.peak_bytes = r.peak_entries * model.entry_bytes();
      r.footprint_byte_steps = static_cast<double>(r.footprint_entry_steps) * entry_bytes;
      for (std::int64_t entries : r.pass_entries) r.pass_bytes.push_back(static_cast<double>(entries) * entry_bytes);
    }
    r.peak_normalized = static_cast<double>(r.peak_entries) / (static_cast<double>(total) * heads);
    if (!tally.fidelity[p].recall.empty()) {
      r.attention_recall = summarise(tally.fidelity[p].recall, 5.0);
      r.output_error = summarise(tally.fidelity[p].output_error, 95.0);
    }
    if (tally.needle_heads[p] > 0) r.needle_retention = tally.needle_sum[p] / tally.needle_heads[p];
  }
}

}  // namespace

std::vector<PolicyResult> replay_request(const TraceSource& source, const RequestInfo& request, const PassPlan& plan,
                                         std::span<const Policy* const> policies, const ReplayOptions& options) {
  const std::span<const Pass> prefill(plan.prefill_begin(), plan.prefill_end());
  const std::vector<std::int64_t> eval = evaluation_positions(request, options.max_eval_queries);
  ReplayTally tally(plan, policies);
  const std::vector<std::vector<LayerStatistic>> layer_statistics =
      prompt_layer_statistics(source, request, prefill, policies, options);
  // Traced layers one at a time, so only one layer's K/V/Q is in memory.
  for (int layer : source.header().traced_layers) {
    replay_traced_layer(source, request, plan, layer, policies, options, eval, layer_statistics, tally);
  }
  count_untraced_layers(source.header(), request, plan, policies, options, layer_statistics, tally);
  finish_results(source.header().model, request, policies, tally);
  return std::move(tally.results);
}

}  // namespace kvsim

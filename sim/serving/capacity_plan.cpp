#include "sim/serving/capacity_plan.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "hw/cost_model.h"
#include "util/error.h"

namespace kvsim {

namespace {

constexpr double kRateRange = 1 << 20;  // search the native rate times / divided by at most this

struct Trial {
  bool ok = false;
  ServingResult result;
  ServingMetrics metrics;
};

// Which bound broke and why, from the requests that broke it, e.g. "tpot_p99 (compute)".
std::string slo_breach(const ServingMetrics& m, const Slo& slo) {
  if (m.served < m.requests) return "rejected requests (hbm_capacity)";
  if (slo.tpot_s > 0 && m.has_tpot && m.tpot_s.p99 > slo.tpot_s)
    return "tpot_p99 (" + top_breach_cause(m.tpot_breach_causes) + ")";
  return "ttft_p99 (" + top_breach_cause(m.ttft_breach_causes) + ")";
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

// 126000 -> "126,000"
std::string thousands(std::int64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string seconds_text(double s) { return s < 1 ? fixed(s * 1e3, 1) + " ms" : fixed(s, 2) + " s"; }

}  // namespace

std::vector<Deployment> deployment_grid(const Scenario& s, const std::vector<std::string>& presets,
                                        const std::vector<int>& tensor_parallel,
                                        const std::vector<std::int64_t>& max_batch_tokens,
                                        const std::string& tp_where) {
  std::vector<Deployment> grid;
  for (const std::string& preset : presets) {
    Hardware hw;
    try {
      hw = load_hardware(preset, s.hardware_attach);
    } catch (const InputError& e) {
      fail_input("kvsim plan --hardware " + preset, e.what());
    }
    for (const int tp : tensor_parallel) {
      try {
        (void)CostModel(hw, s.model, tp, preset);  // heads divisible by tp, tp_bandwidth for tp > 1
      } catch (const InputError& e) {
        fail_input(tp_where + " " + std::to_string(tp), e.what());
      }
      for (const std::int64_t tokens : max_batch_tokens) grid.push_back(Deployment{preset, hw, tp, tokens});
    }
  }
  return grid;
}

GpuMemory deployment_memory(const ServingStudy& study, const Deployment& d) {
  const Scenario& s = study.scenario();
  const CostModel cost(d.hardware, s.model, d.tensor_parallel, s.path + ": [hardware]");
  return gpu_memory(d.hardware, s.model, cost.weight_bytes(), s.serving.block_tokens, s.placement.hbm_reserve,
                    d.tensor_parallel);
}

ZeroLoadFloor zero_load_floor(const ServingStudy& study, std::size_t policy, const Deployment& d, const Slo& slo,
                              PlanAxis axis) {
  // One client: each request is sent when the previous one has finished, so it runs alone.
  const ServingResult r = study.simulate(policy, study.workload(), d, 1);
  const ServingMetrics m = summarize_serving(r, slo);
  ZeroLoadFloor f;
  f.ttft_p99_s = m.ttft_s.p99;
  f.tpot_p99_s = m.tpot_s.p99;
  f.has_tpot = m.has_tpot;
  const ModelShape& model = study.model();
  if (r.rejected_over_context > 0) {
    std::int64_t longest = 0;
    for (const ServingRequestResult& q : r.requests) {
      if (q.over_context) longest = std::max(longest, q.prompt_tokens + q.output_tokens);
    }
    f.resource = "context length";
    f.reason = thousands(r.rejected_over_context) + " requests exceed " + model.name + "'s context of " +
               thousands(model.max_position_embeddings) + " tokens (prompt + output up to " + thousands(longest) +
               "), so they are never served";
    return f;
  }
  if (r.rejected > 0) {
    std::int64_t longest = 0;
    for (const ServingRequestResult& q : r.requests) {
      if (q.rejected) longest = std::max(longest, q.prompt_tokens + q.output_tokens);
    }
    f.resource = "KV capacity";
    f.reason = thousands(r.rejected) + " requests (prompt + output up to " + thousands(longest) +
               " tokens) need more KV than the deployment's " +
               thousands(static_cast<std::int64_t>(r.capacity_blocks) * study.scenario().serving.block_tokens) +
               " tokens, so they are never served";
    return f;
  }
  // The slowest request that misses a bound on its own, and what bound its iterations.
  auto explain = [&](bool first_token, double bound_s) {
    const ServingRequestResult* worst = nullptr;
    double worst_s = 0;
    for (const ServingRequestResult& q : r.requests) {
      const std::optional<double> t = first_token ? std::optional<double>(q.ttft_s()) : q.tpot_s();
      if (t && *t > bound_s && *t > worst_s) {
        worst = &q;
        worst_s = *t;
      }
    }
    const std::string cause = top_breach_cause(first_token ? m.ttft_breach_causes : m.tpot_breach_causes);
    f.resource = cause == "link_bandwidth" ? cause : std::string(first_token ? "prefill " : "decode ") + cause;
    const std::string what = first_token ? "TTFT" : "TPOT";
    const double p99 = first_token ? m.ttft_s.p99 : m.tpot_s.p99;
    f.reason =
        what + " p99 of the requests alone is " + seconds_text(p99) + ", over the " + seconds_text(bound_s) + " bound";
    if (worst) {
      f.reason += first_token ? ": a " + thousands(worst->prompt_tokens) + "-token prompt takes " +
                                    seconds_text(worst_s) + " to its first token on the idle deployment"
                              : ": a request of a " + thousands(worst->prompt_tokens) + "-token prompt decodes at " +
                                    seconds_text(worst_s) + " per token on the idle deployment";
    }
  };
  if (slo.ttft_s > 0 && m.ttft_s.p99 > slo.ttft_s) {
    explain(true, slo.ttft_s);
  } else if (slo.tpot_s > 0 && m.has_tpot && m.tpot_s.p99 > slo.tpot_s) {
    explain(false, slo.tpot_s);
  } else {
    f.resource = "arrival bursts";
    f.reason = axis == PlanAxis::kRate
                   ? "each request alone meets the SLO, but requests the trace sends together do not, at any rate "
                     "(rescaling keeps bursts; [workload] arrival_process = poisson smooths them)"
                   : "each request alone meets the SLO";
  }
  return f;
}

bool meets_slo(const ServingMetrics& m, const Slo& slo) {
  if (m.served < m.requests || m.served == 0) return false;
  if (slo.ttft_s > 0 && m.ttft_s.p99 > slo.ttft_s) return false;
  if (slo.tpot_s > 0 && m.has_tpot && m.tpot_s.p99 > slo.tpot_s) return false;
  return true;
}

std::vector<PlanRow> plan_capacity(const ServingStudy& study, const std::vector<std::string>& hardware_presets,
                                   const PlanOptions& options,
                                   const std::function<void(const std::string&)>& progress) {
  const Scenario& s = study.scenario();
  return plan_capacity(study,
                       deployment_grid(s, hardware_presets, {s.tensor_parallel}, {s.serving.max_batch_tokens},
                                       s.path + ": [hardware] tp ="),
                       options, progress);
}

std::vector<PlanRow> plan_capacity(const ServingStudy& study, const std::vector<Deployment>& all_deployments,
                                   const PlanOptions& options, const std::function<void(const std::string&)>& progress,
                                   std::vector<SkippedDeployment>* skipped) {
  const Scenario& s = study.scenario();
  const bool by_rate = options.axis == PlanAxis::kRate;
  const double native_rate = mean_arrival_rate(study.workload());
  if (by_rate && !(native_rate > 0)) {
    fail_input(s.path + ": [workload] arrivals",
               "planning by rate needs arrivals spread over time (use --by concurrency for a closed loop)");
  }
  double mean_output_tokens = 0;
  for (const WorkloadRequest& q : study.workload().requests) mean_output_tokens += static_cast<double>(q.output_tokens);
  mean_output_tokens /= static_cast<double>(study.workload().requests.size());
  // Deployments whose weights leave no KV block are reported, not simulated.
  std::vector<Deployment> deployments;
  std::vector<GpuMemory> memory;
  for (const Deployment& d : all_deployments) {
    const GpuMemory m = deployment_memory(study, d);
    if (m.kv_blocks >= 1) {
      deployments.push_back(d);
      memory.push_back(m);
      continue;
    }
    if (!skipped) continue;
    const bool listed = std::any_of(skipped->begin(), skipped->end(), [&](const SkippedDeployment& k) {
      return k.hardware == d.hardware_name && k.tensor_parallel == d.tensor_parallel;
    });
    if (listed) continue;  // the same GPUs at another token budget
    SkippedDeployment k{d.hardware_name, d.tensor_parallel, m, ""};
    const double left_bytes = m.usable_bytes - m.reserve_bytes;
    k.reason = "the weights of " + s.model.name + " take " + fixed(m.weight_bytes / kGiB, 2) + " GiB per GPU at tp " +
               std::to_string(d.tensor_parallel) +
               (m.weight_bytes > left_bytes ? ", more than the " : ", leaving less than one KV block of the ") +
               fixed(left_bytes / kGiB, 2) + " GiB left of " + fixed(m.usable_bytes / kGiB, 2) + " GiB after the " +
               fixed(m.reserve_bytes / kGiB, 2) + " GiB reserve";
    skipped->push_back(k);
  }
  const std::size_t policies = study.num_policies();
  std::vector<PlanRow> rows(deployments.size() * policies);
  tbb::parallel_for(std::size_t{0}, rows.size(), [&](std::size_t index) {
    const std::size_t h = index / policies, p = index % policies;
    const Deployment& deployment = deployments[h];
    PlanRow& row = rows[index];
    row.spec = study.spec(p);
    row.policy = p;
    row.hardware = deployment.hardware_name;
    row.tensor_parallel = deployment.tensor_parallel;
    row.max_batch_tokens = deployment.max_batch_tokens;
    row.chunk_tokens = s.chunk_tokens;
    row.memory = memory[h];
    row.weight_bytes = row.memory.weight_bytes * deployment.tensor_parallel;
    row.usd_per_gpu_hour = deployment.hardware.usd_per_gpu_hour;
    auto trial = [&](double x) {
      ++row.simulations;
      Trial t;
      t.result = by_rate ? study.simulate(p, with_arrival_rate(study.workload(), x), deployment)
                         : study.simulate(p, study.workload(), deployment, static_cast<int>(x));
      t.metrics = summarize_serving(t.result, options.slo);
      t.ok = meets_slo(t.metrics, options.slo);
      row.trials.push_back({x, t.metrics.ttft_s.p99, t.metrics.tpot_s.p99, t.metrics.has_tpot, t.ok});
      return t;
    };
    // Bracket: lo meets the SLO, hi does not.
    double lo = 0, hi = 0;
    Trial good, bad;
    bool bounded = true;
    // One bisection step: the trial at `mid` becomes the new lower or upper end of the bracket.
    auto narrow = [&](double mid) {
      Trial u = trial(mid);
      if (u.ok) {
        lo = mid;
        good = std::move(u);
      } else {
        hi = mid;
        bad = std::move(u);
      }
    };
    if (by_rate) {
      Trial t = trial(native_rate);
      if (t.ok) {
        lo = native_rate;
        good = std::move(t);
        for (hi = 2 * lo;; hi *= 2) {
          Trial u = trial(hi);
          if (!u.ok) {
            bad = std::move(u);
            break;
          }
          lo = hi;
          good = std::move(u);
          if (hi > native_rate * kRateRange) {
            bounded = false;
            break;
          }
        }
      } else {
        hi = native_rate;
        bad = std::move(t);
        for (lo = hi / 2; lo > native_rate / kRateRange; lo /= 2) {
          Trial u = trial(lo);
          if (u.ok) {
            good = std::move(u);
            break;
          }
          hi = lo;
          bad = std::move(u);
        }
        if (!good.ok) lo = 0;
      }
      while (good.ok && bounded && hi / lo > 1 + options.precision) narrow(std::sqrt(lo * hi));
    } else {
      const double most =
          std::min<double>(options.max_concurrency, static_cast<double>(study.workload().requests.size()));
      Trial t = trial(1);
      if (t.ok) {
        lo = 1;
        good = std::move(t);
        for (hi = 2;; hi = std::min(most, 2 * hi)) {
          Trial u = trial(hi);
          if (!u.ok) {
            bad = std::move(u);
            break;
          }
          lo = hi;
          good = std::move(u);
          if (hi >= most) {
            bounded = false;
            break;
          }
        }
        while (bounded && hi - lo > 1) narrow(std::floor((lo + hi) / 2));
      } else {
        bad = std::move(t);
      }
    }
    row.feasible = good.ok;
    row.max_value = good.ok ? lo : 0;
    const Trial& at = good.ok ? good : bad;
    row.at_max = at.metrics;
    row.peak_kv_bytes = at.result.peak_hbm_kv_bytes;
    row.mean_kv_bytes = at.result.mean_hbm_kv_bytes;
    row.kv_capacity_bytes = static_cast<double>(at.result.capacity_blocks) * at.result.block_bytes;
    row.limit = !bounded ? (by_rate ? "none (SLO met at 2^20 x the trace rate)" : "none (every request at once)")
                         : slo_breach(bad.metrics, options.slo);
    row.max_value_per_gpu = row.max_value / deployment.tensor_parallel;
    if (good.ok) {
      row.output_tokens_per_s = by_rate ? row.max_value * mean_output_tokens : at.metrics.output_tokens_per_s;
      if (row.usd_per_gpu_hour > 0 && row.output_tokens_per_s > 0) {
        row.usd_per_million_output_tokens =
            row.usd_per_gpu_hour * deployment.tensor_parallel / (row.output_tokens_per_s * 3600.0) * 1e6;
      }
    } else {
      row.limit = "SLO unmet at the lowest load: " + slo_breach(bad.metrics, options.slo);
      ++row.simulations;
      row.floor = zero_load_floor(study, p, deployment, options.slo, options.axis);
    }
    if (progress) {
      progress(row.hardware + " tp " + std::to_string(row.tensor_parallel) + " batch " +
               std::to_string(row.max_batch_tokens) + " / " + row.spec + ": " + std::to_string(row.simulations) +
               " simulations");
    }
  });
  return rows;
}

std::vector<std::size_t> best_deployments(const std::vector<PlanRow>& rows) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::size_t>> feasible;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (std::find(order.begin(), order.end(), rows[i].spec) == order.end()) order.push_back(rows[i].spec);
    if (rows[i].feasible) feasible[rows[i].spec].push_back(i);
  }
  std::vector<std::size_t> best;
  for (const std::string& spec : order) {
    const auto it = feasible.find(spec);
    if (it == feasible.end()) continue;
    const std::vector<std::size_t>& candidates = it->second;
    const bool priced = std::all_of(candidates.begin(), candidates.end(),
                                    [&](std::size_t i) { return rows[i].usd_per_million_output_tokens > 0; });
    std::size_t pick = candidates.front();
    for (const std::size_t i : candidates) {
      const bool better = priced ? rows[i].usd_per_million_output_tokens < rows[pick].usd_per_million_output_tokens
                                 : rows[i].max_value_per_gpu > rows[pick].max_value_per_gpu;
      if (better) pick = i;
    }
    best.push_back(pick);
  }
  return best;
}

}  // namespace kvsim

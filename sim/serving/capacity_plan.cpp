#include "sim/serving/capacity_plan.h"

#include <tbb/parallel_for.h>
#include <cmath>

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

}  // namespace

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
  const bool by_rate = options.axis == PlanAxis::kRate;
  const double native_rate = mean_arrival_rate(study.workload());
  if (by_rate && !(native_rate > 0)) {
    fail_input(s.path + ": [workload] arrivals",
               "planning by rate needs arrivals spread over time (use --by concurrency for a closed loop)");
  }
  std::vector<Hardware> hardware;
  for (const std::string& preset : hardware_presets) {
    try {
      hardware.push_back(load_hardware(preset, s.hardware_attach));
    } catch (const InputError& e) {
      fail_input("kvsim plan --hardware " + preset, e.what());
    }
  }
  const std::size_t policies = study.num_policies();
  std::vector<PlanRow> rows(hardware.size() * policies);
  tbb::parallel_for(std::size_t{0}, rows.size(), [&](std::size_t index) {
    const std::size_t h = index / policies, p = index % policies;
    PlanRow& row = rows[index];
    row.spec = study.spec(p);
    row.hardware = hardware_presets[h];
    row.weight_bytes = CostModel(hardware[h], s.model, s.tensor_parallel, s.path + ": [hardware]").weight_bytes();
    auto trial = [&](double x) {
      ++row.simulations;
      Trial t;
      t.result = by_rate ? study.simulate(p, with_arrival_rate(study.workload(), x), hardware[h])
                         : study.simulate(p, study.workload(), hardware[h], static_cast<int>(x));
      t.metrics = summarize_serving(t.result, options.slo);
      t.ok = meets_slo(t.metrics, options.slo);
      return t;
    };
    // Bracket: lo meets the SLO, hi does not.
    double lo = 0, hi = 0;
    Trial good, bad;
    bool bounded = true;
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
      while (good.ok && bounded && hi / lo > 1 + options.precision) {
        const double mid = std::sqrt(lo * hi);
        Trial u = trial(mid);
        if (u.ok) {
          lo = mid;
          good = std::move(u);
        } else {
          hi = mid;
          bad = std::move(u);
        }
      }
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
        while (bounded && hi - lo > 1) {
          const double mid = std::floor((lo + hi) / 2);
          Trial u = trial(mid);
          if (u.ok) {
            lo = mid;
            good = std::move(u);
          } else {
            hi = mid;
            bad = std::move(u);
          }
        }
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
    if (!good.ok) row.limit = "SLO unmet at the lowest load: " + slo_breach(bad.metrics, options.slo);
    if (progress) {
      progress(row.hardware + " / " + row.spec + ": " + std::to_string(row.simulations) + " simulations");
    }
  });
  return rows;
}

}  // namespace kvsim

// Capacity planning against answers known in closed form, and fast (profiled) retention against
// exact (per-request) retention.
#include <gtest/gtest.h>

#include <cmath>

#include "hw/cost_model.h"
#include "sim/serving/capacity_plan.h"
#include "sim/serving/study.h"
#include "traces/model_presets.h"

namespace kvsim {
namespace {

Scenario serving_scenario(const std::string& arrivals) {
  Scenario s;
  s.path = "plan_test.ini";
  s.model_preset = "llama-3.1-8b";
  s.model = load_model_preset("llama-3.1-8b");
  s.model_given = true;
  s.arrivals = arrivals;
  s.traced_layers = "16";
  s.hardware_preset = "h100-sxm";
  s.threads = 2;
  return s;
}

// Memory-bound concurrency: with admission by reservation and identical requests, the highest
// closed-loop concurrency whose p99 TTFT stays at a prefill's time is floor(capacity / per-request
// KV). The first wave of prefills takes under a second; one client more waits a whole request
// (2000 decode steps, ~16 s) and breaks a 3 s TTFT bound.
TEST(Plan, MemoryBoundConcurrencyIsCapacityOverPerRequestKv) {
  Scenario s = serving_scenario(
      "poisson(rate=1, requests=200, prompt_mean=4000, prompt_cv=0, prompt_max=4000, output_mean=2000, output_cv=0, "
      "output_max=2000)");
  s.serving.admission = ServingConfig::Admission::kReserve;
  s.concurrency = 1;
  // Leave room for about 10 requests next to the weights: 16.06 GB of weights + 10 * 5999 tokens
  // * 128 KiB = 7.9 GB of KV in 24 GB of HBM.
  s.placement = parse_placement("hbm_only(hbm_reserve=0.7)", "test");
  const ServingStudy study(s, {});
  PlanOptions options;
  options.axis = PlanAxis::kConcurrency;
  options.slo.ttft_s = 3.0;
  const std::vector<PlanRow> rows = plan_capacity(study, {"h100-sxm"}, options, {});
  ASSERT_EQ(rows.size(), 1u);
  const PlanRow& row = rows[0];
  // Per request: ceil((4000 + 1999) / 16) = 375 blocks of 16 tokens * 131072 bytes per token.
  const double block_bytes = 16.0 * 131072.0;
  const auto capacity_blocks = static_cast<std::int64_t>(std::floor(row.kv_capacity_bytes / block_bytes + 0.5));
  const Hardware h100 = load_hardware("h100-sxm");
  const double expected_capacity =
      std::floor((80e9 * (1.0 - 0.7) - CostModel(h100, s.model, 1, "test").weight_bytes()) / block_bytes);
  EXPECT_EQ(capacity_blocks, static_cast<std::int64_t>(expected_capacity));
  EXPECT_TRUE(row.feasible);
  EXPECT_EQ(row.max_value, std::floor(expected_capacity / 375));
  EXPECT_EQ(row.limit, "ttft_p99 (hbm_capacity)");
}

TEST(Plan, RateSearchBracketsTheSlo) {
  Scenario s = serving_scenario(
      "poisson(rate=2, requests=300, prompt_mean=2000, prompt_cv=0.5, prompt_max=8000, output_mean=100, "
      "output_cv=0.5, output_max=400)");
  s.policy_specs = {"streaming(sinks=4, window=256)"};
  const ServingStudy study(s, {});
  PlanOptions options;
  options.slo.ttft_s = 1.0;
  options.slo.tpot_s = 0.05;
  const std::vector<PlanRow> rows = plan_capacity(study, {"h100-sxm"}, options, {});
  ASSERT_EQ(rows.size(), 2u);
  for (const PlanRow& row : rows) {
    ASSERT_TRUE(row.feasible) << row.spec;
    // The rate found meets the SLO, 5% more does not (bisection to 2%, the SLO is monotone here).
    const Workload at = with_arrival_rate(study.workload(), row.max_value);
    const std::size_t policy = &row - rows.data();
    const ServingMetrics ok = summarize_serving(study.simulate(policy, at, load_hardware("h100-sxm")), options.slo);
    EXPECT_TRUE(meets_slo(ok, options.slo)) << row.spec;
    const Workload above = with_arrival_rate(study.workload(), row.max_value * 1.05);
    const ServingMetrics over =
        summarize_serving(study.simulate(policy, above, load_hardware("h100-sxm")), options.slo);
    EXPECT_FALSE(meets_slo(over, options.slo)) << row.spec;
  }
}

// Fast mode (profiles per prompt-length bucket, rescaled) and exact mode (every request replayed
// at its own lengths) give the same serving metrics on a small workload.
TEST(Plan, FastAndExactRetentionAgree) {
  Scenario s = serving_scenario(
      "poisson(rate=40, requests=60, prompt_mean=1500, prompt_cv=0.6, prompt_max=6000, output_mean=120, "
      "output_cv=0.5, output_max=400)");
  s.chunk_tokens = 512;
  s.policy_specs = {"snapkv(budget=0.2, prefill=post_fill)", "snapkv(budget=0.2, prefill=chunk)",
                    "streaming(sinks=4, window=256)"};
  s.serving.profile_decode_tokens = 64;
  const ServingStudy fast(s, {});
  s.serving.mode = ServingConfig::Mode::kExact;
  const ServingStudy exact(s, {});
  const Hardware hw = load_hardware("h100-sxm");
  for (std::size_t p = 0; p < fast.num_policies(); ++p) {
    const ServingResult a = fast.simulate(p, fast.workload(), hw);
    const ServingResult b = exact.simulate(p, exact.workload(), hw);
    const ServingMetrics ma = summarize_serving(a, {}), mb = summarize_serving(b, {});
    EXPECT_NEAR(a.mean_hbm_kv_bytes / b.mean_hbm_kv_bytes, 1.0, 0.05) << fast.spec(p);
    EXPECT_NEAR(a.peak_hbm_kv_bytes / b.peak_hbm_kv_bytes, 1.0, 0.05) << fast.spec(p);
    EXPECT_NEAR(ma.tpot_s.p50 / mb.tpot_s.p50, 1.0, 0.03) << fast.spec(p);
    EXPECT_NEAR(ma.ttft_s.p50 / mb.ttft_s.p50, 1.0, 0.03) << fast.spec(p);
  }
}

}  // namespace
}  // namespace kvsim

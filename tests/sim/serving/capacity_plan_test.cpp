// Capacity planning against answers known in closed form, and fast (profiled) retention against
// exact (per-request) retention.
#include <gtest/gtest.h>

#include <cmath>

#include "hw/cost_model.h"
#include "sim/serving/capacity_plan.h"
#include "sim/serving/study.h"
#include "traces/model_presets.h"
#include "util/error.h"

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
      std::floor((81559.0 * 1048576 * (1.0 - 0.7) - CostModel(h100, s.model, 1, "test").weight_bytes()) / block_bytes);
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
    // Every simulation of the search is in trials (plan.json's, drawn by tools/plot.py): the one at
    // the chosen rate has its latencies, and the SLO being monotone here, the loads at or below the
    // chosen rate meet it and those above do not.
    ASSERT_EQ(row.trials.size(), static_cast<std::size_t>(row.simulations)) << row.spec;
    int at_max = 0;
    for (const PlanTrial& t : row.trials) {
      EXPECT_EQ(t.meets_slo, t.load <= row.max_value) << row.spec << " at " << t.load;
      EXPECT_EQ(t.meets_slo, t.ttft_p99_s <= 1.0 && t.tpot_p99_s <= 0.05) << row.spec << " at " << t.load;
      if (t.load != row.max_value) continue;
      ++at_max;
      EXPECT_EQ(t.ttft_p99_s, row.at_max.ttft_s.p99);
      EXPECT_EQ(t.tpot_p99_s, row.at_max.tpot_s.p99);
    }
    EXPECT_EQ(at_max, 1) << row.spec;
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

// Llama-3.1-8B in BF16, by hand: 32 layers x (2 x 4096^2 (Q, O) + 2 x 4096 x 1024 (K, V)
// + 3 x 4096 x 14336 (MLP)) + 2 x 4096 x 128256 (embedding, LM head) = 8,029,995,008 parameters.
constexpr double kLlama8bWeightBytes = 16059990016.0;
constexpr double kH100Bytes = 81559.0 * 1048576;  // nvidia-smi's 81,559 MiB
constexpr double kBlockBytes = 16.0 * 131072;     // 16 tokens x 128 KiB (32 layers x 8 KV heads x 128 x 2 x 2 B)

// The memory breakdown of each GPU adds up to its usable capacity (the KV short of it by less than
// one block), and more TP leaves more blocks: floor((tp x 0.9 x 81,559 MiB - weights) / 2 MiB).
TEST(Plan, MemoryBreakdownSumsAndGrowsWithTp) {
  const Scenario s = serving_scenario("poisson(rate=1, requests=4, prompt_mean=100, output_mean=10)");
  const ServingStudy study(s, {});
  const std::vector<Deployment> grid = deployment_grid(s, {"h100-sxm"}, {1, 2, 4}, {2048});
  ASSERT_EQ(grid.size(), 3u);
  const std::int64_t expected_blocks[] = {29043, 65745, 139148};
  for (std::size_t i = 0; i < grid.size(); ++i) {
    const int tp = grid[i].tensor_parallel;
    const GpuMemory m = deployment_memory(study, grid[i]);
    EXPECT_EQ(m.usable_bytes, kH100Bytes);
    EXPECT_DOUBLE_EQ(m.reserve_bytes, 0.1 * kH100Bytes);
    EXPECT_DOUBLE_EQ(m.weight_bytes, kLlama8bWeightBytes / tp);
    EXPECT_EQ(m.kv_blocks, expected_blocks[i]) << "tp " << tp;
    EXPECT_EQ(m.kv_tokens, expected_blocks[i] * 16);
    EXPECT_DOUBLE_EQ(m.kv_bytes, static_cast<double>(expected_blocks[i]) * kBlockBytes / tp);
    const double unused = m.usable_bytes - (m.weight_bytes + m.reserve_bytes + m.kv_bytes);
    EXPECT_GE(unused, 0) << "tp " << tp;
    EXPECT_LT(unused, kBlockBytes / tp) << "tp " << tp;
  }
}

// A deployment whose weights leave no KV block is skipped with its reason; the same GPUs at TP 2 run.
// 10 GiB per GPU: tp 1 has 9 GiB after the reserve for 14.96 GiB of weights; tp 2 has
// floor((2 x 0.9 x 10 GiB - weights) / 2 MiB) = 1558 blocks.
TEST(Plan, SkipsADeploymentThatCannotHoldTheWeights) {
  const Scenario s = serving_scenario(
      "poisson(rate=2, requests=40, prompt_mean=500, prompt_cv=0, prompt_max=500, output_mean=20, output_cv=0, "
      "output_max=20)");
  const ServingStudy study(s, {});
  std::vector<Deployment> grid = deployment_grid(s, {"h100-sxm"}, {1, 2}, {2048});
  for (Deployment& d : grid) {
    for (Tier& t : d.hardware.tiers) {
      if (t.name == "hbm") t.capacity_bytes = 10.0 * 1024 * 1024 * 1024;
    }
  }
  PlanOptions options;
  options.slo.ttft_s = 5;
  std::vector<SkippedDeployment> skipped;
  const std::vector<PlanRow> rows = plan_capacity(study, grid, options, {}, &skipped);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].tensor_parallel, 1);
  EXPECT_EQ(skipped[0].memory.kv_blocks, -3050);
  EXPECT_NE(skipped[0].reason.find("14.96 GiB per GPU at tp 1, more than the 9.00 GiB left"), std::string::npos)
      << skipped[0].reason;
  ASSERT_EQ(rows.size(), 1u);  // `full` at tp 2
  EXPECT_EQ(rows[0].tensor_parallel, 2);
  EXPECT_EQ(rows[0].memory.kv_blocks, 1558);
}

// Load per GPU is the load over the TP degree, and the cost per million output tokens is the
// price of the group's GPU-hours over the output tokens it serves in an hour at that rate.
TEST(Plan, RatePerGpuAndCost) {
  const Scenario s = serving_scenario(
      "poisson(rate=2, requests=60, prompt_mean=1000, prompt_cv=0, prompt_max=1000, output_mean=50, output_cv=0, "
      "output_max=50)");
  const ServingStudy study(s, {});
  std::vector<Deployment> grid = deployment_grid(s, {"h100-sxm"}, {1, 2}, {2048});
  grid[1].hardware.usd_per_gpu_hour = 3.0;
  PlanOptions options;
  options.slo.ttft_s = 0.5;
  options.slo.tpot_s = 0.05;
  options.precision = 0.1;
  const std::vector<PlanRow> rows = plan_capacity(study, grid, options, {});
  ASSERT_EQ(rows.size(), 2u);
  for (const PlanRow& row : rows) {
    ASSERT_TRUE(row.feasible) << row.tensor_parallel;
    EXPECT_EQ(row.limit.rfind("none", 0), std::string::npos) << row.limit;  // a bracketed rate
    EXPECT_DOUBLE_EQ(row.max_value_per_gpu, row.max_value / row.tensor_parallel);
    EXPECT_DOUBLE_EQ(row.output_tokens_per_s, row.max_value * 50);  // every request has 50 output tokens
  }
  EXPECT_EQ(rows[0].usd_per_million_output_tokens, 0);  // no price
  EXPECT_NEAR(rows[1].usd_per_million_output_tokens, 3.0 * 2 / (rows[1].max_value * 50 * 3600) * 1e6, 1e-9);
  // Not every feasible row has a price: the best is the most load per GPU.
  const std::vector<std::size_t> best = best_deployments(rows);
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0], rows[0].max_value_per_gpu >= rows[1].max_value_per_gpu ? 0u : 1u);
}

TEST(Plan, BestDeploymentIsTheCheapestWhenAllArePriced) {
  std::vector<PlanRow> rows(4);
  const char* specs[] = {"full", "full", "streaming", "streaming"};
  const double usd[] = {2.0, 1.5, 1.0, 0.0};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    rows[i].spec = specs[i];
    rows[i].feasible = i != 3;
    rows[i].max_value_per_gpu = static_cast<double>(10 - i);
    rows[i].usd_per_million_output_tokens = usd[i];
  }
  EXPECT_EQ(best_deployments(rows), (std::vector<std::size_t>{1, 2}));
}

// A 32,000-token prompt alone takes over a second to prefill on one H100 (about 8e14 FLOPs at 70%
// of 989 TFLOPS), so no rate meets a 0.5 s TTFT bound: the floor names prefill compute.
TEST(Plan, InfeasibleFloorNamesPrefillCompute) {
  const Scenario s = serving_scenario(
      "poisson(rate=0.5, requests=6, prompt_mean=32000, prompt_cv=0, prompt_max=32000, output_mean=8, "
      "output_cv=0, output_max=8)");
  const ServingStudy study(s, {});
  PlanOptions options;
  options.slo.ttft_s = 0.5;
  const std::vector<PlanRow> rows = plan_capacity(study, {"h100-sxm"}, options, {});
  ASSERT_EQ(rows.size(), 1u);
  const PlanRow& row = rows[0];
  EXPECT_FALSE(row.feasible);
  ASSERT_TRUE(row.floor.has_value());
  EXPECT_EQ(row.floor->resource, "prefill compute");
  EXPECT_GT(row.floor->ttft_p99_s, 1.0);
  EXPECT_LT(row.floor->ttft_p99_s, 3.0);
  EXPECT_NE(row.floor->reason.find("a 32,000-token prompt takes"), std::string::npos) << row.floor->reason;
}

// A TP degree that does not divide the model's 32 query heads is refused naming --tp, before any run.
TEST(Plan, RefusesATpThatDoesNotDivideTheHeads) {
  const Scenario s = serving_scenario("poisson(rate=1, requests=4, prompt_mean=100, output_mean=10)");
  try {
    (void)deployment_grid(s, {"h100-sxm"}, {2, 3}, {2048});
    FAIL() << "tp 3 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("kvsim plan --tp 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvsim

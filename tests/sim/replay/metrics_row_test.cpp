// policy_metrics(): the one flattening behind summary.json and the sweep tables.
#include "sim/replay/metrics_row.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace kvsim {
namespace {

const Metric* find(const std::vector<Metric>& metrics, const std::string& column) {
  const auto it = std::find_if(metrics.begin(), metrics.end(), [&](const Metric& m) { return m.column() == column; });
  return it == metrics.end() ? nullptr : &*it;
}

ScenarioRun one_policy_run() {
  ScenarioRun run;
  PolicyResult r;
  r.spec = "full";
  r.footprint_entry_steps = 16;
  r.footprint_normalized = 16.0 / 21.0;
  r.peak_entries = 4;
  r.attention_recall = Summary{0.9, 0.5};
  run.results.push_back(r);
  return run;
}

TEST(MetricsRow, WithoutHardwareTimeMetricsAreListedButAbsent) {
  const std::vector<Metric> m = policy_metrics(one_policy_run(), 0);
  ASSERT_NE(find(m, "footprint_normalized"), nullptr);
  EXPECT_TRUE(find(m, "footprint_normalized")->present);
  EXPECT_DOUBLE_EQ(find(m, "footprint_normalized")->real, 16.0 / 21.0);
  EXPECT_EQ(find(m, "footprint_entry_steps")->kind, MetricKind::integer);
  EXPECT_EQ(find(m, "footprint_entry_steps")->integer, 16);
  EXPECT_TRUE(find(m, "attention_recall_p5")->present);
  EXPECT_EQ(find(m, "attention_recall_p5")->path, (std::vector<std::string>{"attention_recall", "p5"}));
  for (const char* absent : {"output_error_mean", "output_error_p95", "needle_retention", "ttft_s_p50", "tpot_s_p99",
                             "e2e_s_p90", "prefill_s", "fits_hbm"}) {
    ASSERT_NE(find(m, absent), nullptr) << absent << " has a column in every scenario";
    EXPECT_FALSE(find(m, absent)->present) << absent << " is absent, never 0";
  }
  EXPECT_EQ(find(m, "bytes_read_hbm"), nullptr) << "per-tier metrics only with hardware";
}

TEST(MetricsRow, WithHardwarePerTierAndLinkMetrics) {
  ScenarioRun run = one_policy_run();
  PolicyTiming t;
  t.decode_s = 0.5;
  t.passes.resize(3);
  t.ttft_s = {1, 2, 3};
  t.fits_hbm = false;
  t.tiers = {TierTraffic{"hbm", 10, 20, 30, 40, 50, 60}, TierTraffic{"cxl", 1, 2, 3, 4, 5, 6}};
  t.links = {LinkTraffic{"pcie", 7, 8, 9}};
  run.timings.push_back(t);
  const std::vector<Metric> m = policy_metrics(run, 0);
  EXPECT_EQ(find(m, "ttft_s_p90")->real, 2);
  EXPECT_TRUE(find(m, "tpot_s_p50")->present) << "something was decoded";
  EXPECT_EQ(find(m, "fits_hbm")->kind, MetricKind::boolean);
  EXPECT_EQ(find(m, "fits_hbm")->integer, 0);
  EXPECT_EQ(find(m, "bytes_written_cxl")->real, 2);
  EXPECT_EQ(find(m, "peak_read_bandwidth_bytes_per_s_hbm")->real, 60);
  EXPECT_EQ(find(m, "links_per_tp_rank_pcie_mean_bandwidth_bytes_per_s")->real, 8);
  EXPECT_EQ(find(m, "links_per_tp_rank_pcie_bytes")->path,
            (std::vector<std::string>{"links_per_tp_rank", "pcie", "bytes"}));
  std::vector<std::string> columns;
  for (const Metric& x : m) columns.push_back(x.column());
  std::vector<std::string> sorted = columns;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "column names are unique";
}

// Three draws of one policy: footprint the same in each, recall and peak varying.
ScenarioDraws three_draws() {
  ScenarioDraws draws;
  draws.seeds = {4, 5, 6};
  const double recall[] = {0.8, 0.9, 1.0};
  const std::int64_t peak[] = {4, 5, 7};
  for (int d = 0; d < 3; ++d) {
    ScenarioRun run = one_policy_run();
    run.results[0].attention_recall = Summary{recall[d], 0.5};
    run.results[0].peak_entries = peak[d];
    PolicyTiming t;
    t.fits_hbm = d != 1;
    run.timings.push_back(t);
    draws.runs.push_back(run);
  }
  return draws;
}

TEST(MetricsRow, OneDrawIsThePlainList) {
  ScenarioDraws one;
  one.seeds = {1};
  one.runs.push_back(one_policy_run());
  const std::vector<Metric> a = policy_metrics(one, 0), b = policy_metrics(one_policy_run(), 0);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].column(), b[i].column());
    EXPECT_EQ(a[i].real, b[i].real);
  }
  EXPECT_EQ(find(a, "attention_recall_mean_ci95"), nullptr) << "one draw has no interval";
}

TEST(MetricsRow, DrawsGiveMeansAndStudentTIntervals) {
  const std::vector<Metric> m = policy_metrics(three_draws(), 0);
  // recall 0.8, 0.9, 1.0: mean 0.9, sd 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3).
  EXPECT_NEAR(find(m, "attention_recall_mean")->real, 0.9, 1e-15);
  EXPECT_NEAR(find(m, "attention_recall_mean_ci95")->real, 4.302652729749464 * 0.1 / std::sqrt(3.0), 1e-12);
  EXPECT_EQ(find(m, "attention_recall_mean_ci95")->path, (std::vector<std::string>{"attention_recall", "mean_ci95"}));
  EXPECT_EQ(find(m, "attention_recall_p5")->real, 0.5);
  EXPECT_EQ(find(m, "attention_recall_p5_ci95")->real, 0.0) << "the same in every draw";
  // Integers: the footprint is exact; a varying peak is its rounded mean (16 / 3) with an interval.
  EXPECT_EQ(find(m, "footprint_entry_steps")->integer, 16);
  EXPECT_EQ(find(m, "footprint_entry_steps_ci95")->real, 0.0);
  EXPECT_EQ(find(m, "peak_entries")->kind, MetricKind::integer) << "a column keeps its kind";
  EXPECT_EQ(find(m, "peak_entries")->integer, 5);
  EXPECT_NEAR(find(m, "peak_entries_ci95")->real, 4.302652729749464 * std::sqrt(7.0 / 3.0) / std::sqrt(3.0), 1e-12);
  EXPECT_EQ(find(m, "fits_hbm")->integer, 0) << "fits only if it fits in every draw";
  EXPECT_EQ(find(m, "fits_hbm_ci95"), nullptr);
  EXPECT_FALSE(find(m, "needle_retention")->present);
  EXPECT_FALSE(find(m, "needle_retention_ci95")->present) << "absent stays absent";
  // Each interval follows its metric, so summary.json nests it beside the mean.
  for (std::size_t i = 0; i + 1 < m.size(); ++i) {
    if (m[i + 1].column().ends_with("_ci95")) {
      EXPECT_EQ(m[i + 1].column(), m[i].column() + "_ci95");
    }
  }
}

}  // namespace
}  // namespace kvsim

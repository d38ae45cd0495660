// policy_metrics(): the one flattening behind summary.json and the sweep tables.
#include "sim/replay/metrics_row.h"

#include <gtest/gtest.h>

#include <algorithm>

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

}  // namespace
}  // namespace kvsim

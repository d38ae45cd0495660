#include "hw/hardware.h"

#include <gtest/gtest.h>

#include <fstream>

#include "hw/hierarchy.h"
#include "util/error.h"
#include "util/units.h"

namespace kvsim {
namespace {

TEST(Units, ParsesDecimalAndBinaryPrefixes) {
  EXPECT_DOUBLE_EQ(parse_quantity("80 GB", UnitKind::kBytes, "x"), 80e9);
  EXPECT_DOUBLE_EQ(parse_quantity("96 GiB", UnitKind::kBytes, "x"), 96.0 * 1073741824.0);
  EXPECT_DOUBLE_EQ(parse_quantity("3.35 TB/s", UnitKind::kBytesPerSecond, "x"), 3.35e12);
  EXPECT_DOUBLE_EQ(parse_quantity("64GB/s", UnitKind::kBytesPerSecond, "x"), 64e9);
  EXPECT_DOUBLE_EQ(parse_quantity("250 ns", UnitKind::kSeconds, "x"), 250e-9);
  EXPECT_DOUBLE_EQ(parse_quantity("1.5 ms", UnitKind::kSeconds, "x"), 1.5e-3);
  EXPECT_DOUBLE_EQ(parse_quantity("989 TFLOPS", UnitKind::kFlopsPerSecond, "x"), 989e12);
  EXPECT_EQ(format_quantity(3.35e12, UnitKind::kBytesPerSecond), "3.35 TB/s");
  EXPECT_EQ(format_quantity(250e-9, UnitKind::kSeconds), "250 ns");
}

void expect_unit_error(const std::string& text, UnitKind kind, const std::string& fragment) {
  try {
    parse_quantity(text, kind, "f.ini: tier.hbm.capacity");
    FAIL() << text;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f.ini: tier.hbm.capacity"), std::string::npos) << e.what();
  }
}

TEST(Units, RejectsMissingOrWrongUnits) {
  expect_unit_error("80", UnitKind::kBytes, "missing unit");
  expect_unit_error("80 GB/s", UnitKind::kBytes, "wrong unit 'GB/s'");
  expect_unit_error("3 XB/s", UnitKind::kBytesPerSecond, "unknown unit prefix");
  expect_unit_error("fast", UnitKind::kBytesPerSecond, "expected a number");
  expect_unit_error("10 minutes", UnitKind::kSeconds, "wrong unit");
}

std::string write(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const std::string kDevice =
    "[device]\nname = toy\nflops_bf16 = 100 TFLOPS\ncompute_efficiency = 0.5\nmemory_efficiency = 0.5\n";
const std::string kHbm =
    "[tier.hbm]\nkind = hbm\ncapacity = 10 GB\nread_bandwidth = 1 TB/s\nwrite_bandwidth = 1 TB/s\n";

std::string hardware_error(const std::string& text) {
  const std::string path = write("hw.ini", text);
  try {
    load_hardware(path);
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hw.ini"), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error for\n" << text;
  return "";
}

TEST(Hardware, BadFilesNameTheKey) {
  EXPECT_NE(
      hardware_error(kDevice +
                     "[tier.hbm]\nkind = hbm\ncapacity = 10 GB\nread_bandwidth = -1 TB/s\nwrite_bandwidth = 1 TB/s\n")
          .find("read_bandwidth"),
      std::string::npos);
  EXPECT_NE(
      hardware_error(kDevice +
                     "[tier.hbm]\nkind = hbm\ncapacity = 0 GB\nread_bandwidth = 1 TB/s\nwrite_bandwidth = 1 TB/s\n")
          .find("capacity"),
      std::string::npos);
  EXPECT_NE(hardware_error(kDevice + kHbm + "[link.x]\nfrom = hbm\nto = dram\nbandwidth = 1 GB/s\n")
                .find("unknown tier 'dram'"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice +
                           "[tier.hbm]\nkind = hbm\ncapacity = 10\nread_bandwidth = 1 TB/s\nwrite_bandwidth = 1 TB/s\n")
                .find("tier.hbm.capacity: missing unit"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + kHbm + "bandwith = 3 TB/s\n").find("tier.hbm.bandwith: unknown key"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + kHbm + "[gpu]\nx = 1\n").find("unknown section"), std::string::npos);
  EXPECT_NE(hardware_error("[device]\nname = toy\nflops_bf16 = 100 TFLOPS\ncompute_efficiency = lots\n" + kHbm)
                .find("compute_efficiency"),
            std::string::npos);
  EXPECT_NE(hardware_error("[device]\nname = toy\n" + kHbm).find("flops_bf16"), std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "layer_overhead = -5 us\n" + kHbm).find("layer_overhead"), std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "layer_overhead = 30\n" + kHbm).find("layer_overhead: missing unit"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "activation_efficiency = 1.5\n" + kHbm).find("activation_efficiency"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "allreduce_tp1 = 30 us, 250 GB/s\n" + kHbm).find("worker count N >= 2"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "allreduce_tpx = 30 us, 250 GB/s\n" + kHbm).find("allreduce_tp<N>"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "allreduce_tp4 = 30 us\n" + kHbm).find("'<latency>, <bandwidth>'"),
            std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "allreduce_tp4 = 30 us, 250 GB\n" + kHbm).find("wrong unit"), std::string::npos);
  EXPECT_NE(hardware_error(kDevice + "cpu_overhead = 1\n" + kHbm).find("cpu_overhead: missing unit"),
            std::string::npos);
  EXPECT_THROW(load_hardware("no-such-gpu"), InputError);
}

TEST(Hardware, ReadsKernelAllReduceAndCpuTerms) {
  const Hardware hw = load_hardware(write("terms.ini", kDevice +
                                                           "activation_efficiency = 0.56\n"
                                                           "allreduce_tp4 = 30.6 us, 253 GB/s\n"
                                                           "allreduce_tp2 = 16.6 us, 282 GB/s\n"
                                                           "cpu_overhead = 0.85 ms\n"
                                                           "cpu_overhead_tp = 0.87 ms\n"
                                                           "cpu_overhead_per_request = 41.7 us\n" +
                                                           kHbm));
  EXPECT_DOUBLE_EQ(hw.device.activation_efficiency, 0.56);
  ASSERT_EQ(hw.device.allreduce.size(), 2u);
  EXPECT_EQ(hw.device.allreduce[0].workers, 4);
  EXPECT_DOUBLE_EQ(hw.device.allreduce[0].latency_s, 30.6e-6);
  EXPECT_DOUBLE_EQ(hw.device.allreduce[0].bytes_per_s, 253e9);
  EXPECT_EQ(hw.device.allreduce[1].workers, 2);
  EXPECT_DOUBLE_EQ(hw.device.cpu_overhead_s, 0.85e-3);
  EXPECT_DOUBLE_EQ(hw.device.cpu_overhead_tp_s, 0.87e-3);
  EXPECT_DOUBLE_EQ(hw.device.cpu_overhead_per_request_s, 41.7e-6);
}

// Presets state the capacity a GPU reports (nvidia-smi), not the datasheet's round decimal figure;
// [cost] prices a GPU for kvsim plan.
TEST(Hardware, UsableCapacityWithItsUnitAndAPrice) {
  EXPECT_DOUBLE_EQ(load_hardware("h100-sxm").tier("hbm").capacity_bytes, 81559.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(load_hardware("a100-80g").tier("hbm").capacity_bytes, 80.0 * 1024 * 1024 * 1024);
  const std::string gib = kDevice +
                          "[tier.hbm]\nkind = hbm\ncapacity = 80GiB\nread_bandwidth = 1 TB/s\n"
                          "write_bandwidth = 1 TB/s\n[cost]\nusd_per_gpu_hour = 2.5\nsource = a price list\n";
  const Hardware hw = load_hardware(write("priced.ini", gib));
  EXPECT_DOUBLE_EQ(hw.tier("hbm").capacity_bytes, 85899345920.0);
  EXPECT_DOUBLE_EQ(hw.usd_per_gpu_hour, 2.5);
  EXPECT_EQ(hw.cost_source, "a price list");
  EXPECT_EQ(load_hardware("h100-sxm").usd_per_gpu_hour, 0);  // presets carry no price
  for (const char* price : {"0", "inf", "nan", "-2"}) {
    EXPECT_NE(hardware_error(kDevice + kHbm + "[cost]\nusd_per_gpu_hour = " + price + "\n").find("finite number > 0"),
              std::string::npos)
        << price;
  }
  EXPECT_NE(hardware_error(kDevice + kHbm + "[cost]\ncurrency = EUR\n").find("cost keys"), std::string::npos);
}

TEST(Hardware, PresetsLoadWithAttachments) {
  for (const auto& name : hardware_preset_names()) {
    const Hardware hw = load_hardware(name);
    EXPECT_TRUE(hw.has_tier("hbm")) << name;
  }
  const Hardware hw = load_hardware("h100-sxm", {"host-ddr5", "cxl-gen5"});
  EXPECT_DOUBLE_EQ(hw.tier("hbm").read_bytes_per_s, 3.35e12);
  EXPECT_DOUBLE_EQ(hw.tier("cxl").capacity_bytes, 256e9);
  EXPECT_DOUBLE_EQ(hw.device.layer_overhead_s, 20e-6);  // vidur's H100 small-kernel times (docs/validation.md)
  EXPECT_DOUBLE_EQ(hw.device.activation_efficiency, 0.56);
  EXPECT_EQ(hw.device.allreduce.size(), 3u);
  EXPECT_DOUBLE_EQ(load_hardware(write("plain.ini", kDevice + kHbm)).device.layer_overhead_s, 0.0);
  EXPECT_THROW(load_hardware("gh200", {"host-ddr5"}), InputError);  // gh200 has its own host memory
}

// A toy graph with known answers: a -(10 GB/s)- s -(40 GB/s)- b, and s -(5 GB/s)- c; d is isolated.
Hierarchy toy() {
  Hardware hw;
  hw.device.name = "toy";
  for (const char* name : {"a", "s", "b", "c", "d"}) hw.tiers.push_back(Tier{name, "dram", 1e9, 1e9, 1e9, 0, ""});
  hw.links = {Link{"as", "a", "s", 10e9, 1e-6}, Link{"sb", "s", "b", 40e9, 0}, Link{"sc", "s", "c", 5e9, 2e-6}};
  return Hierarchy(hw);
}

TEST(Hierarchy, PathsAndBottlenecks) {
  const Hierarchy h = toy();
  const auto path = h.path("b", "a");
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(path[0].link, 1);
  EXPECT_FALSE(path[0].forward);  // b -> s runs against the link's from/to
  EXPECT_EQ(path[1].link, 0);
  EXPECT_DOUBLE_EQ(h.bottleneck_bytes_per_s("a", "b"), 10e9);
  EXPECT_DOUBLE_EQ(h.bottleneck_bytes_per_s("b", "c"), 5e9);
  EXPECT_TRUE(h.path("a", "a").empty());
  try {
    h.path("a", "d");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no path of links from tier 'a' to tier 'd'"), std::string::npos);
  }
}

TEST(Hierarchy, ConcurrentTransfersShareLinks) {
  const Hierarchy h = toy();
  // One transfer: 20 GB over the 10 GB/s link = 2 s, plus 1 us latency.
  EXPECT_NEAR(h.transfer_time_s({{"a", "b", 20e9}}), 2.0 + 1e-6, 1e-12);
  // Two transfers a->b and a->c share link as: 30 GB through it at 10 GB/s = 3 s; the c leg
  // carries 10 GB at 5 GB/s = 2 s, so link as is the bottleneck; latency is the worst path (3 us).
  std::vector<LinkLoad> loads;
  EXPECT_NEAR(h.transfer_time_s({{"a", "b", 20e9}, {"a", "c", 10e9}}, &loads), 3.0 + 3e-6, 1e-12);
  ASSERT_EQ(loads.size(), 3u);
  EXPECT_DOUBLE_EQ(loads[0].bytes, 30e9);
  // Opposite directions do not compete: a->b and b->a, 20 GB each, still 2 s.
  EXPECT_NEAR(h.transfer_time_s({{"a", "b", 20e9}, {"b", "a", 20e9}}), 2.0 + 1e-6, 1e-12);
}

TEST(Hierarchy, LinkEfficiencyScalesDrainNotLatency) {
  Hierarchy plain = toy();
  Hardware hw = plain.hardware();
  hw.links[0].efficiency = 0.5;  // link as: 10 GB/s line rate, 5 GB/s achieved
  const Hierarchy h(hw);
  // 20 GB at 5 GB/s = 4 s, plus the unchanged 1 us latency; the 5 GB/s leg to c now ties with as.
  EXPECT_NEAR(h.transfer_time_s({{"a", "b", 20e9}}), 4.0 + 1e-6, 1e-12);
  EXPECT_DOUBLE_EQ(h.bottleneck_bytes_per_s("a", "b"), 5e9);
  EXPECT_DOUBLE_EQ(h.bottleneck_bytes_per_s("b", "c"), 5e9);
}

TEST(HardwareFile, PresetPcieLinksCarryMeasuredEfficiency) {
  // 0.78 = vLLM's ~50 GB/s one-way DMA over PCIe Gen5 x16's 64 GB/s (docs/validation.md O1).
  const Hardware hw = load_hardware("h100-sxm");
  ASSERT_FALSE(hw.links.empty());
  EXPECT_DOUBLE_EQ(hw.links[0].efficiency, 0.78);
  EXPECT_NEAR(hw.links[0].effective_bytes_per_s(), 49.92e9, 1e3);
}

}  // namespace
}  // namespace kvsim

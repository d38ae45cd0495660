#include "hw/cost_model.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/test_support.h"
#include "util/error.h"

namespace kvsim {
namespace {

Hardware toy_device() {
  Hardware hw;
  hw.device = Device{"toy", 100e12, 0, 0.5, 0.8, 50e9, "hbm"};
  hw.tiers.push_back(Tier{"hbm", "hbm", 80e9, 2e12, 1e12, 0, ""});
  return hw;
}

ModelShape toy_model() { return testing_support::toy_dense_model(); }

TEST(CostModel, ParameterCountsByHand) {
  const CostModel cost(toy_device(), toy_model(), 1, "t");
  // Wq 64x64 + Wk,Wv 2x64x32 + Wo 64x64 + MLP 3x64x128 = 4096 + 4096 + 4096 + 24576.
  EXPECT_DOUBLE_EQ(cost.linear_params_per_layer(), 36864.0);
  // (2 layers x 36864 + LM head 6400 + embedding 6400) x 2 bytes.
  EXPECT_DOUBLE_EQ(cost.weight_bytes(), (2 * 36864.0 + 2 * 6400.0) * 2);
}

TEST(CostModel, ComputeBoundPrefillByHand) {
  const CostModel cost(toy_device(), toy_model(), 1, "t");
  PassWork w;
  w.tokens = 1e6;  // a huge chunk: compute dominates
  w.logits_tokens = 1;
  w.attention_entry_steps = 1e9;
  w.kv_written_entries = w.tokens * 4;
  const PassCost c = cost.pass_cost(w);
  const double flops = 2 * 1e6 * 2 * 36864.0 + 2 * 6400.0 + 4 * 16 * 2 * 1e9;
  EXPECT_DOUBLE_EQ(c.flops, flops);
  EXPECT_DOUBLE_EQ(c.compute_s, flops / (100e12 * 0.5));
  const double read = (2 * 36864.0 + 6400.0) * 2;
  const double write = w.kv_written_entries * 64;  // entry = 2 x 16 x 2 bytes
  EXPECT_DOUBLE_EQ(c.memory_s, read / (2e12 * 0.8) + write / (1e12 * 0.8));
  EXPECT_EQ(c.bound, Bound::kCompute);
  EXPECT_STREQ(bound_name(c.bound), "compute");
  EXPECT_DOUBLE_EQ(c.time_s, c.compute_s);
}

TEST(CostModel, BandwidthBoundDecodeByHand) {
  const CostModel cost(toy_device(), toy_model(), 1, "t");
  PassWork w;
  w.tokens = 1;
  w.logits_tokens = 1;
  w.kv_read_entries = 1e9;  // a long cache: reading it dominates
  w.attention_entry_steps = 1e9 + 4;
  w.kv_written_entries = 4;
  const PassCost c = cost.pass_cost(w);
  const double read = (2 * 36864.0 + 6400.0) * 2 + 1e9 * 64;
  EXPECT_DOUBLE_EQ(c.hbm_read_bytes, read);
  EXPECT_DOUBLE_EQ(c.time_s, read / (2e12 * 0.8) + 4 * 64 / (1e12 * 0.8));
  EXPECT_EQ(c.bound, Bound::kMemory);
  EXPECT_STREQ(bound_name(c.bound), "memory");
}

TEST(CostModel, TensorParallelSplitsWorkAndAddsAllReduce) {
  const CostModel one(toy_device(), toy_model(), 1, "t");
  const CostModel two(toy_device(), toy_model(), 2, "t");
  PassWork w;
  w.tokens = 1000;
  w.logits_tokens = 1;
  const PassCost a = one.pass_cost(w);
  const PassCost b = two.pass_cost(w);
  EXPECT_DOUBLE_EQ(b.compute_s, a.compute_s / 2);
  // 2 layers x 2 all-reduces x 2(2-1)/2 x (1000 x 64 x 2 bytes) / 50 GB/s.
  EXPECT_DOUBLE_EQ(b.communication_s, 2 * 2 * 1.0 * 128000.0 / 50e9);
}

TEST(CostModel, LayerOverheadIsAddedOncePerLayerAndNotSplitByTp) {
  Hardware hw = toy_device();
  hw.device.layer_overhead_s = 10e-6;
  const CostModel one(hw, toy_model(), 1, "t");
  const CostModel two(hw, toy_model(), 2, "t");
  const CostModel none(toy_device(), toy_model(), 1, "t");
  PassWork w;
  w.tokens = 1;
  w.logits_tokens = 1;
  w.kv_written_entries = 4;
  const PassCost a = one.pass_cost(w);
  const PassCost b = two.pass_cost(w);
  // The toy model has 2 layers: 2 x 10 us on top of the roofline, on every rank.
  EXPECT_DOUBLE_EQ(a.overhead_s, 20e-6);
  EXPECT_DOUBLE_EQ(b.overhead_s, 20e-6);
  EXPECT_DOUBLE_EQ(a.time_s, std::max(a.compute_s, a.memory_s) + 20e-6);
  EXPECT_DOUBLE_EQ(b.time_s, std::max(b.compute_s, b.memory_s) + b.communication_s + 20e-6);
  EXPECT_DOUBLE_EQ(a.time_s - none.pass_cost(w).time_s, 20e-6);
  EXPECT_DOUBLE_EQ(none.pass_cost(w).overhead_s, 0.0);  // absent from the file: no overhead
}

TEST(CostModel, SmallKernelsStreamActivationsAboveTheirFloor) {
  Hardware hw = toy_device();
  hw.device.layer_overhead_s = 10e-6;
  hw.device.activation_efficiency = 0.5;  // 0.5 x 2 TB/s read bandwidth = 1e12 B/s
  const CostModel one(hw, toy_model(), 1, "t");
  const CostModel two(hw, toy_model(), 2, "t");
  // Toy layer: h 64, q width 64, kv width 32, ffn 128. Per token: 20 x 64 + 4 x (64 + 32) + 6 x 128
  // = 2432 bytes at TP 1; 20 x 64 + (4 x 96 + 6 x 128) / 2 = 1856 at TP 2 (norms and adds are replicated).
  EXPECT_DOUBLE_EQ(one.activation_bytes_per_layer(1000), 2432000.0);
  EXPECT_DOUBLE_EQ(two.activation_bytes_per_layer(1000), 1856000.0);
  EXPECT_DOUBLE_EQ(one.small_kernels_layer_s(1000), 10e-6);          // 2.432 us of traffic: the floor
  EXPECT_DOUBLE_EQ(one.small_kernels_layer_s(1e5), 2.432e8 / 1e12);  // 243.2 us
  PassWork w;
  w.tokens = 1e5;
  w.logits_tokens = 1;
  const PassCost c = one.pass_cost(w);
  EXPECT_DOUBLE_EQ(c.overhead_s, 2 * 243.2e-6);  // 2 layers
  EXPECT_DOUBLE_EQ(c.time_s, std::max(c.compute_s, c.memory_s) + c.overhead_s);
  hw.device.activation_efficiency = 0;  // absent: the floor alone, at any size
  EXPECT_DOUBLE_EQ(CostModel(hw, toy_model(), 1, "t").small_kernels_layer_s(1e5), 10e-6);
}

TEST(CostModel, MeasuredAllReduceFitReplacesTheRingWhereGiven) {
  Hardware hw = toy_device();
  hw.device.allreduce.push_back({2, 5e-6, 100e9});
  const CostModel two(hw, toy_model(), 2, "t");
  const CostModel four(hw, toy_model(), 4, "t");
  // 1000 tokens x 64 x 2 bytes = 128 kB per all-reduce.
  EXPECT_DOUBLE_EQ(two.allreduce_s(128000), 5e-6 + 128000 / 100e9);
  EXPECT_DOUBLE_EQ(four.allreduce_s(128000), 2 * 3.0 / 4 * 128000 / 50e9);  // no TP 4 entry: ring over 50 GB/s
  EXPECT_DOUBLE_EQ(CostModel(hw, toy_model(), 1, "t").allreduce_s(128000), 0.0);
  PassWork w;
  w.tokens = 1000;
  w.logits_tokens = 1;
  // 2 layers x 2 all-reduces x 6.28 us.
  EXPECT_DOUBLE_EQ(two.pass_cost(w).communication_s, 4 * (5e-6 + 1.28e-6));
}

TEST(CostModel, CpuOverheadGrowsWithTheBatchAndIsSerial) {
  Hardware hw = toy_device();
  hw.device.cpu_overhead_s = 1e-3;
  hw.device.cpu_overhead_tp_s = 0.5e-3;
  hw.device.cpu_overhead_per_request_s = 40e-6;
  const CostModel one(hw, toy_model(), 1, "t");
  const CostModel two(hw, toy_model(), 2, "t");
  EXPECT_DOUBLE_EQ(one.cpu_overhead_s(16), 1e-3 + 16 * 40e-6);           // 1.64 ms
  EXPECT_DOUBLE_EQ(two.cpu_overhead_s(16), 1e-3 + 0.5e-3 + 16 * 40e-6);  // 2.14 ms
  PassWork w;
  w.tokens = 16;
  w.logits_tokens = 16;
  w.requests = 16;
  const PassCost c = one.pass_cost(w);
  EXPECT_DOUBLE_EQ(c.cpu_s, 1.64e-3);
  EXPECT_DOUBLE_EQ(c.time_s, std::max(c.compute_s, c.memory_s) + c.cpu_s);
  EXPECT_DOUBLE_EQ(CostModel(toy_device(), toy_model(), 1, "t").pass_cost(w).cpu_s, 0.0);  // absent: none
}

TEST(CostModel, NeedsDenseShape) {
  ModelShape m = toy_model();
  m.vocab_size = 0;
  EXPECT_THROW(CostModel(toy_device(), m, 1, "t"), InputError);
  Hardware no_link = toy_device();
  no_link.device.tp_bytes_per_s = 0;
  EXPECT_THROW(CostModel(no_link, toy_model(), 2, "t"), InputError);
}

}  // namespace
}  // namespace kvsim

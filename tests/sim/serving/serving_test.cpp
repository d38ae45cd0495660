// The serving simulator against queueing theory, hand-counted memory, and its own invariants.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "hw/cost_model.h"
#include "hw/hardware.h"
#include "hw/hierarchy.h"
#include "sim/placement.h"
#include "sim/serving/metrics.h"
#include "sim/serving/scheduler.h"
#include "sim/serving/study.h"
#include "traces/model_presets.h"
#include "traces/workload.h"
#include "util/error.h"

namespace kvsim {
namespace {

constexpr std::int64_t kForever = std::numeric_limits<std::int64_t>::max() / 4;

RetentionCurve keep_everything(std::int64_t prompt) { return RetentionCurve(prompt, {}, kForever, 1.0); }

// A hand-made workload: (arrival_s, prompt, output) per request.
Workload make_workload(const std::vector<std::tuple<double, std::int64_t, std::int64_t>>& rows) {
  Workload w;
  w.source = "test";
  for (const auto& [t, p, o] : rows) {
    WorkloadRequest r;
    r.id = static_cast<std::int64_t>(w.requests.size());
    r.arrival_s = t;
    r.prompt_tokens = p;
    r.output_tokens = o;
    w.requests.push_back(r);
  }
  return w;
}

struct Rig {
  ModelShape model = load_model_preset("llama-3.1-8b");
  Hardware hardware = load_hardware("h100-sxm", {"host-ddr5"});
  CostModel cost{hardware, model, 1, "test"};
  Hierarchy hierarchy{hardware};

  ServingInput input(const ServingConfig& config, const Workload& w, double hbm_reserve = 0.1) const {
    Placement placement;
    placement.hbm_reserve = hbm_reserve;
    ServingInput in{config, w, 0, cost, hierarchy, model, 1, placement, {}, false, {}};
    in.curve = [&w](std::size_t i) { return keep_everything(w.requests[i].prompt_tokens); };
    return in;
  }
  // The hbm_reserve that leaves exactly `blocks` KV blocks of `block_tokens` next to the weights.
  double reserve_for_blocks(std::int64_t blocks, std::int64_t block_tokens) const {
    const double hbm = hardware.tier(hardware.device.compute_tier).capacity_bytes;
    const double kv = (static_cast<double>(blocks) + 0.5) * static_cast<double>(block_tokens * model.bytes_per_token());
    return 1.0 - (kv + cost.weight_bytes()) / hbm;
  }
};

TEST(RetentionCurve, ResidentPeakAndRescale) {
  // Prompt 100 in chunks of 40: evictions to 10 after 40, to 20 after 80, to 25 after 100; then
  // decode keeps 25 + growth (slope 1), measured to 110.
  const RetentionCurve c(100, {{40, 10}, {80, 20}, {100, 25}}, 110, 1.0);
  EXPECT_DOUBLE_EQ(c.resident_after(39), 39);
  EXPECT_DOUBLE_EQ(c.resident_after(40), 10);
  EXPECT_DOUBLE_EQ(c.resident_after(79), 49);
  EXPECT_DOUBLE_EQ(c.resident_after(100), 25);
  EXPECT_DOUBLE_EQ(c.resident_after(105), 30);
  EXPECT_DOUBLE_EQ(c.resident_after(120), 45);  // extrapolated with slope 1
  EXPECT_EQ(c.next_knot_after(0), 40);
  EXPECT_EQ(c.next_knot_after(40), 80);
  EXPECT_EQ(c.next_knot_after(100), -1);
  // Just before each eviction: 40, 10 + 40 = 50, 20 + 20 = 40; at 105: 30.
  EXPECT_DOUBLE_EQ(c.peak_resident(105), 50);
  // Knots at 40/80/100 are the ends of 40-token chunks of a 100-token prompt. At twice the prompt,
  // evictions follow the new chunk ends 40, 80, ..., 200 and keep the fraction kept at the same
  // relative position x: 40 -> 0.25 (x=0.2, before the first measured knot at x=0.4), 200 -> 0.25.
  const RetentionCurve d = c.rescaled(200, 40);
  EXPECT_EQ(d.next_knot_after(0), 40);
  EXPECT_EQ(d.next_knot_after(160), 200);
  EXPECT_DOUBLE_EQ(d.resident_after(40), 10);
  EXPECT_DOUBLE_EQ(d.resident_after(120), 120 * 0.25);  // x = 0.6: between 0.25 (x 0.4) and 0.25 (x 0.8)
  EXPECT_DOUBLE_EQ(d.resident_after(200), 50);
  EXPECT_DOUBLE_EQ(d.resident_after(205), 55);  // decode growth kept
  // Evicting only after the prompt: the new curve evicts only after the new prompt.
  const RetentionCurve post(100, {{100, 30}}, 110, 1.0);
  const RetentionCurve post2 = post.rescaled(150, 40);
  EXPECT_EQ(post2.next_knot_after(0), 150);
  EXPECT_DOUBLE_EQ(post2.resident_after(150), 45);
}

TEST(RetentionCurve, FlatDecodeSlopeEvictsEveryStepPastTheMeasuredRange) {
  const RetentionCurve c(10, {{10, 4}, {11, 4}, {12, 4}}, 12, 0.0);
  EXPECT_DOUBLE_EQ(c.resident_after(50), 4);
  EXPECT_EQ(c.next_knot_after(20), 21);
  EXPECT_DOUBLE_EQ(c.peak_resident(50), 10);  // the prompt before its eviction
}

// With one request at a time and identical requests, the server is M/D/1: the mean wait in queue
// is rho * S / (2 (1 - rho)) (Pollaczek-Khinchine with zero service variance).
TEST(Serving, QueueingDelayMatchesMD1) {
  const Rig rig;
  ServingConfig config;
  config.max_running = 1;
  config.max_batch_tokens = 4096;
  // Service time of one 1024-token prefill that emits the only output token.
  const Workload probe = make_workload({{0.0, 1024, 1}});
  const ServingResult one = simulate_serving(rig.input(config, probe));
  const double service_s = one.busy_s;
  ASSERT_GT(service_s, 0);
  for (const double rho : {0.3, 0.6, 0.8}) {
    const double rate = rho / service_s;
    const std::string spec = "poisson(rate=" + std::to_string(rate) +
                             ", requests=60000, prompt_mean=1024, prompt_cv=0, prompt_max=1024, output_mean=1, "
                             "output_cv=0, output_max=1)";
    const Workload w = make_synthetic_workload(spec, 7, "test");
    const ServingResult r = simulate_serving(rig.input(config, w));
    double wait = 0;
    for (const auto& q : r.requests) wait += q.queue_s();
    wait /= static_cast<double>(r.requests.size());
    // The realised load of the sampled arrivals, not the nominal one.
    const double realised_rho = service_s * static_cast<double>(w.requests.size() - 1) / w.duration_s();
    const double theory = realised_rho * service_s / (2 * (1 - realised_rho));
    EXPECT_NEAR(wait / theory, 1.0, 0.05) << "rho " << rho << ": simulated " << wait << " s, M/D/1 " << theory << " s";
    EXPECT_NEAR(r.busy_s / static_cast<double>(r.iterations) / service_s, 1.0, 1e-9);
  }
}

// Blocks by hand: a 100-token prompt with 16-token blocks takes 7 blocks, 8 once it has 113 tokens.
TEST(Serving, BlocksAreCountedPerRequestAndReturned) {
  const Rig rig;
  ServingConfig config;
  const Workload w = make_workload({{0.0, 100, 14}});
  bool consistent = true;
  std::int64_t most_used = 0;
  ServingInput in = rig.input(config, w);
  in.after_event = [&](const BlockPool& pool) {
    consistent = consistent && pool.consistent();
    most_used = std::max(most_used, pool.private_blocks());
  };
  const ServingResult r = simulate_serving(in);
  EXPECT_TRUE(consistent);
  // Decode step j processes token 100 + j: the 13th step holds 113 entries = 8 blocks.
  EXPECT_EQ(most_used, 8);
  EXPECT_DOUBLE_EQ(r.requests[0].peak_hbm_kv_bytes, 8 * r.block_bytes);
  EXPECT_EQ(r.iterations, 14);  // one prefill, 13 decodes
  EXPECT_EQ(r.output_tokens, 14);
}

// Under memory pressure, preemption by recompute or by swap never loses a request, every block
// comes back, and what is swapped out is swapped back in.
TEST(Serving, PreemptionConservesMemoryAndRequests) {
  const Rig rig;
  for (const auto preemption : {ServingConfig::Preemption::kRecompute, ServingConfig::Preemption::kSwap}) {
    ServingConfig config;
    config.preemption = preemption;
    config.swap_tier = "dram";
    config.max_batch_tokens = 512;
    const Workload w = make_synthetic_workload(
        "poisson(rate=200, requests=300, prompt_mean=600, prompt_cv=0.5, prompt_max=2000, output_mean=300, "
        "output_cv=0.5, output_max=900)",
        3, "test");
    ServingInput in = rig.input(config, w, rig.reserve_for_blocks(400, config.block_tokens));
    std::int64_t checks = 0, broken = 0;
    in.after_event = [&](const BlockPool& pool) {
      ++checks;
      if (!pool.consistent()) ++broken;
    };
    const ServingResult r = simulate_serving(in);
    EXPECT_EQ(r.capacity_blocks, 400);
    EXPECT_EQ(broken, 0) << checks << " checks";
    EXPECT_GT(r.preemptions, 0) << "the case must exercise preemption";
    std::int64_t outputs = 0, prompts = 0;
    for (const auto& q : r.requests) {
      prompts += q.prompt_tokens;
      EXPECT_FALSE(q.rejected);
      EXPECT_GE(q.finish_s, q.first_token_s);
      outputs += q.output_tokens;
    }
    EXPECT_EQ(r.output_tokens, outputs);
    EXPECT_LE(r.peak_hbm_kv_bytes, 400 * r.block_bytes);
    if (preemption == ServingConfig::Preemption::kSwap) {
      EXPECT_GT(r.swap_out_bytes, 0);
      EXPECT_DOUBLE_EQ(r.swap_in_bytes, r.swap_out_bytes);
      EXPECT_GT(r.link_bytes.size(), 0u);
    } else {
      EXPECT_GT(r.prompt_tokens_computed, prompts);  // recompute prefills preempted requests again
    }
  }
}

// Admission by reservation with a closed loop of clients: the running batch is capped at
// floor(capacity / blocks per request), the memory-bound concurrency.
TEST(Serving, ReserveAdmissionCapsConcurrencyAtCapacityOverPerRequestKv) {
  const Rig rig;
  ServingConfig config;
  config.admission = ServingConfig::Admission::kReserve;
  std::vector<std::tuple<double, std::int64_t, std::int64_t>> rows(200, {0.0, 1000, 200});
  const Workload w = make_workload(rows);
  // 1000 + 199 tokens at the last decode -> ceil(1199 / 16) = 75 blocks per request.
  ServingInput in = rig.input(config, w, rig.reserve_for_blocks(75 * 7 + 40, 16));
  in.concurrency = 32;
  const ServingResult r = simulate_serving(in);
  EXPECT_EQ(r.capacity_blocks, 75 * 7 + 40);
  EXPECT_EQ(r.peak_running, 7);
  EXPECT_EQ(r.preemptions, 0);
  in.concurrency = 5;  // below the cap: all clients run
  EXPECT_EQ(simulate_serving(in).peak_running, 5);
}

// Llama-3.1-8B's context is 131072 tokens: a request whose prompt and output exceed it is refused at
// the door, counted apart; in a closed loop its client sends the next request instead.
TEST(Serving, RequestLongerThanTheContextIsRefused) {
  const Rig rig;
  ASSERT_EQ(rig.model.max_position_embeddings, 131072);
  ServingConfig config;
  const Workload w = make_workload({{0.0, 131000, 73}, {0.0, 131000, 72}, {0.5, 100, 10}});
  const ServingResult r = simulate_serving(rig.input(config, w));
  EXPECT_TRUE(r.requests[0].rejected);
  EXPECT_TRUE(r.requests[0].over_context);
  EXPECT_FALSE(r.requests[1].over_context) << "131072 tokens exactly fit";
  EXPECT_FALSE(r.requests[2].rejected);
  EXPECT_EQ(r.rejected_over_context, 1);

  ServingInput closed = rig.input(config, w);
  closed.concurrency = 1;
  const ServingResult c = simulate_serving(closed);
  EXPECT_TRUE(c.requests[0].over_context);
  EXPECT_EQ(c.requests[1].first_scheduled_s, 0.0) << "the client's next request is sent at once";
  EXPECT_FALSE(c.requests[2].rejected);
}

// A request that cannot fit an empty cache is rejected, not retried forever.
TEST(Serving, RequestLargerThanTheCacheIsRejected) {
  const Rig rig;
  ServingConfig config;
  const Workload w = make_workload({{0.0, 100, 10}, {0.0, 5000, 10}, {0.1, 100, 10}});
  const ServingResult r = simulate_serving(rig.input(config, w, rig.reserve_for_blocks(100, 16)));
  EXPECT_FALSE(r.requests[0].rejected);
  EXPECT_TRUE(r.requests[1].rejected);
  EXPECT_FALSE(r.requests[2].rejected);
  EXPECT_EQ(r.rejected, 1);
}

// placement offload: the DRAM tier adds its blocks to the pool; a request larger than the compute
// tier is served from both, and every pass streams the context beyond the compute tier back in.
// By hand, 16-token blocks, 10 in HBM, a 320-token prompt and 3 output tokens:
//   prefill: 20 blocks, 10 pushed out (written), nothing attended before the pass (nothing fetched);
//   decode 1: 321 entries -> 21 blocks, 1 more written; context 320 = 20 blocks, 11 cold: 11 fetched;
//   decode 2: 322 entries still fit 21 blocks; context 321 = 21 blocks: 11 fetched.
struct OffloadRig {
  Rig rig;
  Hardware hardware;
  Hierarchy hierarchy;
  CostModel cost;
  explicit OffloadRig(double dram_blocks)
      : hardware(
            with_dram_capacity(rig.hardware, dram_blocks * 16.0 * static_cast<double>(rig.model.bytes_per_token()))),
        hierarchy(hardware),
        cost(hardware, rig.model, 1, "test") {}
  static Hardware with_dram_capacity(Hardware hw, double bytes) {
    for (Tier& t : hw.tiers) {
      if (t.name == "dram") t.capacity_bytes = bytes;
    }
    return hw;
  }
  ServingResult run(const Workload& w, const std::string& placement_spec) const {
    ServingConfig config;
    Placement placement = parse_placement(placement_spec, "test");
    placement.hbm_reserve = rig.reserve_for_blocks(10, 16);
    ServingInput in{config, w, 0, cost, hierarchy, rig.model, 1, placement, {}, false, {}};
    in.curve = [&w](std::size_t i) { return keep_everything(w.requests[i].prompt_tokens); };
    return simulate_serving(in);
  }
};

TEST(Serving, OffloadTierHoldsWhatTheComputeTierCannotAndIsStreamedEveryPass) {
  const OffloadRig o(15.5);
  const Workload w = make_workload({{0.0, 320, 3}});
  const ServingResult hbm_only = o.run(w, "hbm_only");
  EXPECT_TRUE(hbm_only.requests[0].rejected) << "21 blocks do not fit 10";

  const ServingResult r = o.run(w, "offload(tier=dram)");
  ASSERT_FALSE(r.requests[0].rejected);
  EXPECT_EQ(r.capacity_blocks, 25);
  EXPECT_EQ(r.offload_capacity_blocks, 15);
  const double block = r.block_bytes;
  EXPECT_DOUBLE_EQ(r.peak_hbm_kv_bytes, 10 * block);
  EXPECT_DOUBLE_EQ(r.peak_offload_bytes, 11 * block);
  EXPECT_DOUBLE_EQ(r.offload_read_bytes, 22 * block);
  EXPECT_DOUBLE_EQ(r.offload_write_bytes, 11 * block);
  EXPECT_EQ(r.iterations, 3);
  // Serialised transfers (prefetch=none): per pass, the larger direction over the path's slowest
  // link plus the path's latency: (10 + 11 + 11) blocks and three latencies.
  double latency_s = 0;
  for (const Hierarchy::Hop& hop : o.hierarchy.path("hbm", "dram"))
    latency_s += o.hardware.links[static_cast<std::size_t>(hop.link)].latency_s;
  const double expected_s = 32 * block / o.hierarchy.bottleneck_bytes_per_s("hbm", "dram") + 3 * latency_s;
  EXPECT_NEAR(r.link_s, expected_s, 1e-9 * expected_s);
  double link_bytes = 0;
  for (const auto& [name, bytes] : r.link_bytes) link_bytes = std::max(link_bytes, bytes);
  EXPECT_DOUBLE_EQ(link_bytes, 33 * block) << "22 blocks in and 11 out cross every link of the path";
  EXPECT_DOUBLE_EQ(r.requests[0].offload_fetched_bytes, 22 * block) << "alone: every fetch is its own";

  // Prefetching a layer ahead hides these transfers behind the passes (a decode pass of an 8B
  // model reads 16 GB of weights; 11 blocks are 23 MB).
  const ServingResult prefetched = o.run(w, "offload(tier=dram, prefetch=layer)");
  EXPECT_EQ(prefetched.link_s, 0.0);
  EXPECT_NEAR(prefetched.busy_s, r.busy_s - r.link_s, 1e-12 * r.busy_s);
  EXPECT_DOUBLE_EQ(prefetched.offload_read_bytes, r.offload_read_bytes);

  // Admission counts both tiers: 32 blocks exceed 10 + 15.
  const ServingResult too_big = o.run(make_workload({{0.0, 500, 3}}), "offload(tier=dram)");
  EXPECT_TRUE(too_big.requests[0].rejected);
}

// Two requests share the link (issue 18 acceptance): 100-token prompts, 3 outputs each, 7 blocks
// each (113 tokens fit), 14 in all over 10 HBM blocks. Iteration 1 prefills both and writes the 4
// blocks beyond HBM to DRAM; iterations 2 and 3 decode both, each attending its 7 blocks, so the
// 4 cold blocks are fetched once per iteration for the batch and split 7:7 between the two. Per
// iteration the transfer is the larger direction over the slowest link plus the path's latency:
// 4 + 4 + 4 blocks and three latencies, serialised with the passes.
TEST(Serving, TwoRequestsShareTheOffloadLinkByHand) {
  const OffloadRig o(15.5);
  const ServingResult r = o.run(make_workload({{0.0, 100, 3}, {0.0, 100, 3}}), "offload(tier=dram)");
  ASSERT_FALSE(r.requests[0].rejected || r.requests[1].rejected);
  const double block = r.block_bytes;
  EXPECT_EQ(r.iterations, 3);
  EXPECT_DOUBLE_EQ(r.peak_offload_bytes, 4 * block);
  EXPECT_DOUBLE_EQ(r.offload_write_bytes, 4 * block);
  EXPECT_DOUBLE_EQ(r.offload_read_bytes, 8 * block);
  EXPECT_DOUBLE_EQ(r.requests[0].offload_fetched_bytes, 4 * block);
  EXPECT_DOUBLE_EQ(r.requests[1].offload_fetched_bytes, 4 * block);
  ASSERT_FALSE(r.link_busier_direction_bytes.empty());
  for (const auto& [link, bytes] : r.link_busier_direction_bytes) {
    EXPECT_DOUBLE_EQ(bytes, 8 * block) << link << ": 8 blocks fetched up, 4 written down";
  }
  double latency_s = 0;
  for (const Hierarchy::Hop& hop : o.hierarchy.path("hbm", "dram"))
    latency_s += o.hardware.links[static_cast<std::size_t>(hop.link)].latency_s;
  const double expected_s = 12 * block / o.hierarchy.bottleneck_bytes_per_s("hbm", "dram") + 3 * latency_s;
  EXPECT_NEAR(r.link_s, expected_s, 1e-9 * expected_s);
  // Both take part in every iteration, so each one's time includes all of the link time.
  EXPECT_NEAR(r.requests[0].prefill_time.link_s + r.requests[0].decode_time.link_s, expected_s, 1e-9 * expected_s);
  EXPECT_NEAR(r.requests[1].finish_s, r.busy_s, 1e-12 * r.busy_s);
}

TEST(Serving, OffloadToATierTheHardwareLacksIsRefused) {
  const OffloadRig o(15.5);
  EXPECT_THROW(o.run(make_workload({{0.0, 100, 3}}), "offload(tier=cxl)"), InputError);
}

// Two requests with the same first two 512-token prefix blocks: the second one finds them cached
// and prefills only the rest; the shared blocks are stored once.
TEST(Serving, PrefixBlocksAreSharedAndStoredOnce) {
  const Rig rig;
  ServingConfig config;
  Workload w = make_workload({{0.0, 1500, 50}, {1.0, 1300, 50}});
  w.prefix_block_tokens = 512;
  w.requests[0].prefix_blocks = {11, 12, 13};
  w.requests[1].prefix_blocks = {11, 12, 99};
  ServingInput in = rig.input(config, w);
  in.prefix_caching = true;
  std::int64_t most_cached = 0;
  bool consistent = true;
  in.after_event = [&](const BlockPool& pool) {
    most_cached = std::max(most_cached, pool.cached_blocks());
    consistent = consistent && pool.consistent();
  };
  const ServingResult r = simulate_serving(in);
  EXPECT_TRUE(consistent);
  EXPECT_EQ(r.requests[0].cached_prompt_tokens, 0);
  EXPECT_EQ(r.requests[1].cached_prompt_tokens, 1024);
  EXPECT_EQ(r.prompt_tokens_computed, 1500 + (1300 - 1024));
  // Request 0 shares its two full blocks (1500 / 512 = 2); request 1 adds none of its own (its
  // third block holds 276 tokens, not a full one): 2 * 32 cache blocks.
  EXPECT_EQ(most_cached, 2 * 512 / 16);
}

// The prefix cache's lower tier by hand: 4 compute-tier blocks, a 3-block lower tier, 2 blocks a hash.
TEST(BlockPool, ReclaimedPrefixBlocksMoveDownLruAndLoadBack) {
  BlockPool pool(4);
  pool.set_lower_tiers({3});
  const std::vector<std::uint64_t> hashes{1, 2};
  ASSERT_TRUE(pool.allocate(4));
  pool.insert_prefix(hashes, 2, 1);
  pool.unpin_prefix(hashes, 2, 2);  // both unused; hash 1 first in LRU order (same tick: lower hash first)
  ASSERT_TRUE(pool.allocate(2));    // reclaims hash 1 into the lower tier
  EXPECT_EQ(pool.lower_tiers()[0].used_blocks, 2);
  ASSERT_TRUE(pool.allocate(2));  // reclaims hash 2: the lower tier (3) pushes hash 1 out to make room
  EXPECT_EQ(pool.lower_tiers()[0].used_blocks, 2);
  EXPECT_EQ(pool.lower_tiers()[0].written_blocks, 4);
  EXPECT_EQ(pool.lower_tiers()[0].peak_used_blocks, 2);
  EXPECT_TRUE(pool.consistent());
  pool.release(4);
  EXPECT_EQ(pool.pin_prefix(std::vector<std::uint64_t>{2}, 3), 1) << "hash 2 is loaded back";
  EXPECT_EQ(pool.lower_tiers()[0].hits, 1);
  EXPECT_EQ(pool.lower_tiers()[0].loaded_blocks, 2);
  EXPECT_EQ(pool.lower_tiers()[0].used_blocks, 0);
  EXPECT_EQ(pool.cached_blocks(), 2);
  EXPECT_EQ(pool.pin_prefix(std::vector<std::uint64_t>{1}, 4), 0) << "hash 1 was dropped";
  EXPECT_EQ(pool.compute_tier_hits(), 0);
  EXPECT_TRUE(pool.consistent());
}

// Serving with prefix_cache = hbm+dram: a third request whose prefix the compute tier reclaimed in
// between finds it in DRAM and loads it instead of recomputing it; with hbm alone it recomputes.
TEST(Serving, PrefixEvictedFromTheComputeTierIsLoadedBackFromTheLowerTier) {
  const Rig rig;
  // Request 0 caches two 512-token prefix blocks (64 KV blocks); request 1, with another prefix,
  // needs all 100 blocks, so the unused cached prefix is reclaimed; request 2 repeats request 0's.
  Workload w = make_workload({{0.0, 1100, 2}, {10.0, 1500, 100}, {20.0, 1100, 2}});
  w.prefix_block_tokens = 512;
  w.requests[0].prefix_blocks = {11, 12, 13};
  w.requests[1].prefix_blocks = {21, 22, 23};
  w.requests[2].prefix_blocks = {11, 12, 13};
  auto run = [&](const std::vector<std::string>& lower) {
    ServingConfig config;
    config.prefix_cache_lower_tiers = lower;
    ServingInput in = rig.input(config, w, rig.reserve_for_blocks(100, 16));
    in.prefix_caching = true;
    bool consistent = true;
    in.after_event = [&](const BlockPool& pool) { consistent = consistent && pool.consistent(); };
    ServingResult r = simulate_serving(in);
    EXPECT_TRUE(consistent);
    return r;
  };
  const ServingResult hbm = run({});
  EXPECT_EQ(hbm.requests[2].cached_prompt_tokens, 0) << "reclaimed and dropped: recomputed";
  const ServingResult tiered = run({"dram"});
  EXPECT_EQ(tiered.requests[2].cached_prompt_tokens, 1024);
  EXPECT_EQ(tiered.prompt_tokens_computed, hbm.prompt_tokens_computed - 1024);
  ASSERT_EQ(tiered.prefix_tiers.size(), 1u);
  EXPECT_EQ(tiered.prefix_tiers[0].hits, 2);
  EXPECT_DOUBLE_EQ(tiered.prefix_tiers[0].loaded_bytes, 64 * tiered.block_bytes);
  ASSERT_EQ(tiered.requests[2].prefix_loaded_bytes.size(), 1u);
  EXPECT_DOUBLE_EQ(tiered.requests[2].prefix_loaded_bytes[0], 64 * tiered.block_bytes) << "the load is request 2's";
  EXPECT_DOUBLE_EQ(tiered.requests[0].prefix_loaded_bytes[0], 0.0);
  EXPECT_GE(tiered.prefix_tiers[0].written_bytes, 64 * tiered.block_bytes);
  EXPECT_GT(tiered.prefix_load_s, 0.0);
  // 64 blocks of 2 MiB over PCIe cost less than prefilling 1024 tokens of an 8B model.
  EXPECT_LT(tiered.requests[2].ttft_s(), hbm.requests[2].ttft_s());
}

// Issue 18 §3: what broke the SLO is read from the requests that broke it. Three equal prompts at
// once, one at a time (service S each): the second waits S and works S (TTFT 2S), the third waits
// 2S (TTFT 3S). With the bound at 1.5 S the second is late for its own prefill (compute: 1024
// tokens of Llama-3.1-8B on an H100 take ~16 TFLOP, ~5x the weight read) and the third for its
// queue; at 2.5 S only the third. A batch-1 decode step reads the weights: hbm_bandwidth.
TEST(ServingMetrics, SloBreachesAreBlamedOnWhatTheLateRequestsWaitedFor) {
  const Rig rig;
  ServingConfig config;
  config.max_running = 1;
  const ServingResult one = simulate_serving(rig.input(config, make_workload({{0.0, 1024, 1}})));
  const double service_s = one.busy_s;
  const ServingResult r =
      simulate_serving(rig.input(config, make_workload({{0.0, 1024, 1}, {0.0, 1024, 1}, {0.0, 1024, 1}})));
  ASSERT_NEAR(r.requests[2].ttft_s(), 3 * service_s, 1e-9);
  EXPECT_EQ(slo_breach_cause(r.requests[1], true), "compute");
  EXPECT_EQ(slo_breach_cause(r.requests[2], true), "queueing");
  EXPECT_FALSE(r.requests[2].waited_for_memory);
  Slo slo;
  slo.ttft_s = 1.5 * service_s;
  ServingMetrics m = summarize_serving(r, slo);
  EXPECT_EQ(m.ttft_breach_causes, (std::map<std::string, std::int64_t>{{"compute", 1}, {"queueing", 1}}));
  slo.ttft_s = 2.5 * service_s;
  m = summarize_serving(r, slo);
  EXPECT_EQ(m.ttft_breach_causes, (std::map<std::string, std::int64_t>{{"queueing", 1}}));
  EXPECT_EQ(top_breach_cause(m.ttft_breach_causes), "queueing");
  EXPECT_EQ(top_breach_cause({}), "none");

  // Decode alone: every step reads the weights.
  const ServingResult decode = simulate_serving(rig.input(config, make_workload({{0.0, 128, 64}})));
  EXPECT_EQ(slo_breach_cause(decode.requests[0], false), "hbm_bandwidth");

  // Room for one request's blocks only: the second waits for memory, not for compute.
  ServingConfig roomy;
  const Workload two = make_workload({{0.0, 1024, 200}, {0.0, 1024, 200}});
  const ServingResult tight = simulate_serving(rig.input(roomy, two, rig.reserve_for_blocks(80, 16)));
  EXPECT_TRUE(tight.requests[1].waited_for_memory);
  EXPECT_EQ(slo_breach_cause(tight.requests[1], true), "hbm_capacity");
}

// [workload] arrival_process = poisson: the same requests in the same order, exponential gaps at the
// trace's mean rate (CV of the gaps ~1, where a bursty trace's is larger), drawn from the seed.
TEST(Workload, PoissonArrivalsKeepTheRequestsAndTheMeanRate) {
  std::vector<std::tuple<double, std::int64_t, std::int64_t>> rows;
  for (int i = 0; i < 20000; ++i) rows.emplace_back((i / 100) * 10.0, 100 + i, 1 + i % 7);  // bursts of 100
  const Workload bursty = make_workload(rows);
  const Workload w = with_poisson_arrivals(bursty, 3);
  ASSERT_EQ(w.requests.size(), bursty.requests.size());
  double sum = 0, sum_sq = 0;
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    EXPECT_EQ(w.requests[i].prompt_tokens, bursty.requests[i].prompt_tokens);
    EXPECT_EQ(w.requests[i].output_tokens, bursty.requests[i].output_tokens);
    if (i == 0) continue;
    const double gap = w.requests[i].arrival_s - w.requests[i - 1].arrival_s;
    ASSERT_GT(gap, 0);
    sum += gap;
    sum_sq += gap * gap;
  }
  const double n = static_cast<double>(w.requests.size() - 1);
  const double mean = sum / n, cv = std::sqrt(sum_sq / n - mean * mean) / mean;
  EXPECT_NEAR(mean_arrival_rate(w) / mean_arrival_rate(bursty), 1.0, 0.03);  // 3 sigma of 20,000 gaps: 2.1 %
  EXPECT_NEAR(cv, 1.0, 0.05);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  EXPECT_EQ(with_poisson_arrivals(bursty, 3).requests.back().arrival_s, w.requests.back().arrival_s);
  EXPECT_NE(with_poisson_arrivals(bursty, 4).requests.back().arrival_s, w.requests.back().arrival_s);
}

TEST(ServingMetrics, PercentilesThroughputAndGoodput) {
  ServingResult r;
  r.makespan_s = 10;
  r.output_tokens = 30;
  for (int i = 0; i < 3; ++i) {
    ServingRequestResult q;
    q.arrival_s = i;
    q.first_scheduled_s = i;
    q.first_token_s = i + 0.5 * (i + 1);               // TTFT 0.5, 1.0, 1.5
    q.finish_s = q.first_token_s + 9 * 0.1 * (i + 1);  // TPOT 0.1, 0.2, 0.3 over 10 outputs
    q.prompt_tokens = 100;
    q.output_tokens = 10;
    r.requests.push_back(q);
  }
  Slo slo;
  slo.ttft_s = 1.2;
  slo.tpot_s = 0.25;
  const ServingMetrics m = summarize_serving(r, slo);
  EXPECT_DOUBLE_EQ(m.ttft_s.p50, 1.0);
  EXPECT_NEAR(m.ttft_s.p90, 1.4, 1e-12);
  EXPECT_NEAR(m.tpot_s.p50, 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(m.output_tokens_per_s, 3.0);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 33.0);
  EXPECT_NEAR(m.slo_attainment, 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.goodput_requests_per_s, 0.2);
  EXPECT_EQ(m.limiting_resource, "compute");
}

}  // namespace
}  // namespace kvsim

// The retention profile cache (issue 21 §2): exact file round trip, damaged files refused, every
// key component changes the key, and a cached measurement equals a fresh one.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>

#include "sim/scenario.h"
#include "sim/scenario_sources.h"
#include "sim/serving/profile_cache.h"
#include "sim/serving/profile_key.h"
#include "sim/serving/retention_curve_file.h"
#include "sim/serving/retention_profiles.h"
#include "traces/head_map.h"
#include "traces/synth.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

// A folder of its own under the system's temporary folder, removed afterwards.
struct TempFolder {
  fs::path path = fs::temp_directory_path() / ("kvsim_profile_cache_test_" + std::to_string(::getpid()) + "_" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempFolder() { fs::remove_all(path); }
  ~TempFolder() { fs::remove_all(path); }
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_same_curve(const RetentionCurve& a, const RetentionCurve& b) {
  EXPECT_EQ(a.prompt_tokens(), b.prompt_tokens());
  EXPECT_EQ(a.measured_until(), b.measured_until());
  EXPECT_TRUE(same_bits(a.decode_slope(), b.decode_slope()));
  ASSERT_EQ(a.knots().size(), b.knots().size());
  for (std::size_t i = 0; i < a.knots().size(); ++i) {
    EXPECT_EQ(a.knots()[i].position, b.knots()[i].position);
    EXPECT_TRUE(same_bits(a.knots()[i].after, b.knots()[i].after)) << i;
  }
}

std::string curve_text(const std::string& key, const RetentionCurve& curve) {
  std::ostringstream out;
  write_retention_curve(out, key, curve);
  return out.str();
}

const RetentionCurve kCurve(1000, {{256, 0.1 * 256}, {512, 1.0 / 3.0 * 400}, {1000, 123.456789012345678}}, 1031,
                            0.7071067811865476);

TEST(RetentionCurveFile, RoundTripIsExact) {
  const std::string text = curve_text("k1", kCurve);
  std::string problem;
  const auto back = read_retention_curve(text, "k1", 1000, &problem);
  ASSERT_TRUE(back) << problem;
  expect_same_curve(kCurve, *back);
}

TEST(RetentionCurveFile, EveryTruncationAndAlterationIsRefused) {
  const std::string text = curve_text("k1", kCurve);
  std::string problem;
  for (std::size_t n = 0; n < text.size(); ++n) {
    EXPECT_FALSE(read_retention_curve(std::string_view(text).substr(0, n), "k1", 1000, &problem))
        << "truncated to " << n;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    std::string altered = text;
    altered[i] = altered[i] == '7' ? '8' : '7';
    EXPECT_FALSE(read_retention_curve(altered, "k1", 1000, &problem)) << "byte " << i << " altered";
  }
  EXPECT_FALSE(read_retention_curve(text, "k2", 1000, &problem)) << "another key";
  EXPECT_FALSE(read_retention_curve(text, "k1", 999, &problem)) << "another prompt length";
}

TEST(ProfileKey, EverySynthParameterChangesTheKey) {
  SynthParams base;
  base.model.name = "m";
  base.model.num_layers = 4;
  base.model.num_q_heads = 8;
  base.model.num_kv_heads = 2;
  base.model.head_dim = 64;
  base.prompt_tokens = 100;
  base.generated_tokens = 10;
  base.traced_layers = {1};
  base.extra_query_positions = {5, 6};
  std::vector<std::function<void(SynthParams&)>> changes = {
      [](SynthParams& p) { p.model.name = "n"; },
      [](SynthParams& p) { p.model.num_layers = 5; },
      [](SynthParams& p) { p.model.num_q_heads = 4; },
      [](SynthParams& p) { p.model.num_kv_heads = 1; },
      [](SynthParams& p) { p.model.head_dim = 128; },
      [](SynthParams& p) { p.model.kv_bits = 8; },
      [](SynthParams& p) { p.model.rope_theta = std::nextafter(p.model.rope_theta, 1e9); },
      [](SynthParams& p) { p.model.rope_scaling.type = "linear"; },
      [](SynthParams& p) { p.model.rope_scaling.factor = 8.0; },
      [](SynthParams& p) { p.model.rope_scaling.low_freq_factor = 1.0; },
      [](SynthParams& p) { p.model.rope_scaling.high_freq_factor = 4.0; },
      [](SynthParams& p) { p.model.rope_scaling.original_max_position_embeddings = 8192; },
      [](SynthParams& p) { p.model.hidden_size = 4096; },
      [](SynthParams& p) { p.model.intermediate_size = 14336; },
      [](SynthParams& p) { p.model.vocab_size = 128256; },
      [](SynthParams& p) { p.prompt_tokens = 101; },
      [](SynthParams& p) { p.generated_tokens = 11; },
      [](SynthParams& p) { p.traced_layers = {2}; },
      [](SynthParams& p) { p.seed = 2; },
      [](SynthParams& p) { p.query_window_tokens = 32; },
      [](SynthParams& p) {
        p.extra_query_positions = {5, 7};
      },
      [](SynthParams& p) { p.num_needles = 3; },
      [](SynthParams& p) { p.needle_tokens = 8; },
      [](SynthParams& p) { p.question_tokens = 16; },
      [](SynthParams& p) { p.recon_query_tokens = 2048; },
      [](SynthParams& p) { p.model.max_position_embeddings = 131072; },
      [](SynthParams& p) {
        auto map = std::make_shared<HeadMap>();
        map->label = "m.tsv fnv1a64:0123456789abcdef";
        p.head_map = map;
      },
      [](SynthParams& p) {
        auto map = std::make_shared<HeadMap>();
        map->label = "m.tsv fnv1a64:0123456789abcdee";  // the same file, edited
        p.head_map = map;
      },
  };
  std::set<std::string> keys = {synth_params_key(base)};
  for (std::size_t i = 0; i < changes.size(); ++i) {
    SynthParams p = base;
    changes[i](p);
    EXPECT_TRUE(keys.insert(synth_params_key(p)).second) << "change " << i << " kept the key";
  }
}

// A small serving scenario; `extra` lines go into its text.
Scenario small_scenario(const std::string& extra_workload = "",
                        const std::string& spec = "snapkv(budget=0.2, prefill=chunk)", int chunk_tokens = 256) {
  return load_scenario_text(
      "[model]\npreset = llama-3.1-8b\n[workload]\narrivals = poisson(rate=1, requests=2)\n"
      "chunk_tokens = " +
          std::to_string(chunk_tokens) + "\n" + extra_workload + "[policy]\nspec = " + spec +
          "\n[hardware]\npreset = h100-sxm\n",
      "test.ini");
}

std::vector<std::string> keys_of(const Scenario& s, std::int64_t prompt, std::int64_t decode) {
  const auto policies = make_scenario_policies(s);
  std::vector<const Policy*> ptrs;
  for (const auto& p : policies) ptrs.push_back(p.get());
  const PassPlan plan = make_pass_plan(prompt, decode, s.chunk_tokens);
  const SynthParams params = synthetic_request_params(s, plan, 1, 0, ptrs);
  std::vector<std::string> keys;
  for (const Policy* p : ptrs) keys.push_back(retention_profile_key(params, plan, *p, "m").value());
  return keys;
}

TEST(ProfileKey, ScenarioComponentsChangeTheKey) {
  const auto base = keys_of(small_scenario(), 1000, 32);
  EXPECT_NE(base[0], base[1]) << "policies have their own keys";
  EXPECT_EQ(base, keys_of(small_scenario(), 1000, 32)) << "the key is a function of its inputs";
  EXPECT_NE(base[1], keys_of(small_scenario("", "snapkv(budget=0.3, prefill=chunk)"), 1000, 32)[1]) << "policy spec";
  EXPECT_NE(base, keys_of(small_scenario("", "snapkv(budget=0.2, prefill=chunk)", 128), 1000, 32)) << "chunking";
  EXPECT_NE(base, keys_of(small_scenario(), 1024, 32)) << "bucket length";
  EXPECT_NE(base, keys_of(small_scenario(), 1000, 64)) << "decode tokens";
  EXPECT_NE(base, keys_of(small_scenario("traced_layers = 3\n"), 1000, 32)) << "traced layers";
}

TEST(ProfileCache, CachedMeasurementEqualsFreshAndDamageIsMeasuredAgain) {
  const TempFolder folder;
  std::vector<std::string> warnings;
  const ProfileCache cache(folder.path.string(), [&](const std::string& w) { warnings.push_back(w); });
  const Scenario s = small_scenario();
  const auto policies = make_scenario_policies(s);
  std::vector<const Policy*> ptrs;
  for (const auto& p : policies) ptrs.push_back(p.get());

  const std::vector<RetentionCurve> fresh = measure_retention(s, ptrs, 600, 24);
  RetentionMeasurement cold(s, ptrs, 600, 24, &cache);
  EXPECT_EQ(cold.from_cache(), 0u);
  const std::vector<RetentionCurve> stored = cold.curves();
  RetentionMeasurement warm(s, ptrs, 600, 24, &cache);
  EXPECT_EQ(warm.from_cache(), ptrs.size());
  const std::vector<RetentionCurve> cached = warm.curves();
  ASSERT_EQ(cached.size(), fresh.size());
  for (std::size_t p = 0; p < fresh.size(); ++p) {
    expect_same_curve(fresh[p], stored[p]);
    expect_same_curve(fresh[p], cached[p]);
  }
  EXPECT_TRUE(warnings.empty());

  // Truncate every profile: a warning each, measured again (equal), rewritten whole.
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(cache.folder())) files.push_back(e.path());
  ASSERT_EQ(files.size(), ptrs.size());
  for (const fs::path& f : files) fs::resize_file(f, fs::file_size(f) / 2);
  RetentionMeasurement damaged(s, ptrs, 600, 24, &cache);
  EXPECT_EQ(damaged.from_cache(), 0u);
  EXPECT_EQ(warnings.size(), ptrs.size());
  const std::vector<RetentionCurve> again = damaged.curves();
  for (std::size_t p = 0; p < fresh.size(); ++p) expect_same_curve(fresh[p], again[p]);
  EXPECT_EQ(RetentionMeasurement(s, ptrs, 600, 24, &cache).from_cache(), ptrs.size());
}

TEST(ProfileCache, DisabledCacheWritesNothing) {
  const TempFolder folder;
  Scenario s = small_scenario();
  s.cache_dir = "none";
  EXPECT_EQ(profile_cache_dir(s), "");
  const ProfileCache cache(profile_cache_dir(s), {});
  EXPECT_FALSE(cache.enabled());
  cache.store("k", kCurve);
  EXPECT_FALSE(cache.load("k", 1000));
  s.cache_dir = folder.path.string();
  EXPECT_EQ(profile_cache_dir(s), folder.path.string());
  EXPECT_FALSE(fs::exists(folder.path));
}

}  // namespace
}  // namespace kvsim

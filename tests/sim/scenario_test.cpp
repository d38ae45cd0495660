#include "sim/scenario.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sim/replay/run.h"
#include "util/error.h"

namespace kvsim {
namespace {

// In a folder of this process: ctest -j runs each test as its own process, and several of them (and
// other checkouts' test runs on the same machine) would otherwise rewrite one /tmp/bad.ini under
// each other.
std::string write_ini(const std::string& name, const std::string& text) {
  const std::string dir = ::testing::TempDir() + "/kvsim-scenario-test-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::string& text) {
  const std::string path = write_ini("bad.ini", text);
  try {
    const Scenario s = load_scenario(path);
    make_scenario_policies(s);
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    EXPECT_NE(what.find(path), std::string::npos) << "names the file: " << what;
    return what;
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return "";
}

const char* kGood = "[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 100\n";

TEST(Scenario, ReadsPresetAndOverrides) {
  const Scenario s = load_scenario(
      write_ini("good.ini",
                "[model]\npreset = qwen2.5-7b\nkv_bits = 8\n[workload]\nprompt_tokens = 1000\ngenerated_tokens = 10\n"
                "chunk_tokens = 256\nseed = 7\ntraced_layers = 0-2\n[policy]\nspec = streaming(window=64)\n"
                "spec = snapkv(budget=0.5)\n[sim]\nthreads = 2\n"));
  EXPECT_EQ(s.model.name, "qwen2.5-7b");
  EXPECT_EQ(s.model.num_layers, 28);
  EXPECT_EQ(s.model.num_q_heads, 28);
  EXPECT_EQ(s.model.num_kv_heads, 4);
  EXPECT_EQ(s.model.kv_bits, 8);
  EXPECT_EQ(s.model.entry_bytes(), 2 * 128);
  EXPECT_EQ(s.chunk_tokens, 256);
  EXPECT_EQ(s.seed, 7u);
  EXPECT_EQ(s.policy_specs, (std::vector<std::string>{"streaming(window=64)", "snapkv(budget=0.5)"}));
  const auto policies = make_scenario_policies(s);
  ASSERT_EQ(policies.size(), 3u);
  EXPECT_EQ(policies[0]->spec(), "full");
}

TEST(Scenario, PresetsCarryPublishedShapes) {
  // KV bytes per token from model-configs.md §2b: 2 * layers * kv_heads * head_dim * 2 bytes.
  const Scenario llama = load_scenario(write_ini("l.ini", kGood));
  EXPECT_EQ(llama.model.bytes_per_token(), 131072);
  for (const auto& [preset, bytes] : std::vector<std::pair<std::string, std::int64_t>>{
           {"llama-3.1-70b", 327680}, {"qwen2.5-7b", 57344}, {"qwen2.5-14b", 196608}, {"mistral-7b-v0.3", 131072}}) {
    const Scenario s =
        load_scenario(write_ini("p.ini", "[model]\npreset = " + preset + "\n[workload]\nprompt_tokens = 8\n"));
    EXPECT_EQ(s.model.bytes_per_token(), bytes) << preset;
  }
}

TEST(Scenario, BadInputIsOneClearLine) {
  EXPECT_NE(error_of(std::string(kGood) + "[sim]\nthreds = 2\n").find("unknown key 'sim.threds'"), std::string::npos);
  EXPECT_NE(error_of(std::string(kGood) + "[simulation]\nthreads = 2\n").find("unknown key 'simulation.threads'"),
            std::string::npos);
  EXPECT_NE(
      error_of("[model]\npreset = llama-9\n[workload]\nprompt_tokens = 8\n").find("unknown model preset 'llama-9'"),
      std::string::npos);
  EXPECT_NE(error_of("[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = lots\n").find("prompt_tokens"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 0\n").find("must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\npreset = llama-3.1-8b\n").find("prompt_tokens"), std::string::npos);
  EXPECT_NE(error_of(std::string(kGood) + "chunk_tokens = -4\n").find("chunk_tokens"), std::string::npos);
  EXPECT_NE(error_of("[model]\nnum_layers = 2\nnum_q_heads = 6\nnum_kv_heads = 4\nhead_dim = 8\nrope_theta = 1e4\n"
                     "[workload]\nprompt_tokens = 8\n")
                .find("multiple of num_kv_heads"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kGood) + "[policy]\nspec = snapkv(budgt=0.2)\n").find("parameter 'budgt'"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kGood) + "[policy]\nspec = streaming\nspec = streaming()\n").find("listed twice"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kGood) + "[sim]\nthreads = -1\n").find("threads"), std::string::npos);
  EXPECT_NE(error_of("[model\npreset = x\n").find("bad.ini"), std::string::npos);
}

// The context length from the preset's config.json (max_position_embeddings = 131072 for Llama-3.1,
// 32768 for Mistral-7B-v0.3) bounds prompt + generated tokens; a custom model may set it.
TEST(Scenario, ContextLengthBoundsPromptPlusGenerated) {
  EXPECT_EQ(load_scenario(write_ini("c.ini", kGood)).model.max_position_embeddings, 131072);
  const Scenario fits = load_scenario(write_ini(
      "c.ini", "[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 131008\ngenerated_tokens = 64\n"));
  EXPECT_EQ(fits.prompt_tokens, 131008);
  EXPECT_NE(error_of("[model]\npreset = llama-3.1-8b\n[workload]\nprompt_tokens = 131009\ngenerated_tokens = 64\n")
                .find("131073 exceed the context length of llama-3.1-8b (max_position_embeddings = 131072)"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\npreset = mistral-7b-v0.3\n[workload]\nprompt_tokens = 32768\ngenerated_tokens = 1\n")
                .find("max_position_embeddings = 32768"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\nnum_layers = 2\nnum_q_heads = 4\nnum_kv_heads = 4\nhead_dim = 8\nrope_theta = 1e4\n"
                     "max_position_embeddings = 100\n[workload]\nprompt_tokens = 90\ngenerated_tokens = 11\n")
                .find("max_position_embeddings = 100"),
            std::string::npos);
}

TEST(Scenario, MissingFileIsAnInputError) {
  EXPECT_THROW(load_scenario(::testing::TempDir() + "/does-not-exist.ini"), InputError);
}

TEST(Scenario, SeedsCountFromSeedOrList) {
  EXPECT_EQ(load_scenario(write_ini("s0.ini", kGood)).seeds, (std::vector<std::uint64_t>{1})) << "one draw by default";
  const Scenario count = load_scenario(write_ini("s1.ini", std::string(kGood) + "seed = 7\nseeds = 3\n"));
  EXPECT_EQ(count.seeds, (std::vector<std::uint64_t>{7, 8, 9}));
  EXPECT_EQ(count.seed, 7u);
  const Scenario list = load_scenario(write_ini("s2.ini", std::string(kGood) + "seeds = 9, 2,4\n"));
  EXPECT_EQ(list.seeds, (std::vector<std::uint64_t>{9, 2, 4})) << "a list keeps its order";
  EXPECT_EQ(list.seed, 9u);
  EXPECT_EQ(load_scenario(write_ini("s3.ini", std::string(kGood) + "seeds = 1\n")).seeds,
            (std::vector<std::uint64_t>{1}));
  const Scenario top =
      load_scenario(write_ini("s4.ini", std::string(kGood) + "seed = 18446744073709551614\nseeds = 2\n"));
  EXPECT_EQ(top.seeds.back(), 18446744073709551615u) << "up to the largest seed";
}

TEST(Scenario, BadSeedsAreOneClearLine) {
  const std::string good = kGood;
  EXPECT_NE(error_of(good + "seeds = 0\n").find("[workload] seeds: must be >= 1"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = -2\n").find("expected a count"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = 1001\n").find("at most 1000 draws"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = 1,,3\n").find("an empty item"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = 1,2,\n").find("an empty item"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = 1, 2.5\n").find("'2.5' is not an integer"), std::string::npos);
  EXPECT_NE(error_of(good + "seeds = 3,1,3\n").find("seed 3 is listed twice"), std::string::npos);
  EXPECT_NE(error_of(good + "seed = 1\nseeds = 1,2\n").find("cannot be combined with [workload] seed"),
            std::string::npos);
  EXPECT_NE(error_of(good + "seed = 18446744073709551615\nseeds = 2\n").find("would pass the largest seed"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\npreset = llama-3.1-8b\n[workload]\ntrace = t.h5\nseeds = 2\n")
                .find("[workload] seeds: applies only to synthetic traces"),
            std::string::npos);
}

}  // namespace
}  // namespace kvsim

// Every built-in policy with each parameter at the edges of what the spec parser accepts, evicting
// at its default points and after every chunk and decode step:
// the spec is refused with an InputError, or a small run completes with finite footprints in
// [0, 1]. Never a crash, a hang or a silently wrong number; under UBSan (CI's sanitizer job) any
// overflow or bad cast in the replay arithmetic fails here. Found: snapkv(window=2^63-1) overflowed
// in Budget::capacity, h2o(recent=4e23) was cast to int64 unchecked.
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "policies/registry.h"
#include "sim/replay/run.h"
#include "sim/scenario.h"
#include "util/error.h"

namespace kvsim {
namespace {

bool is_number(const std::string& text) {
  double value = 0.0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// A 2-layer toy model, 200-token prompt in 64-token chunks, 4 generated tokens, one policy.
std::string scenario_text(const std::string& spec) {
  return "[model]\nname = toy\nnum_layers = 2\nnum_q_heads = 4\nnum_kv_heads = 2\nhead_dim = 16\nrope_theta = 10000\n"
         "[workload]\nprompt_tokens = 200\ngenerated_tokens = 4\nchunk_tokens = 64\ntrace = synthetic\nseed = 1\n"
         "[policy]\nspec = " +
         spec + "\n[sim]\nthreads = 1\n";
}

TEST(ExtremeParameters, EveryPolicyRefusesOrRunsCleanly) {
  int ran = 0, refused = 0;
  for (const PolicyInfo& info : PolicyRegistry::builtin().all()) {
    for (const PolicyParam& param : info.params) {
      // Parameters with a word default (prompt_queries=all, decode=none) may still take numbers.
      const std::vector<const char*> values =
          is_number(param.default_value)
              ? std::vector<const char*>{"1000000000000", "999999999999.5", "1", "0", "1e-300"}
              : std::vector<const char*>{"1000000000000", "9223372036854775807", "0"};
      // Each value under the policy's default eviction points and under chunked + per-step eviction.
      std::vector<std::string> specs;
      for (const char* value : values) {
        const std::string arg = param.name + "=" + value;
        specs.push_back(info.name + "(" + arg + ")");
        if (param.name != "prefill" && param.name != "decode") {
          specs.push_back(info.name + "(" + arg + ", prefill=chunk, decode=step)");
        }
      }
      for (const std::string& spec : specs) {
        try {
          const ScenarioRun run = run_scenario(load_scenario_text(scenario_text(spec), "/extreme/s.ini"), false);
          ++ran;
          // A precision policy's byte-weighted footprint may pass 1: kivi(group=1) stores a 16-bit
          // scale and zero point per element, more than the element (an honest, pointless setting).
          // A policy that keeps a copy of each KV head per query head (gqa=expand) holds up to G = 2
          // times the entries of the full cache in this model.
          const auto policy = PolicyRegistry::builtin().create(spec);
          const double most = policy->compresses() ? 4.0 : policy->kv_copies(run.model) + 1e-9;
          for (const PolicyResult& r : run.results) {
            EXPECT_TRUE(std::isfinite(r.footprint_normalized) && r.footprint_normalized > 0.0 &&
                        r.footprint_normalized <= most)
                << spec << ": footprint " << r.footprint_normalized;
            EXPECT_GT(r.peak_entries, 0) << spec;
            if (r.attention_recall) {
              EXPECT_TRUE(r.attention_recall->mean >= 0.0 && r.attention_recall->mean <= 1.0 + 1e-6) << spec;
            }
          }
        } catch (const InputError&) {
          ++refused;
        }
      }
    }
  }
  // Most edge values are legal somewhere and illegal elsewhere: both paths must have run.
  EXPECT_GT(ran, 30);
  EXPECT_GT(refused, 30);
}

}  // namespace
}  // namespace kvsim

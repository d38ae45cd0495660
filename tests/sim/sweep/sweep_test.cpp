// Sweep files: value syntax (lists, ranges, quotes, braces), expansion (product, zip, exclude),
// seeds, and the rows/table layer that results.csv is assembled from.
#include "sim/sweep/expand.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "sim/replay/run.h"
#include "sim/scenario.h"
#include "sim/sweep/rows.h"
#include "sim/sweep/table.h"
#include "sim/sweep/values.h"
#include "util/error.h"
#include "util/hash.h"

namespace kvsim {
namespace {

using Strings = std::vector<std::string>;

const char* kModel =
    "[model]\nname = toy\nnum_layers = 2\nnum_q_heads = 4\nnum_kv_heads = 2\nhead_dim = 16\nrope_theta = 10000\n";

Sweep expand(const std::string& body) { return expand_sweep(std::string(kModel) + body, "/sweeps/s.ini"); }

std::string error_of(const std::string& body) {
  try {
    expand(body);
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
    EXPECT_NE(what.find("/sweeps/s.ini"), std::string::npos) << "names the file: " << what;
    return what;
  }
  ADD_FAILURE() << "no error for:\n" << body;
  return "";
}

#define EXPECT_ERROR(body, fragment)                           \
  do {                                                         \
    const std::string what = error_of(body);                   \
    EXPECT_NE(what.find(fragment), std::string::npos) << what; \
  } while (0)

// ---- values --------------------------------------------------------------------------------

TEST(SweepValues, ListsSplitAtTopLevelCommasOnly) {
  EXPECT_EQ(expand_list("8192, 32768,131072", "w"), (Strings{"8192", "32768", "131072"}));
  EXPECT_EQ(expand_list("offload(tier=cxl, prefetch=layer)", "w"), (Strings{"offload(tier=cxl, prefetch=layer)"}));
  EXPECT_EQ(expand_list("hbm_only, offload(tier=cxl, prefetch=layer)", "w"),
            (Strings{"hbm_only", "offload(tier=cxl, prefetch=layer)"}));
  EXPECT_EQ(expand_list("\"0,8\", \"0,8,16\"", "w"), (Strings{"0,8", "0,8,16"}));
  EXPECT_EQ(expand_list("single", "w"), (Strings{"single"}));
  EXPECT_EQ(expand_list("../traces/a.h5", "w"), (Strings{"../traces/a.h5"})) << "a path is not a range";
}

TEST(SweepValues, IntegerRanges) {
  EXPECT_EQ(expand_item("8192..131072 x2", "w"), (Strings{"8192", "16384", "32768", "65536", "131072"}));
  EXPECT_EQ(expand_item("1024..4096 +1024", "w"), (Strings{"1024", "2048", "3072", "4096"}));
  EXPECT_EQ(expand_item("1..4", "w"), (Strings{"1", "2", "3", "4"}));
  EXPECT_EQ(expand_item("1..10 +4", "w"), (Strings{"1", "5", "9"})) << "the end is a bound, not a value";
  EXPECT_EQ(expand_item("3..100 x3", "w"), (Strings{"3", "9", "27", "81"}));
  EXPECT_EQ(expand_list("1, 4..16 x2", "w"), (Strings{"1", "4", "8", "16"}));
}

TEST(SweepValues, FloatRangesDoNotAccumulateErrorAndPrintCanonically) {
  EXPECT_EQ(expand_item("0.1..0.5 +0.1", "w"), (Strings{"0.1", "0.2", "0.3", "0.4", "0.5"}));
  const Strings tenths = expand_item("0..1 +0.1", "w");
  ASSERT_EQ(tenths.size(), 11u) << "1.0 is reached although 10 * 0.1 != 1 in binary";
  EXPECT_EQ(tenths[3], "0.3");
  EXPECT_EQ(tenths[7], "0.7");
  EXPECT_EQ(tenths[10], "1");
  EXPECT_EQ(expand_item("1..2 +0.25", "w"), (Strings{"1", "1.25", "1.5", "1.75", "2"}));
  EXPECT_EQ(expand_item("0.125..1 x2", "w"), (Strings{"0.125", "0.25", "0.5", "1"}));
  EXPECT_EQ(expand_item("0.1..0.9 x3", "w"), (Strings{"0.1", "0.3", "0.9"}));
  EXPECT_EQ(expand_item("1e-5..1e-3 x10", "w"), (Strings{"1e-05", "0.0001", "0.001"}));
}

TEST(SweepValues, BadRangesAreErrors) {
  for (const char* bad :
       {"8192..x2", "1..2 x1", "5..1 +1", "1..2 *2", "0.1..0.5", "1..5 +0", "0..8 x2", "1..2 +1 +1"}) {
    EXPECT_THROW(expand_item(bad, "w"), InputError) << bad;
  }
  EXPECT_THROW(expand_item("1..1000000000 +1", "w"), InputError) << "too many values";
  EXPECT_THROW(expand_list("1,,2", "w"), InputError);
  EXPECT_THROW(expand_list("1, 2,", "w"), InputError);
  EXPECT_THROW(expand_list("1, 1", "w"), InputError) << "a value listed twice";
  EXPECT_THROW(expand_list("1, 1..2", "w"), InputError) << "listed twice through a range";
  EXPECT_THROW(expand_list("\"0,8", "w"), InputError) << "unterminated quote";
}

TEST(SweepValues, BraceExpansionInSpecs) {
  const Strings specs = expand_braces("snapkv(budget={0.1,0.2,0.5}, prefill={post_fill,chunk})", "w");
  ASSERT_EQ(specs.size(), 6u);
  EXPECT_EQ(specs[0], "snapkv(budget=0.1, prefill=post_fill)");
  EXPECT_EQ(specs[1], "snapkv(budget=0.1, prefill=chunk)") << "the first group varies slowest";
  EXPECT_EQ(specs[5], "snapkv(budget=0.5, prefill=chunk)");
  EXPECT_EQ(expand_braces("pyramidkv(budget={0.1..0.5 +0.1})", "w").size(), 5u) << "ranges inside braces";
  EXPECT_EQ(expand_braces("streaming(sinks=4, window=1024)", "w"), (Strings{"streaming(sinks=4, window=1024)"}));
  for (const char* bad : {"snapkv(budget={0.1,{0.2}})", "snapkv(budget={0.1)", "snapkv(budget=0.1})",
                          "snapkv(budget={})", "snapkv(budget={0.1,0.1})"}) {
    EXPECT_THROW(expand_braces(bad, "w"), InputError) << bad;
  }
}

// ---- expansion -----------------------------------------------------------------------------

TEST(SweepExpand, CartesianProductFirstKeySlowest) {
  const Sweep s = expand("[workload]\nprompt_tokens = 100, 200, 300\nchunk_tokens = 32, 64\n");
  EXPECT_EQ(s.columns, (Strings{"workload.prompt_tokens", "workload.chunk_tokens"}));
  ASSERT_EQ(s.scenarios.size(), 6u);
  EXPECT_EQ(s.values(0), (Strings{"100", "32"}));
  EXPECT_EQ(s.values(1), (Strings{"100", "64"}));
  EXPECT_EQ(s.values(5), (Strings{"300", "64"}));
  for (std::size_t i = 0; i < s.scenarios.size(); ++i) EXPECT_EQ(s.scenarios[i].index, i);
  EXPECT_EQ(s.describe(1), "scenario 1 (workload.prompt_tokens=100, workload.chunk_tokens=64)");
  EXPECT_EQ(s.folder_name(1), "000001-" + s.hash_hex(1));
  EXPECT_EQ(s.hash_hex(1).size(), 16u);
}

TEST(SweepExpand, ScenarioFileIsASweepOfOne) {
  const Sweep s =
      expand("[workload]\nprompt_tokens = 100\ntraced_layers = 0,1\n[policy]\nspec = snapkv(budget=0.2, window=8)\n");
  ASSERT_EQ(s.scenarios.size(), 1u);
  EXPECT_TRUE(s.columns.empty()) << "a layer list is one value";
  EXPECT_EQ(s.describe(0), "scenario 0");
}

TEST(SweepExpand, RangesAndQuotedLayerLists) {
  EXPECT_EQ(expand("[workload]\nprompt_tokens = 8192..131072 x2\n").scenarios.size(), 5u);
  const Sweep s = expand("[workload]\nprompt_tokens = 100\ntraced_layers = \"0\", \"0,1\"\n");
  ASSERT_EQ(s.scenarios.size(), 2u);
  EXPECT_EQ(s.values(1), (Strings{"0,1"}));
  EXPECT_NE(s.text(1).find("traced_layers = 0,1\n"), std::string::npos);
  EXPECT_EQ(expand("[workload]\nprompt_tokens = 100\n[serving]\nslo = ttft=2s, tpot=100ms\n").scenarios.size(), 1u)
      << "an SLO is one value";
}

TEST(SweepExpand, Zip) {
  const Sweep s = expand(
      "[workload]\nprompt_tokens = 100, 200, 300\nchunk_tokens = 10, 20, 30\ngenerated_tokens = 1, 2\n"
      "[sweep]\nzip = prompt_tokens, workload.chunk_tokens\n");
  ASSERT_EQ(s.scenarios.size(), 6u);
  for (const SweepScenario& sc : s.scenarios) {
    EXPECT_EQ(std::stoi(s.value(sc.index, 0)), 10 * std::stoi(s.value(sc.index, 1))) << "zipped keys advance together";
  }
  EXPECT_EQ(s.values(1), (Strings{"100", "10", "2"}));
  EXPECT_ERROR(
      "[workload]\nprompt_tokens = 100, 200, 300\nchunk_tokens = 10, 20\n[sweep]\nzip = prompt_tokens, chunk_tokens\n",
      "equal lengths");
  EXPECT_ERROR("[workload]\nprompt_tokens = 100, 200\nchunk_tokens = 10, 20\n[sweep]\nzip = prompt_tokens\n",
               "two or more");
  EXPECT_ERROR("[workload]\nprompt_tokens = 100, 200\nchunk_tokens = 10, 20\n[sweep]\nzip = prompt_tokens, chunks\n",
               "unknown key 'chunks'");
  EXPECT_ERROR("[workload]\nprompt_tokens = 100, 200\nchunk_tokens = 10\n[sweep]\nzip = prompt_tokens, chunk_tokens\n",
               "not swept");
  EXPECT_ERROR(
      "[workload]\nprompt_tokens = 1, 2\nchunk_tokens = 1, 2\ngenerated_tokens = 1, 2\n"
      "[sweep]\nzip = prompt_tokens, chunk_tokens\nzip = chunk_tokens, generated_tokens\n",
      "two zip lines");
}

TEST(SweepExpand, Exclude) {
  const std::string keys = "[workload]\nprompt_tokens = 100, 200, 300\nchunk_tokens = 10, 20\n";
  const Sweep s =
      expand(keys + "[sweep]\nexclude = prompt_tokens=300 & chunk_tokens=10\nexclude = workload.prompt_tokens=100.0\n");
  ASSERT_EQ(s.scenarios.size(), 3u) << "6 - one pair - both with 100 (numeric match)";
  EXPECT_EQ(s.values(0), (Strings{"200", "10"}));
  EXPECT_EQ(s.values(2), (Strings{"300", "20"}));
  EXPECT_EQ(s.scenarios[2].index, 2u) << "indices count the scenarios that remain";
  EXPECT_ERROR(keys + "[sweep]\nexclude = prompt_len=300\n", "unknown key 'prompt_len'");
  EXPECT_ERROR(keys + "[sweep]\nexclude = prompt_tokens=400\n", "has no value '400'");
  EXPECT_ERROR(keys + "[sweep]\nexclude = prompt_tokens\n", "expected key=value & key=value");
  EXPECT_ERROR(keys + "generated_tokens = 4\n[sweep]\nexclude = generated_tokens=4\n", "not swept");
  EXPECT_ERROR(keys + "[sweep]\nexclude = chunk_tokens=10\nexclude = chunk_tokens=20\n", "remove every scenario");
  EXPECT_ERROR("[workload]\npreset = a, b\n[hardware]\npreset = c, d\n[sweep]\nexclude = preset=a\n", "ambiguous");
}

TEST(SweepExpand, PoliciesAreRowsNotScenarios) {
  const Sweep s = expand(
      "[workload]\nprompt_tokens = 100, 200\n[policy]\nspec = snapkv(budget={0.1,0.2,0.5}, prefill={post_fill,chunk})\n"
      "spec = streaming(sinks=4, window=16)\n");
  ASSERT_EQ(s.scenarios.size(), 2u);
  const std::string text = s.text(0);
  std::size_t specs = 0;
  for (std::size_t at = text.find("spec = "); at != std::string::npos; at = text.find("spec = ", at + 1)) ++specs;
  EXPECT_EQ(specs, 7u);
  EXPECT_NE(text.find("spec = snapkv(budget=0.5, prefill=chunk)\n"), std::string::npos);
  const Scenario scenario = load_scenario_text(text, s.path);
  EXPECT_EQ(scenario.policy_specs.size(), 7u);
  EXPECT_EQ(make_scenario_policies(scenario).size(), 8u) << "full + 7";
}

TEST(SweepExpand, SyntaxErrors) {
  EXPECT_ERROR("[workload]\nprompt_tokens = 8192..x\n", "bad range");
  EXPECT_ERROR("[workload]\nprompt_tokens = 1,,2\n", "empty item");
  EXPECT_ERROR("[workload]\nprompt_tokens = 1, 2, 1\n", "listed twice");
  EXPECT_ERROR("[workload]\nprompt_tokens = {1,2}\n", "braces expand only inside [policy] spec");
  EXPECT_ERROR("[policy]\nspec = snapkv(budget={0.1,{0.2}})\n", "nested braces");
  EXPECT_ERROR("[sweep]\nseed = -1\n", "[sweep] seed");
  EXPECT_ERROR("[sweep]\njobs = 4\n", "unknown key");
  EXPECT_ERROR("[workload\nprompt_tokens = 1\n", "expected [section]");
  EXPECT_ERROR("[workload]\nprompt_tokens\n", "expected key = value");
  try {
    expand_sweep("prompt_tokens = 1\n", "/sweeps/s.ini");
    ADD_FAILURE() << "a key before any section";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("outside any [section]"), std::string::npos) << e.what();
  }
}

TEST(SweepExpand, SeedsAreDerivedFromTheTraceDefiningKeys) {
  const std::string base = "[workload]\nprompt_tokens = 100, 200\n[hardware]\npreset = h100-sxm, h200\n";
  const Sweep a = expand(base);
  ASSERT_EQ(a.scenarios.size(), 4u);
  EXPECT_EQ(a.scenarios[0].seed, a.scenarios[1].seed) << "hardware does not change the trace";
  EXPECT_NE(a.scenarios[0].seed, a.scenarios[2].seed) << "another prompt length gets its own trace";
  EXPECT_NE(a.text(0).find("seed = " + a.scenarios[0].seed + "\n"), std::string::npos);
  const Sweep policies = expand(base + "[policy]\nspec = streaming(sinks=4, window=16)\n");
  EXPECT_EQ(policies.scenarios[0].seed, a.scenarios[0].seed) << "adding a policy keeps the traces";
  EXPECT_NE(policies.hash, a.hash);
  const Sweep reseeded = expand(base + "[sweep]\nseed = 2\n");
  EXPECT_NE(reseeded.scenarios[0].seed, a.scenarios[0].seed);
  EXPECT_EQ(expand(base).hash, a.hash) << "deterministic";
  const Sweep listed = expand("[workload]\nprompt_tokens = 100, 200\nseed = 5\n");
  EXPECT_EQ(listed.scenarios[1].seed, "5") << "a listed seed is used as is";
  const Sweep swept = expand("[workload]\nprompt_tokens = 100\nseed = 1..3\n");
  EXPECT_EQ(swept.scenarios.size(), 3u);
  EXPECT_EQ(load_scenario_text(swept.text(2), swept.path).seed, 3u);
}

// Expansion hashes each text in pieces, rebuilding only what changed since the previous scenario
// (issue 17 item 9); the hash must still be that of the whole text Sweep::text() gives, and the
// text must be the one the pre-segment expander wrote (hand-written here).
TEST(SweepExpand, IncrementalHashesMatchTheWholeText) {
  const Sweep s = expand(
      "[workload]\nprompt_tokens = 100, 200\ngenerated_tokens = 8\n[policy]\nspec = snapkv(budget={0.1,0.2})\n"
      "[sim]\nfidelity_queries = 4..6\n[sweep]\nseed = 5\n");
  ASSERT_EQ(s.scenarios.size(), 6u);
  for (std::size_t i = 0; i < s.scenarios.size(); ++i) {
    EXPECT_EQ(hex64(text_hash(s.text(i))), s.hash_hex(i)) << "scenario " << i;
  }
  EXPECT_EQ(s.text(4),
            std::string(kModel) +
                "[workload]\nprompt_tokens = 200\ngenerated_tokens = 8\nseed = " + s.scenarios[4].seed +
                "\n[policy]\nspec = snapkv(budget=0.1)\nspec = snapkv(budget=0.2)\n[sim]\nfidelity_queries = 5\n");
  EXPECT_EQ(s.scenarios[3].seed, s.scenarios[5].seed) << "fidelity_queries does not shape the trace";
  EXPECT_NE(s.scenarios[2].seed, s.scenarios[3].seed);
  std::string identity = "kvsim-sweep 1\nworkload.prompt_tokens\nsim.fidelity_queries\n";
  for (const SweepScenario& scenario : s.scenarios) identity += hex64(scenario.text_hash) + "\n";
  EXPECT_EQ(s.hash, hex64(text_hash(identity)));
}

TEST(SweepExpand, ScenarioTextResolvesPathsAgainstTheSweepFile) {
  const Sweep s = expand_sweep("[workload]\ntrace = ../traces/a.h5, b.h5\n", "/data/sweeps/s.ini");
  ASSERT_EQ(s.scenarios.size(), 2u);
  EXPECT_EQ(load_scenario_text(s.text(0), s.path).trace, "/data/traces/a.h5");
  EXPECT_EQ(load_scenario_text(s.text(1), s.path).trace, "/data/sweeps/b.h5");
  try {
    load_scenario_text("[workload]\nprompt_tokens = 0\n" + std::string(kModel), "/data/sweeps/s.ini");
    ADD_FAILURE() << "prompt_tokens = 0 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/data/sweeps/s.ini: [workload] prompt_tokens"), std::string::npos)
        << e.what();
  }
}

// ---- rows and table ------------------------------------------------------------------------

TEST(SweepRows, RoundTripKeepsAbsentCellsAndQuotedSpecs) {
  RowSet rows;
  rows.columns = {"policy", "footprint_normalized", "ttft_s_p50", "peak_bytes"};
  rows.kinds = {CellKind::text, CellKind::real, CellKind::real, CellKind::integer};
  rows.rows = {{"full", "1", std::nullopt, "42"},
               {"snapkv(budget=0.2, window=8)", format_real(0.1 + 0.2), std::nullopt, "7"}};
  std::ostringstream out;
  write_rows(out, rows);
  EXPECT_NE(out.str().find("\"snapkv(budget=0.2, window=8)\",0.30000000000000004,,7\n"), std::string::npos)
      << out.str();
  const std::string path = ::testing::TempDir() + "/rows.csv";
  std::ofstream(path) << out.str();
  const RowSet back = read_rows(path);
  EXPECT_EQ(back.columns, rows.columns);
  EXPECT_EQ(back.kinds, rows.kinds);
  EXPECT_EQ(back.rows, rows.rows);
}

TEST(SweepTable, SweptKeysThenSeedThenPolicyThenMetricUnion) {
  const Sweep s = expand("[workload]\nprompt_tokens = 100, 200\n[hardware]\nplacement = a, b(x=1, y=2)\n");
  ASSERT_EQ(s.scenarios.size(), 4u);
  std::vector<RowSet> sets(4);
  for (std::size_t i = 0; i < 4; ++i) {
    sets[i].columns = {"policy", "m"};
    sets[i].kinds = {CellKind::text, CellKind::real};
    sets[i].rows = {{"full", "1"}};
  }
  sets[1].columns.push_back("bytes_read_cxl");  // a tier only some scenarios have
  sets[1].kinds.push_back(CellKind::real);
  sets[1].rows[0].push_back("5");
  const ResultsTable t = results_table(s, sets);
  EXPECT_EQ(t.columns, (Strings{"scenario", "workload.prompt_tokens", "hardware.placement", "workload.seed", "policy",
                                "m", "bytes_read_cxl"}));
  EXPECT_EQ(t.kinds[1], CellKind::integer);
  EXPECT_EQ(t.kinds[2], CellKind::text);
  ASSERT_EQ(t.rows.size(), 4u);
  EXPECT_EQ(t.rows[1][2], Cell("b(x=1, y=2)"));
  EXPECT_EQ(t.rows[1][6], Cell("5"));
  EXPECT_EQ(t.rows[0][6], std::nullopt) << "absent, never 0";
}

}  // namespace
}  // namespace kvsim

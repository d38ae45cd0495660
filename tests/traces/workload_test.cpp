// Workload readers (Azure CSV, Mooncake JSONL) and synthetic workloads. Expected values are worked
// out by hand from the tiny files written here, or from the committed samples with Python's
// datetime/json (numbers quoted in the comments).
#include "traces/workload.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "traces/workload_random.h"
#include "util/error.h"

namespace kvsim {
namespace {

namespace fs = std::filesystem;

class WorkloadFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("kvsim_workload_test_" + std::string(info->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }

  fs::path dir_;
};

// The InputError message of `read`, or a test failure naming `text` when it did not throw one.
std::string error_of(const std::function<void()>& read) {
  try {
    read();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

constexpr const char* kAzureHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

// ---------------------------------------------------------------------------------------------
// Azure CSV

TEST_F(WorkloadFiles, AzureArrivalsAcrossMidnightAndYearEnd) {
  const std::string path = write("a.csv", std::string(kAzureHeader) +
                                              "2023-12-31 23:59:59.5000000,100,10\n"
                                              "2024-01-01 00:00:00.2500000,200,0\n"
                                              "2024-01-01 00:00:01,300,30\n");
  const Workload w = read_azure_csv(path);
  EXPECT_EQ(w.source, "azure:" + path);
  EXPECT_EQ(w.prefix_block_tokens, 0);
  ASSERT_EQ(w.requests.size(), 3u);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  EXPECT_EQ(w.requests[1].arrival_s, 0.75);  // 0.5 s to midnight + 0.25 s
  EXPECT_EQ(w.requests[2].arrival_s, 1.5);
  EXPECT_EQ(w.duration_s(), 1.5);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(w.requests[i].id, i);
    EXPECT_EQ(w.requests[i].prompt_tokens, 100 * (i + 1));
    EXPECT_TRUE(w.requests[i].prefix_blocks.empty());
  }
  EXPECT_EQ(w.requests[0].output_tokens, 10);
  EXPECT_EQ(w.requests[1].output_tokens, 1);  // 0 generated tokens are read as 1, and counted
  EXPECT_EQ(w.requests[2].output_tokens, 30);
  EXPECT_EQ(w.zero_output_requests, 1);
  EXPECT_EQ(ideal_prefix_reuse(w), 0.0);
}

TEST_F(WorkloadFiles, AzureMonthEndsAndLeapDays) {
  // 2024 is a leap year: Feb 28 23:59:59.9999999 -> Mar 1 00:00:00.0000001 is one day + 200 ns.
  // 2023 is not: Feb 28 23:00 -> Mar 1 01:00 is 2 h. Jan 31 -> Feb 1 across midnight: 1 s.
  // 2100 is not a leap year (divisible by 100), 2000 is (by 400).
  const std::string path = write("m.csv", std::string(kAzureHeader) +
                                              "2024-02-28 23:59:59.9999999,1,1\n"
                                              "2024-03-01 00:00:00.0000001,1,1\n");
  EXPECT_EQ(read_azure_csv(path).requests[1].arrival_s, 86400.0000002);
  const Workload w2 =
      read_azure_csv(write("n.csv", std::string(kAzureHeader) + "2023-01-31 23:59:59,1,1\n2023-02-01 00:00:00,1,1\n"
                                                                "2023-02-28 23:00:00,1,1\n2023-03-01 01:00:00,1,1\n"));
  EXPECT_EQ(w2.requests[1].arrival_s, 1.0);
  EXPECT_EQ(w2.requests[3].arrival_s - w2.requests[2].arrival_s, 7200.0);
  const Workload w3 =
      read_azure_csv(write("c.csv", std::string(kAzureHeader) + "2100-02-28 12:00:00,1,1\n2100-03-01 12:00:00,1,1\n"));
  EXPECT_EQ(w3.requests[1].arrival_s, 86400.0);
  // Across 23 years and six leap days (Python: datetime(2023,11,16,18,15,46,680590) - datetime(2000,1,1)).
  const Workload w4 = read_azure_csv(
      write("y.csv", std::string(kAzureHeader) + "2000-01-01 00:00:00,1,1\n2023-11-16 18:15:46.68059,1,1\n"));
  EXPECT_NEAR(w4.requests[1].arrival_s, 753473746.68059, 1e-6);
  EXPECT_NE(error_of([&] {
              read_azure_csv(write("f.csv", std::string(kAzureHeader) + "2023-02-29 00:00:00,1,1\n"));
            }).find("2023-02 has no day 29"),
            std::string::npos);
}

TEST_F(WorkloadFiles, AzureColumnsByNameCrlfBlankLinesAndFractions) {
  // Columns in another order with an extra one; CRLF line ends; blank lines skipped (ids count
  // requests, not lines); more than 9 fractional digits (below 1 ns) are ignored.
  const std::string path = write("o.csv",
                                 "Extra,GeneratedTokens,TIMESTAMP,ContextTokens\r\n"
                                 "x,5,2023-11-16 18:15:46.6805900,374\r\n"
                                 "\r\n"
                                 "   \r\n"
                                 "y,109,2023-11-16 18:15:50.9951690123,396\r\n");
  const Workload w = read_azure_csv(path);
  ASSERT_EQ(w.requests.size(), 2u);
  EXPECT_EQ(w.requests[1].id, 1);
  EXPECT_EQ(w.requests[0].prompt_tokens, 374);
  EXPECT_EQ(w.requests[0].output_tokens, 5);
  EXPECT_EQ(w.requests[1].prompt_tokens, 396);
  EXPECT_EQ(w.requests[1].output_tokens, 109);
  EXPECT_EQ(w.requests[1].arrival_s, 4.314579012);  // 50.995169012 - 46.68059
}

TEST_F(WorkloadFiles, AzureEqualTimestampsKeepFileOrder) {
  const Workload w =
      read_azure_csv(write("t.csv", std::string(kAzureHeader) + "2023-11-16 18:00:00,5,1\n2023-11-16 18:00:00,6,1\n"
                                                                "2023-11-16 18:00:00,7,1\n"));
  ASSERT_EQ(w.requests.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(w.requests[i].arrival_s, 0.0);
    EXPECT_EQ(w.requests[i].prompt_tokens, 5 + i);
  }
}

struct BadFile {
  std::string name;
  std::string text;
  std::vector<std::string> fragments;  // all must appear in the error, besides the file name
};

void expect_refused(const std::vector<BadFile>& cases, const std::function<std::string(const BadFile&)>& write,
                    const std::function<void(const std::string&)>& read) {
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = write(c);
    const std::string message = error_of([&] { read(path); });
    EXPECT_NE(message.find(c.name), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& fragment : c.fragments) EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

TEST_F(WorkloadFiles, AzureMalformedInputsNameFileLineAndColumn) {
  const std::string h = kAzureHeader;
  const std::string row = "2023-11-16 18:15:46.6805900,374,44\n";
  const std::vector<BadFile> cases = {
      {"missing_column.csv",
       "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,374\n",
       {"line 1", "missing column GeneratedTokens"}},
      {"twice.csv",
       "TIMESTAMP,ContextTokens,GeneratedTokens,ContextTokens\n",
       {"line 1", "ContextTokens appears twice"}},
      {"non_numeric.csv",
       h + row + "2023-11-16 18:15:47,abc,5\n",
       {"line 3, column ContextTokens", "whole number", "'abc'"}},
      {"float.csv", h + "2023-11-16 18:15:47,12.5,5\n", {"line 2, column ContextTokens", "'12.5'"}},
      {"negative.csv", h + "2023-11-16 18:15:47,10,-3\n", {"line 2, column GeneratedTokens", ">= 0, got -3"}},
      {"zero_prompt.csv", h + "2023-11-16 18:15:47,0,3\n", {"line 2, column ContextTokens", ">= 1, got 0"}},
      {"unsorted.csv",
       h + row + "2023-11-16 18:15:45.0,10,3\n",
       {"line 3, column TIMESTAMP", "earlier than the previous"}},
      {"huge.csv", h + "2023-11-16 18:15:47,10000001,3\n", {"line 2, column ContextTokens", "too large"}},
      {"overflow.csv",
       h + "2023-11-16 18:15:47,5,99999999999999999999999\n",
       {"line 2, column GeneratedTokens", "too large"}},
      {"empty.csv", "", {"file is empty"}},
      {"blank.csv", "\n  \n\n", {"file is empty"}},
      {"header_only.csv", h, {"no requests after the header"}},
      {"bad_time.csv", h + "2023/11/16 18:15:46,1,1\n", {"line 2, column TIMESTAMP", "YYYY-MM-DD HH:MM:SS"}},
      {"bad_fraction.csv", h + "2023-11-16 18:15:46.,1,1\n", {"line 2, column TIMESTAMP"}},
      {"bad_hour.csv", h + "2023-11-16 24:00:00,1,1\n", {"line 2, column TIMESTAMP", "out of range"}},
      {"bad_month.csv", h + "2023-13-01 00:00:00,1,1\n", {"line 2, column TIMESTAMP", "month 13"}},
      {"fields.csv", h + "2023-11-16 18:15:46,5\n", {"line 2", "expected 3 comma-separated fields"}},
      {"blank_then_bad.csv", h + row + "\n\n" + "2023-11-16 18:15:47,x,1\n", {"line 5, column ContextTokens"}},
  };
  expect_refused(
      cases, [&](const BadFile& c) { return write(c.name, c.text); },
      [](const std::string& path) { read_azure_csv(path); });
  EXPECT_NE(error_of([&] { read_azure_csv((dir_ / "absent.csv").string()); }).find("absent.csv: cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_azure_csv(dir_.string()); }).find("is a folder"), std::string::npos);
}

TEST_F(WorkloadFiles, AzureLimits) {
  const std::string path = write("l.csv", std::string(kAzureHeader) +
                                              "2023-11-16 18:00:00,100,1\n2023-11-16 18:00:01,200,1\n"
                                              "2023-11-16 18:00:02,300,1\nthis line is never read\n");
  WorkloadLimits first_three;
  first_three.max_requests = 3;
  EXPECT_EQ(read_azure_csv(path, first_three).requests.size(), 3u);  // stops before the bad line
  WorkloadLimits cap;
  cap.max_prompt_tokens = 250;
  cap.max_requests = 3;
  const std::string message = error_of([&] { read_azure_csv(path, cap); });
  EXPECT_NE(message.find("l.csv line 4, column ContextTokens: prompt of 300 tokens exceeds the limit of 250"),
            std::string::npos)
      << message;
}

// ---------------------------------------------------------------------------------------------
// Mooncake JSONL

constexpr const char* kMooncakeTwo =  // the two requests of the Mooncake README
    "{\"timestamp\": 27482, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47, 48, 49, 50, 51, 52, "
    "53, 54, 55, 56, 57, 2353, 2354]}\n"
    "{\"timestamp\": 30535, \"input_length\": 6472, \"output_length\": 26, \"hash_ids\": [46, 47, 48, 49, 50, 51, 52, "
    "53, 54, 55, 56, 57, 2366]}\n";

TEST_F(WorkloadFiles, MooncakeReadmeExample) {
  const std::string path = write("m.jsonl", kMooncakeTwo);
  const Workload w = read_mooncake_jsonl(path);
  EXPECT_EQ(w.source, "mooncake:" + path);
  EXPECT_EQ(w.prefix_block_tokens, 512);
  ASSERT_EQ(w.requests.size(), 2u);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  EXPECT_EQ(w.requests[1].arrival_s, 3.053);  // (30535 - 27482) ms
  EXPECT_EQ(w.requests[0].prompt_tokens, 6955);
  EXPECT_EQ(w.requests[0].output_tokens, 52);
  EXPECT_EQ(w.requests[1].prompt_tokens, 6472);
  EXPECT_EQ(w.requests[1].output_tokens, 26);
  ASSERT_EQ(w.requests[0].prefix_blocks.size(), 14u);
  EXPECT_EQ(w.requests[0].prefix_blocks.front(), 46u);
  EXPECT_EQ(w.requests[0].prefix_blocks.back(), 2354u);
  ASSERT_EQ(w.requests[1].prefix_blocks.size(), 13u);
  EXPECT_EQ(w.requests[1].prefix_blocks.back(), 2366u);
  // 27 blocks, 15 distinct ids (46..57, 2353, 2354, 2366): 12 of 27 are shareable.
  EXPECT_DOUBLE_EQ(ideal_prefix_reuse(w), 12.0 / 27.0);
}

TEST_F(WorkloadFiles, MooncakeToleratesUnknownKeysSpacingAndBlankLines) {
  const std::string path =
      write("u.jsonl",
            "\n"
            "  {\"hash_ids\":[],\"note\":\"a \\\"quoted\\\" \\u00e9 text\",\"flags\":[true,null,\"x\"],"
            "\"output_length\":0,\"score\":-1.5e3,\"input_length\":1,\"timestamp\":1000.5}  \r\n"
            "\n"
            "{\"timestamp\": 2000, \"input_length\": 1025, \"output_length\": 7, \"hash_ids\": [0, "
            "18446744073709551615, 0]}\n"
            "{\"timestamp\": 2000, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": [0]}");  // no final newline
  const Workload w = read_mooncake_jsonl(path);
  ASSERT_EQ(w.requests.size(), 3u);
  EXPECT_EQ(w.requests[0].output_tokens, 1);
  EXPECT_EQ(w.zero_output_requests, 1);
  EXPECT_EQ(w.requests[1].arrival_s, 0.9995);
  EXPECT_EQ(w.requests[2].arrival_s, 0.9995);
  EXPECT_EQ(w.requests[1].prefix_blocks, (std::vector<std::uint64_t>{0, 18446744073709551615ull, 0}));
  // 4 blocks, 2 distinct ids.
  EXPECT_DOUBLE_EQ(ideal_prefix_reuse(w), 0.5);
}

TEST_F(WorkloadFiles, MooncakeMalformedInputsNameFileLineAndKey) {
  const std::string good = "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [1, 2]}\n";
  const auto line = [](const std::string& ts, const std::string& in, const std::string& out, const std::string& ids) {
    return "{\"timestamp\": " + ts + ", \"input_length\": " + in + ", \"output_length\": " + out +
           ", \"hash_ids\": " + ids + "}\n";
  };
  const std::vector<BadFile> cases = {
      {"missing_key.jsonl",
       good + "{\"timestamp\": 1, \"input_length\": 5, \"hash_ids\": []}\n",
       {"line 2", "missing key \"output_length\""}},
      {"missing_hashes.jsonl",
       "{\"timestamp\": 1, \"input_length\": 5, \"output_length\": 2}\n",
       {"line 1", "missing key \"hash_ids\""}},
      {"string_length.jsonl", line("0", "\"6955\"", "5", "[]"), {"line 1, key \"input_length\"", "expected a number"}},
      {"fraction_length.jsonl",
       line("0", "69.5", "5", "[]"),
       {"line 1, key \"input_length\"", "whole number", "'69.5'"}},
      {"negative_output.jsonl", line("0", "10", "-1", "[]"), {"line 1, key \"output_length\"", ">= 0, got -1"}},
      {"zero_input.jsonl", good + line("1", "0", "5", "[]"), {"line 2, key \"input_length\"", ">= 1, got 0"}},
      {"unsorted.jsonl",
       line("500", "10", "5", "[]") + line("499", "10", "5", "[]"),
       {"line 2, key \"timestamp\"", "earlier than the previous request's '500'"}},
      {"huge_input.jsonl", line("0", "20000000", "5", "[]"), {"line 1, key \"input_length\"", "too large"}},
      {"infinite_time.jsonl", line("1e999", "10", "5", "[]"), {"line 1, key \"timestamp\"", "finite"}},
      {"negative_time.jsonl", line("-5", "10", "5", "[]"), {"line 1, key \"timestamp\"", "[0, 1e13]"}},
      {"empty.jsonl", "", {"file is empty"}},
      {"blank.jsonl", "\n\n", {"file is empty"}},
      {"truncated.jsonl",
       good + "{\"timestamp\": 5, \"input_length\": 10, \"outp",
       {"line 2", "truncated JSON object"}},
      {"truncated_array.jsonl",
       good + "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1, 2",
       {"line 2", "truncated JSON object"}},
      {"negative_id.jsonl", line("0", "600", "5", "[1, -2]"), {"line 1, key \"hash_ids\"", "element 1", "'-2'"}},
      {"string_id.jsonl", line("0", "600", "5", "[1, \"2\"]"), {"line 1, key \"hash_ids\"", "element 1"}},
      {"too_many_ids.jsonl", line("0", "513", "5", "[1, 2, 3]"), {"line 1, key \"hash_ids\"", "expected at most 2"}},
      {"nested.jsonl", "{\"timestamp\": 0, \"meta\": {\"a\": 1}}\n", {"line 1", "nested objects are not supported"}},
      {"nested_array.jsonl", "{\"timestamp\": 0, \"m\": [[1]]}\n", {"line 1", "nested arrays"}},
      {"duplicate.jsonl", "{\"timestamp\": 0, \"timestamp\": 1}\n", {"line 1", "key \"timestamp\" appears twice"}},
      {"trailing.jsonl",
       good + good.substr(0, good.size() - 1) + " x\n",
       {"line 2", "character 79", "end of the line"}},
      {"not_json.jsonl", "timestamp,input_length\n", {"line 1", "character 1", "expected '{'"}},
      {"leading_zero.jsonl", line("007", "10", "5", "[]"), {"line 1", "must not start with 0"}},
      {"bad_escape.jsonl", "{\"a\\q\": 1}\n", {"line 1", "an escape"}},
  };
  expect_refused(
      cases, [&](const BadFile& c) { return write(c.name, c.text); },
      [](const std::string& path) { read_mooncake_jsonl(path); });
}

TEST_F(WorkloadFiles, MooncakeLimits) {
  const std::string path = write("l.jsonl", std::string(kMooncakeTwo) + "not json\n");
  WorkloadLimits two;
  two.max_requests = 2;
  EXPECT_EQ(read_mooncake_jsonl(path, two).requests.size(), 2u);
  WorkloadLimits cap;
  cap.max_prompt_tokens = 6500;
  EXPECT_NE(error_of([&] {
              read_mooncake_jsonl(path, cap);
            }).find("l.jsonl line 1, key \"input_length\": prompt of 6955 tokens exceeds the limit of 6500"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Committed samples (tests/data; values from Python's datetime and json on the same files)

TEST(WorkloadSamples, AzureConvSample) {
  const Workload w = read_azure_csv(std::string(KVSIM_TEST_DATA_DIR) + "/azure_conv_sample.csv");
  ASSERT_EQ(w.requests.size(), 300u);
  EXPECT_EQ(w.requests[1].arrival_s, 4.314579);  // 18:15:50.9951690 - 18:15:46.6805900
  EXPECT_EQ(w.requests[1].prompt_tokens, 396);
  EXPECT_EQ(w.requests[1].output_tokens, 109);
  EXPECT_EQ(w.duration_s(), 84.029102);  // 18:17:10.7096920 - 18:15:46.6805900
  EXPECT_EQ(w.requests.back().prompt_tokens, 212);
  EXPECT_EQ(w.requests.back().output_tokens, 183);
}

TEST(WorkloadSamples, MooncakeConversationSample) {
  const Workload w = read_mooncake_jsonl(std::string(KVSIM_TEST_DATA_DIR) + "/mooncake_conversation_sample.jsonl");
  ASSERT_EQ(w.requests.size(), 300u);
  EXPECT_EQ(w.duration_s(), 102.0);
  EXPECT_EQ(w.requests[1].prompt_tokens, 7322);
  EXPECT_EQ(w.requests[1].output_tokens, 490);
  EXPECT_EQ(w.requests[1].prefix_blocks.size(), 15u);
  // 8490 blocks, 7814 distinct ids.
  EXPECT_DOUBLE_EQ(ideal_prefix_reuse(w), 1.0 - 7814.0 / 8490.0);
}

// ---------------------------------------------------------------------------------------------
// load_workload dispatch

TEST_F(WorkloadFiles, LoadWorkloadDispatchesOnTheName) {
  write("a.CSV", std::string(kAzureHeader) + "2023-11-16 18:00:00,5,1\n");
  write("m.jsonl", kMooncakeTwo);
  const Workload azure = load_workload("a.CSV", dir_.string(), 1, {}, "test");
  EXPECT_EQ(azure.source, "azure:" + (dir_ / "a.CSV").string());
  const Workload mooncake = load_workload((dir_ / "m.jsonl").string(), "/elsewhere", 1, {}, "test");
  EXPECT_EQ(mooncake.requests.size(), 2u);
  const Workload synthetic = load_workload(" poisson(rate=2, requests=3) ", "", 9, {}, "test");
  EXPECT_EQ(synthetic.requests.size(), 3u);
  EXPECT_EQ(synthetic.seed, 9u);
  EXPECT_NE(error_of([&] {
              load_workload("trace.txt", "", 1, {}, "s.ini: [workload] trace");
            }).find("s.ini: [workload] trace: workload spec 'trace.txt': unknown workload 'trace.txt'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_workload("", "", 1, {}, "s.ini"); }).find("s.ini: no workload given"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Synthetic workloads

std::vector<double> gaps_of(const Workload& w) {
  std::vector<double> gaps;
  for (std::size_t i = 1; i < w.requests.size(); ++i)
    gaps.push_back(w.requests[i].arrival_s - w.requests[i - 1].arrival_s);
  return gaps;
}

struct Moments {
  double mean = 0;
  double cv = 0;
};

Moments moments(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  const double mean = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double ss = 0;
  for (const double v : x) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / (n - 1)) / mean};
}

TEST(SyntheticWorkload, CanonicalSourceAndDefaults) {
  const Workload w = make_synthetic_workload("poisson(requests=10, rate=5)", 3, "test");
  EXPECT_EQ(w.source,
            "poisson(rate=5, requests=10, prompt_mean=1024, prompt_cv=1, prompt_max=8192, output_mean=200, "
            "output_cv=1, output_max=2048)");
  EXPECT_EQ(w.seed, 3u);
  EXPECT_EQ(w.prefix_block_tokens, 0);
  ASSERT_EQ(w.requests.size(), 10u);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  const Workload g =
      make_synthetic_workload("gamma(rate=2.5, cv=0.5, requests=4, prompt_mean=100, prompt_cv=0)", 3, "");
  EXPECT_EQ(g.source,
            "gamma(rate=2.5, cv=0.5, requests=4, prompt_mean=100, prompt_cv=0, prompt_max=8192, output_mean=200, "
            "output_cv=1, output_max=2048)");
  // The canonical text reads back to the same workload.
  const Workload again = make_synthetic_workload(g.source, 3, "");
  EXPECT_EQ(again.source, g.source);
  for (std::size_t i = 0; i < g.requests.size(); ++i) EXPECT_EQ(again.requests[i].arrival_s, g.requests[i].arrival_s);
}

TEST(SyntheticWorkload, DeterministicPerSeedAndPrefixStable) {
  const std::string spec = "gamma(rate=5, cv=3, requests=500)";
  const Workload a = make_synthetic_workload(spec, 42, "");
  const Workload b = make_synthetic_workload(spec, 42, "");
  const Workload c = make_synthetic_workload(spec, 43, "");
  const Workload shorter = make_synthetic_workload("gamma(rate=5, cv=3, requests=100)", 42, "");
  WorkloadLimits first_hundred;
  first_hundred.max_requests = 100;
  const Workload limited = make_synthetic_workload(spec, 42, "", first_hundred);
  EXPECT_EQ(limited.source, shorter.source);
  std::size_t same_as_c = 0;
  for (std::size_t i = 0; i < a.requests.size(); ++i) {
    EXPECT_EQ(a.requests[i].id, static_cast<std::int64_t>(i));
    EXPECT_EQ(a.requests[i].arrival_s, b.requests[i].arrival_s);
    EXPECT_EQ(a.requests[i].prompt_tokens, b.requests[i].prompt_tokens);
    EXPECT_EQ(a.requests[i].output_tokens, b.requests[i].output_tokens);
    if (i > 0) {
      EXPECT_GE(a.requests[i].arrival_s, a.requests[i - 1].arrival_s);
    }
    same_as_c += a.requests[i].prompt_tokens == c.requests[i].prompt_tokens;
    if (i < 100) {
      EXPECT_EQ(a.requests[i].arrival_s, shorter.requests[i].arrival_s);
      EXPECT_EQ(a.requests[i].prompt_tokens, limited.requests[i].prompt_tokens);
    }
  }
  EXPECT_LT(same_as_c, 20u);  // another seed is another workload (equal lengths only by chance)
  EXPECT_NE(a.duration_s(), c.duration_s());
  // Arrivals are whole microseconds.
  for (const WorkloadRequest& r : a.requests) EXPECT_EQ(r.arrival_s, std::round(r.arrival_s * 1e6) / 1e6);
}

TEST(SyntheticWorkload, PoissonGapsAreExponential) {
  const double rate = 5;
  const Workload w = make_synthetic_workload("poisson(rate=5, requests=200001)", 7, "");
  const Moments m = moments(gaps_of(w));
  EXPECT_NEAR(m.mean, 1 / rate, 0.03 / rate);  // standard error 0.22%
  EXPECT_NEAR(m.cv, 1.0, 0.03);                // standard error ~0.3%
}

TEST(SyntheticWorkload, GammaGapsHaveTheRequestedBurstiness) {
  const Workload w = make_synthetic_workload("gamma(rate=5, cv=3, requests=200001)", 11, "");
  const Moments m = moments(gaps_of(w));
  EXPECT_NEAR(m.mean, 0.2, 0.2 * 0.05);  // standard error 0.7%
  EXPECT_NEAR(m.cv, 3.0, 3.0 * 0.05);    // standard error ~0.9% (gamma shape 1/9: kurtosis 57)
  const Workload smooth = make_synthetic_workload("gamma(rate=4, cv=0.5, requests=100001)", 11, "");
  const Moments s = moments(gaps_of(smooth));
  EXPECT_NEAR(s.mean, 0.25, 0.25 * 0.02);
  EXPECT_NEAR(s.cv, 0.5, 0.5 * 0.03);
  // cv = 0: a clock, one request every 1/rate.
  const Workload clock = make_synthetic_workload("gamma(rate=4, cv=0, requests=5)", 11, "");
  EXPECT_EQ(clock.requests[4].arrival_s, 1.0);
}

TEST(SyntheticWorkload, LognormalLengthsHaveTheRequestedMean) {
  // prompt_max far above the distribution's tail, so clipping does not move the mean.
  const Workload w = make_synthetic_workload(
      "poisson(rate=1, requests=200000, prompt_mean=1000, prompt_cv=1, prompt_max=10000000, output_mean=50, "
      "output_cv=0.5, output_max=100000)",
      5, "");
  std::vector<double> prompt, output;
  for (const WorkloadRequest& r : w.requests) {
    prompt.push_back(static_cast<double>(r.prompt_tokens));
    output.push_back(static_cast<double>(r.output_tokens));
  }
  const Moments p = moments(prompt), o = moments(output);
  EXPECT_NEAR(p.mean, 1000, 1000 * 0.02);  // standard error 0.22%
  EXPECT_NEAR(p.cv, 1.0, 0.1);             // lognormal sample cv converges slowly (heavy tail)
  EXPECT_NEAR(o.mean, 50, 50 * 0.02);
  EXPECT_NEAR(o.cv, 0.5, 0.05);
  // cv = 0 gives constant lengths; a max below the mean is refused; clipping keeps [1, max].
  const Workload constant = make_synthetic_workload(
      "poisson(rate=1, requests=20, prompt_cv=0, prompt_mean=300.4, output_cv=0, output_mean=7)", 5, "");
  for (const WorkloadRequest& r : constant.requests) {
    EXPECT_EQ(r.prompt_tokens, 300);
    EXPECT_EQ(r.output_tokens, 7);
  }
  const Workload clipped = make_synthetic_workload(
      "poisson(rate=1, requests=2000, prompt_mean=64, prompt_cv=3, prompt_max=100, output_mean=1, output_cv=5, "
      "output_max=3)",
      5, "");
  std::int64_t at_max = 0, at_one = 0;
  for (const WorkloadRequest& r : clipped.requests) {
    EXPECT_GE(r.prompt_tokens, 1);
    EXPECT_LE(r.prompt_tokens, 100);
    EXPECT_GE(r.output_tokens, 1);
    EXPECT_LE(r.output_tokens, 3);
    at_max += r.prompt_tokens == 100;
    at_one += r.output_tokens == 1;
  }
  EXPECT_GT(at_max, 0);
  EXPECT_GT(at_one, 0);
}

TEST(SyntheticWorkload, GammaSamplerMoments) {
  // Both branches of Marsaglia-Tsang: shape >= 1 directly, shape < 1 through the U^(1/shape) boost.
  for (const double shape : {0.3, 1.0, 2.5, 9.0}) {
    SCOPED_TRACE(shape);
    std::vector<double> x;
    for (std::uint64_t i = 0; i < 100000; ++i) {
      KeyedRng rng(hash_key(17, i));
      x.push_back(workload_random::gamma(rng, shape, 2.0));
    }
    const Moments m = moments(x);
    EXPECT_NEAR(m.mean, 2.0 * shape, 2.0 * shape * 0.02);
    EXPECT_NEAR(m.cv, 1.0 / std::sqrt(shape), 0.03 / std::sqrt(shape));
  }
}

TEST(SyntheticWorkload, BadSpecsNameTheSpecAndKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"poisson(rate=0, requests=5)", "parameter 'rate': expected a number in (0, 100000], got '0'"},
      {"poisson(rate=fast, requests=5)", "parameter 'rate': expected a number"},
      {"poisson(rate=5)", "missing parameter 'requests'"},
      {"poisson(requests=5)", "missing parameter 'rate'"},
      {"gamma(rate=5, requests=5)", "missing parameter 'cv'"},
      {"gamma(rate=5, cv=-1, requests=5)", "parameter 'cv': expected a number in [0, 10]"},
      {"poisson(rate=5, requests=2.5)", "parameter 'requests': expected a whole number"},
      {"poisson(rate=5, requests=0)", "parameter 'requests': expected a whole number in [1, 10000000], got '0'"},
      {"poisson(rate=5, requests=5, promt_mean=3)", "unknown parameter 'promt_mean' for poisson"},
      {"poisson(rate=5, requests=5, prompt_mean=9000)", "prompt_mean=9000 is above prompt_max=8192"},
      {"poisson(rate=5, requests=5, output_max=0)", "parameter 'output_max'"},
      {"poisson(rate=1e-9, requests=100)", "longer than 1e10 s"},
      {"uniform(rate=5, requests=5)", "unknown workload 'uniform'"},
      {"poisson(rate=5, requests=5", "missing closing ')'"},
      {"poisson(rate=5, rate=6, requests=5)", "parameter 'rate' given twice"},
  };
  for (const auto& [spec, fragment] : cases) {
    SCOPED_TRACE(spec);
    const std::string message = error_of([&] { make_synthetic_workload(spec, 1, "run.ini: [workload] trace"); });
    EXPECT_NE(message.find("run.ini: [workload] trace: workload spec '" + spec + "': "), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find("policy spec"), std::string::npos) << message;
  }
  WorkloadLimits cap;
  cap.max_prompt_tokens = 4096;
  EXPECT_NE(error_of([&] {
              make_synthetic_workload("poisson(rate=5, requests=5)", 1, "", cap);
            }).find("prompt_max=8192 exceeds the limit of 4096"),
            std::string::npos);
}

}  // namespace
}  // namespace kvsim

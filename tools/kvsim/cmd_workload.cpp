// kvsim workload: read a serving workload (trace file or synthetic spec) and summarise it, so a
// user can check what the serving simulator will be fed before running it.
#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <unordered_set>
#include <vector>

#include "tools/kvsim/command_line.h"
#include "tools/kvsim/commands.h"
#include "traces/workload.h"
#include "util/error.h"

namespace kvsim::cli {
namespace {

namespace po = boost::program_options;

constexpr const char* kHelp = R"help(
Reads a workload the way the serving simulator does, refusing malformed input with one line that
names the file, the line and the column or key, and prints: the source, request count, duration
(first to last arrival), mean arrival rate (1 / mean gap between arrivals), prompt and output
tokens (mean and p50/p90/p99 by linear interpolation, as numpy.percentile, and max), and for
traces with prefix hashes the ideal prefix reuse (1 - unique blocks / all blocks).

FILE_OR_SPEC is one of
  FILE.csv     Azure LLM inference trace (AzurePublicDataset, Splitwise): a header naming
               TIMESTAMP,ContextTokens,GeneratedTokens (any order; other columns ignored), then
               2023-11-16 18:15:46.6805900,374,44
  FILE.jsonl   Mooncake trace (FAST'25), one JSON object per line, timestamp in ms, hash_ids of
               512-token prefix blocks (other keys ignored):
               {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}
  a spec       poisson(rate=R, requests=N, ...)      Poisson arrivals, R requests/s
               gamma(rate=R, cv=C, requests=N, ...)  bursty: gamma gaps with coefficient of variation C
               more keys (defaults): prompt_mean=1024, prompt_cv=1, prompt_max=8192,
               output_mean=200, output_cv=1, output_max=2048; lengths are lognormal with that
               mean and cv (cv=0: constant), clipped to [1, max]. Same spec and --seed give the
               same workload on any machine.
Arrival times count from the first request. Blank lines are skipped; rows must be sorted by
time; a row with 0 output tokens is read as 1 (prefill still emits the first token) and counted.

Examples:
  kvsim workload configs/workloads/azure_conv.csv
  kvsim workload conversation_trace.jsonl --max-requests 1000
  kvsim workload "gamma(rate=5, cv=3, requests=2000, prompt_mean=2048)" --seed 7
)help";

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

// Linear interpolation between closest ranks (numpy.percentile's default); `sorted` is ascending.
double percentile(const std::vector<double>& sorted, double q) {
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (h - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

// A label padded to 15 characters, then right-aligned cells of 11.
std::string table_row(const std::string& label, const std::vector<std::string>& cells) {
  std::string row = label;
  row.resize(15, ' ');
  for (const std::string& text : cells) row += std::string(text.size() < 11 ? 11 - text.size() : 1, ' ') + text;
  return row;
}

std::string length_row(const std::string& label, std::vector<double> values) {
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (const double v : values) sum += v;
  std::vector<std::string> cells = {fixed(sum / static_cast<double>(values.size()), 2)};
  for (const double q : {0.50, 0.90, 0.99}) cells.push_back(fixed(percentile(values, q), 1));
  cells.push_back(fixed(values.back(), 0));
  return table_row(label, cells);
}

std::int64_t parse_count_option(const po::variables_map& v, const std::string& name) {
  if (!v.count(name)) return 0;
  const std::string text = v[name].as<std::string>();
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    fail_input("kvsim workload --" + name, "expected a whole number >= 0 (0: no limit), got '" + text + "'");
  }
  return value;
}

}  // namespace

int cmd_workload(const Args& args) {
  po::options_description options("kvsim workload FILE_OR_SPEC [options]");
  // clang-format off
  options.add_options()
      ("help,h", "show this help")
      ("workload", po::value<std::string>(), "FILE.csv (Azure), FILE.jsonl (Mooncake) or a synthetic spec")
      ("seed", po::value<std::string>()->default_value("1"), "random seed of a synthetic spec")
      ("max-requests", po::value<std::string>(), "read only the first N requests (0: all)")
      ("max-prompt-tokens", po::value<std::string>(), "refuse a request with a longer prompt (0: no limit)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("workload", 1);
  const po::variables_map v = parse_command_line(args, options, positional, "kvsim workload");
  if (v.count("help")) {
    std::cout << options << kHelp;
    return 0;
  }
  if (!v.count("workload")) fail_input("kvsim workload", "missing FILE_OR_SPEC (see kvsim workload --help)");
  const std::string seed_text = v["seed"].as<std::string>();
  std::uint64_t seed = 0;
  const auto [end, ec] = std::from_chars(seed_text.data(), seed_text.data() + seed_text.size(), seed);
  if (ec != std::errc() || end != seed_text.data() + seed_text.size()) {
    fail_input("kvsim workload --seed", "expected a whole number >= 0, got '" + seed_text + "'");
  }
  WorkloadLimits limits;
  limits.max_requests = parse_count_option(v, "max-requests");
  limits.max_prompt_tokens = parse_count_option(v, "max-prompt-tokens");

  const Workload w = load_workload(v["workload"].as<std::string>(), "", seed, limits, "");
  const std::size_t n = w.requests.size();
  std::vector<double> prompt, output;
  prompt.reserve(n);
  output.reserve(n);
  std::size_t blocks = 0;
  for (const WorkloadRequest& r : w.requests) {
    prompt.push_back(static_cast<double>(r.prompt_tokens));
    output.push_back(static_cast<double>(r.output_tokens));
    blocks += r.prefix_blocks.size();
  }
  const double duration_s = w.duration_s();
  std::cout << "source:        " << w.source << "\n";
  const bool synthetic = !w.source.starts_with("azure:") && !w.source.starts_with("mooncake:");
  if (synthetic) std::cout << "seed:          " << w.seed << "\n";
  std::cout << "requests:      " << n << "\n"
            << "duration:      " << fixed(duration_s, 3) << " s (first to last arrival)\n"
            << "arrival rate:  "
            << (n > 1 && duration_s > 0 ? fixed(static_cast<double>(n - 1) / duration_s, 3) + " req/s (1 / mean gap)"
                                        : std::string("n/a (all requests arrive at once)"))
            << "\n"
            << table_row("tokens:", {"mean", "p50", "p90", "p99", "max"}) << "\n"
            << length_row("  prompt", prompt) << "\n"
            << length_row("  output", output) << "\n";
  if (w.zero_output_requests > 0) {
    std::cout << "note:          " << w.zero_output_requests << " requests with 0 output tokens read as 1\n";
  }
  if (w.prefix_block_tokens > 0) {
    std::unordered_set<std::uint64_t> distinct;
    for (const WorkloadRequest& r : w.requests) distinct.insert(r.prefix_blocks.begin(), r.prefix_blocks.end());
    std::cout << "prefix blocks: " << blocks << " of " << w.prefix_block_tokens << " tokens, " << distinct.size()
              << " distinct; ideal prefix reuse " << fixed(100.0 * ideal_prefix_reuse(w), 2) << "%\n";
  }
  return 0;
}

}  // namespace kvsim::cli

// Choosing a workload reader from the text the user wrote, and whole-workload measures.
#include "traces/workload.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <unordered_set>

#include "traces/workload_detail.h"
#include "util/error.h"
#include "util/strings.h"

namespace kvsim {

namespace {

bool ends_with_ignoring_case(std::string_view text, std::string_view suffix) {
  if (text.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), text.end() - static_cast<std::ptrdiff_t>(suffix.size()),
                    [](char lower, char c) { return std::tolower(static_cast<unsigned char>(c)) == lower; });
}

}  // namespace

double Workload::duration_s() const { return requests.empty() ? 0.0 : requests.back().arrival_s; }

Workload load_workload(const std::string& text, const std::string& base_dir, std::uint64_t seed,
                       const WorkloadLimits& limits, const std::string& where) {
  const std::string trimmed(trim(text));
  const bool azure = ends_with_ignoring_case(trimmed, ".csv");
  const bool mooncake = ends_with_ignoring_case(trimmed, ".jsonl");
  if (!azure && !mooncake) {
    if (trimmed.empty()) {
      fail_input(where.empty() ? "workload" : where,
                 "no workload given; expected a .csv (Azure) or .jsonl (Mooncake) file, or a spec such as "
                 "poisson(rate=5, requests=1000)");
    }
    return make_synthetic_workload(trimmed, seed, where, limits);
  }
  std::filesystem::path path(trimmed);
  if (path.is_relative() && !base_dir.empty()) path = std::filesystem::path(base_dir) / path;
  return azure ? read_azure_csv(path.string(), limits) : read_mooncake_jsonl(path.string(), limits);
}

double ideal_prefix_reuse(const Workload& w) {
  std::size_t all = 0;
  std::unordered_set<std::uint64_t> unique;
  for (const WorkloadRequest& r : w.requests) {
    all += r.prefix_blocks.size();
    unique.insert(r.prefix_blocks.begin(), r.prefix_blocks.end());
  }
  return all == 0 ? 0.0 : 1.0 - static_cast<double>(unique.size()) / static_cast<double>(all);
}

}  // namespace kvsim

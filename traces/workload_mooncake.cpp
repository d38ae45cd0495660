// Mooncake trace reader (kvcache-ai/Mooncake FAST25-release/traces/*.jsonl), one request a line:
//   {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, ...]}
// timestamp: arrival in ms from the start; hash_ids: prefix-block hashes of 512 tokens each.
#include <charconv>
#include <cmath>
#include <string_view>

#include "traces/flat_json.h"
#include "traces/workload.h"
#include "traces/workload_detail.h"
#include "util/error.h"
#include "util/spec_text.h"

namespace kvsim {

namespace {

using workload_detail::LineReader;
using workload_detail::quote;

constexpr const char* kExample =
    "{\"timestamp\": 27482, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47]}";
constexpr std::string_view kKeys[] = {"timestamp", "input_length", "output_length", "hash_ids"};
// 10^13 ms is 317 years: a larger timestamp is a corrupt value, and beyond 2^53 ms the
// milliseconds would no longer be exact in a double.
constexpr double kMaxTimestampMs = 1e13;

const FlatJsonField& require(const std::vector<FlatJsonField>& fields, std::string_view key, FlatJsonKind kind,
                             const std::string& where) {
  for (const FlatJsonField& f : fields) {
    if (f.key != key) continue;
    if (f.kind != kind) {
      fail_input(where + ", key \"" + std::string(key) + "\"",
                 std::string("expected ") + flat_json_kind_name(kind) + ", got " +
                     (f.kind == FlatJsonKind::kString ? "a string " : "") + quote(f.text));
    }
    return f;
  }
  fail_input(where, "missing key \"" + std::string(key) + "\"; expected objects like " + kExample);
}

double parse_timestamp_ms(const FlatJsonField& f, const std::string& where) {
  double ms = 0;
  const auto [end, ec] = std::from_chars(f.text.data(), f.text.data() + f.text.size(), ms);
  if (ec != std::errc() || end != f.text.data() + f.text.size() || !std::isfinite(ms) || ms < 0 ||
      ms > kMaxTimestampMs) {
    fail_input(where, "expected a finite number of milliseconds in [0, 1e13], got " + quote(f.text));
  }
  return ms;
}

std::vector<std::uint64_t> parse_hash_ids(const FlatJsonField& f, std::int64_t prompt_tokens,
                                          const std::string& where) {
  std::vector<std::uint64_t> ids;
  ids.reserve(f.items.size());
  for (const FlatJsonScalar& item : f.items) {
    std::uint64_t id = 0;
    const char* last = item.text.data() + item.text.size();
    const auto [end, ec] = std::from_chars(item.text.data(), last, id);
    if (item.kind != FlatJsonKind::kNumber || ec != std::errc() || end != last) {
      fail_input(where, "element " + std::to_string(ids.size()) + ": expected an integer in [0, 2^64), got " +
                            quote(item.text));
    }
    ids.push_back(id);
  }
  // Each id names one block of the prompt; more ids than blocks cannot describe this prompt.
  const std::int64_t blocks = (prompt_tokens + kMooncakeBlockTokens - 1) / kMooncakeBlockTokens;
  if (static_cast<std::int64_t>(ids.size()) > blocks) {
    fail_input(where, std::to_string(ids.size()) + " block ids for a prompt of " + std::to_string(prompt_tokens) +
                          " tokens; expected at most " + std::to_string(blocks) + " (one per " +
                          std::to_string(kMooncakeBlockTokens) + " tokens)");
  }
  return ids;
}

}  // namespace

Workload read_mooncake_jsonl(const std::string& path, const WorkloadLimits& limits) {
  workload_detail::check_limits(limits);
  Workload w;
  w.source = "mooncake:" + path;
  w.prefix_block_tokens = kMooncakeBlockTokens;
  LineReader reader(path);
  std::string line;
  double first_ms = 0, previous_ms = 0;
  while (reader.next(line)) {
    if (workload_detail::is_blank(line)) continue;
    const std::string where = reader.where();
    const std::vector<FlatJsonField> fields = parse_flat_json_object(line, where);
    const auto key_where = [&](std::string_view key) { return where + ", key \"" + std::string(key) + "\""; };
    const FlatJsonField& timestamp = require(fields, kKeys[0], FlatJsonKind::kNumber, where);
    const FlatJsonField& input = require(fields, kKeys[1], FlatJsonKind::kNumber, where);
    const FlatJsonField& output = require(fields, kKeys[2], FlatJsonKind::kNumber, where);
    const FlatJsonField& hashes = require(fields, kKeys[3], FlatJsonKind::kArray, where);

    const double ms = parse_timestamp_ms(timestamp, key_where(kKeys[0]));
    if (w.requests.empty()) {
      first_ms = previous_ms = ms;
    } else if (ms < previous_ms) {
      fail_input(key_where(kKeys[0]), quote(timestamp.text) + " is earlier than the previous request's " +
                                          quote(format_spec_number(previous_ms)) + "; expected lines sorted by time");
    }
    previous_ms = ms;
    WorkloadRequest r;
    r.id = static_cast<std::int64_t>(w.requests.size());
    // The difference first, then the division: integer milliseconds give correctly rounded seconds.
    r.arrival_s = (ms - first_ms) / 1000.0;
    r.prompt_tokens = workload_detail::parse_prompt_tokens(input.text, key_where(kKeys[1]), limits);
    r.output_tokens = workload_detail::parse_output_tokens(output.text, key_where(kKeys[2]), w);
    r.prefix_blocks = parse_hash_ids(hashes, r.prompt_tokens, key_where(kKeys[3]));
    w.requests.push_back(std::move(r));
    if (limits.max_requests > 0 && static_cast<std::int64_t>(w.requests.size()) >= limits.max_requests) break;
  }
  if (w.requests.empty())
    fail_input(path, std::string("file is empty; expected one JSON object per line like ") + kExample);
  return w;
}

}  // namespace kvsim

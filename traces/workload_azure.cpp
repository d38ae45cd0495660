// Azure LLM inference trace reader (AzurePublicDataset, AzureLLMInferenceTrace_{conv,code}.csv):
//   TIMESTAMP,ContextTokens,GeneratedTokens
//   2023-11-16 18:15:46.6805900,374,44
// Timestamps are converted with a days-from-civil calculation rather than mktime/strptime: those
// depend on the locale and time zone of the machine, and a trace must read the same everywhere.
#include <array>
#include <string_view>
#include <vector>

#include "traces/workload.h"
#include "traces/workload_detail.h"
#include "util/error.h"

namespace kvsim {

namespace {

using workload_detail::LineReader;
using workload_detail::quote;

constexpr std::array<std::string_view, 3> kColumns = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"};
constexpr const char* kTimeForm = "a time YYYY-MM-DD HH:MM:SS[.fraction] such as 2023-11-16 18:15:46.6805900";
constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
// Arrival times are kept as integer nanoseconds from the first request: 2^63 ns is 292 years.
constexpr std::int64_t kMaxSpanSeconds = 9'000'000'000;

// A moment as whole seconds since 1970-01-01 00:00:00 UTC plus nanoseconds; ordered.
struct Moment {
  std::int64_t seconds = 0;
  std::int64_t nanos = 0;
  auto operator<=>(const Moment&) const = default;  // NOLINT(modernize-use-nullptr): clang-tidy 14 false positive
};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-compatible low-level
// date algorithms"): exact for any year, no tables, no time zone.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);                 // [0, 399]
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

unsigned days_in_month(std::int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Digits text[at, at+n) as a number, or -1 when any is not a digit.
std::int64_t digits(std::string_view text, std::size_t at, std::size_t n) {
  std::int64_t value = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

// `YYYY-MM-DD HH:MM:SS[.f...]` (a 'T' between date and time is accepted too). Fractional digits
// past the ninth are below a nanosecond and ignored.
Moment parse_timestamp(std::string_view text, const std::string& where) {
  const auto bad = [&](const std::string& why) {
    fail_input(where, "expected " + std::string(kTimeForm) + ", got " + quote(text) + why);
  };
  if (text.size() < 19 || text[4] != '-' || text[7] != '-' || (text[10] != ' ' && text[10] != 'T') || text[13] != ':' ||
      text[16] != ':') {
    bad("");
  }
  const std::int64_t year = digits(text, 0, 4), month = digits(text, 5, 2), day = digits(text, 8, 2);
  const std::int64_t hour = digits(text, 11, 2), minute = digits(text, 14, 2), second = digits(text, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0) bad("");
  if (month < 1 || month > 12) bad(" (month " + std::to_string(month) + " does not exist)");
  if (day < 1 || day > days_in_month(year, static_cast<unsigned>(month))) {
    bad(" (" + std::string(text.substr(0, 7)) + " has no day " + std::to_string(day) + ")");
  }
  if (hour > 23 || minute > 59 || second > 59) bad(" (time of day out of range)");
  std::int64_t nanos = 0;
  if (text.size() > 19) {
    if (text[19] != '.' || text.size() == 20) bad("");
    std::int64_t scale = kNanosPerSecond;
    for (std::size_t i = 20; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9') bad("");
      if (scale > 1) {
        scale /= 10;
        nanos += (text[i] - '0') * scale;
      }
    }
  }
  const std::int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return {days * 86400 + hour * 3600 + minute * 60 + second, nanos};
}

std::string columns_text() {
  std::string text;
  for (const auto name : kColumns) text += (text.empty() ? "" : ",") + std::string(name);
  return text;
}

void split_fields(std::string_view line, std::vector<std::string_view>& fields) {
  fields.clear();
  while (true) {
    const auto comma = line.find(',');
    fields.push_back(trim(line.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    line.remove_prefix(comma + 1);
  }
}

}  // namespace

Workload read_azure_csv(const std::string& path, const WorkloadLimits& limits) {
  workload_detail::check_limits(limits);
  Workload w;
  w.source = "azure:" + path;
  LineReader reader(path);
  std::string line;
  std::vector<std::string_view> fields;

  // Header: the first line that is not blank.
  bool have_header = false;
  while (!have_header && reader.next(line)) have_header = !workload_detail::is_blank(line);
  if (!have_header) {
    fail_input(path, "file is empty; expected a CSV header " + columns_text() + " and one row per request");
  }
  split_fields(line, fields);
  const std::size_t num_fields = fields.size();
  std::array<std::size_t, kColumns.size()> column{};
  for (std::size_t c = 0; c < kColumns.size(); ++c) {
    std::size_t found = 0;
    for (std::size_t f = 0; f < fields.size(); ++f) {
      if (fields[f] != kColumns[c]) continue;
      if (found++ > 0)
        fail_input(reader.where(), "column " + std::string(kColumns[c]) + " appears twice in the header");
      column[c] = f;
    }
    if (found == 0) {
      fail_input(reader.where(), "missing column " + std::string(kColumns[c]) + "; expected a header naming " +
                                     columns_text() + " (in any order), got " + quote(line));
    }
  }

  Moment first, previous;
  while (reader.next(line)) {
    if (workload_detail::is_blank(line)) continue;
    split_fields(line, fields);
    if (fields.size() != num_fields) {
      fail_input(reader.where(), "expected " + std::to_string(num_fields) +
                                     " comma-separated fields as in the header, got " + std::to_string(fields.size()) +
                                     " in " + quote(line));
    }
    const auto where = [&](std::size_t c) { return reader.where() + ", column " + std::string(kColumns[c]); };
    const Moment now = parse_timestamp(fields[column[0]], where(0));
    WorkloadRequest r;
    r.id = static_cast<std::int64_t>(w.requests.size());
    if (w.requests.empty()) {
      first = previous = now;
    } else if (now < previous) {
      fail_input(where(0),
                 quote(fields[column[0]]) + " is earlier than the previous request; expected rows sorted by time");
    }
    previous = now;
    const std::int64_t span_seconds = now.seconds - first.seconds;
    if (span_seconds > kMaxSpanSeconds) {
      fail_input(where(0), quote(fields[column[0]]) + " is more than 285 years after the first request");
    }
    const std::int64_t span_nanos = span_seconds * kNanosPerSecond + (now.nanos - first.nanos);
    // Exact for spans below 2^53 ns (104 days): the quotient is correctly rounded.
    r.arrival_s = static_cast<double>(span_nanos) / static_cast<double>(kNanosPerSecond);
    r.prompt_tokens = workload_detail::parse_prompt_tokens(fields[column[1]], where(1), limits);
    r.output_tokens = workload_detail::parse_output_tokens(fields[column[2]], where(2), w);
    w.requests.push_back(std::move(r));
    if (limits.max_requests > 0 && static_cast<std::int64_t>(w.requests.size()) >= limits.max_requests) break;
  }
  if (w.requests.empty()) {
    fail_input(path, "no requests after the header; expected rows such as 2023-11-16 18:15:46.6805900,374,44");
  }
  return w;
}

}  // namespace kvsim

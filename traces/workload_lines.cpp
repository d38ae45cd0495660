// Line reading and token-count rules shared by the Azure and Mooncake readers.
#include <cctype>
#include <charconv>
#include <filesystem>
#include <stdexcept>

#include "traces/workload_detail.h"
#include "util/error.h"
#include "util/strings.h"

namespace kvsim::workload_detail {

LineReader::LineReader(const std::string& path) : path_(path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail_input(path, "is a folder; expected a workload file");
  in_.open(path, std::ios::binary);
  if (!in_) fail_input(path, "cannot open file");
}

bool LineReader::next(std::string& line) {
  line.clear();
  std::streambuf* buffer = in_.rdbuf();
  ended_with_newline_ = false;
  bool any = false;
  for (int c = buffer->sbumpc(); c != std::char_traits<char>::eof(); c = buffer->sbumpc()) {
    any = true;
    if (c == '\n') {
      ended_with_newline_ = true;
      break;
    }
    // Checked before appending, so a file without newlines costs at most kMaxLineBytes of memory.
    if (line.size() >= kMaxLineBytes) {
      ++line_number_;
      fail_input(where(), "line is longer than " + std::to_string(kMaxLineBytes >> 20) +
                              " MiB; expected one request per line (is this a text trace file?)");
    }
    line.push_back(static_cast<char>(c));
  }
  if (!any) return false;
  ++line_number_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line_number_ == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
  return true;
}

std::string LineReader::where() const { return path_ + " line " + std::to_string(line_number_); }

bool is_blank(std::string_view line) { return trim(line).empty(); }

std::string quote(std::string_view text) {
  constexpr std::size_t kMax = 40;
  if (text.size() <= kMax) return "'" + std::string(text) + "'";
  return "'" + std::string(text.substr(0, kMax)) + "...'";
}

namespace {

// A whole decimal number of tokens in [lowest, kMaxWorkloadTokens].
std::int64_t parse_count(std::string_view text, const std::string& where, std::int64_t lowest) {
  const std::string expected = "expected a whole number of tokens >= " + std::to_string(lowest);
  std::int64_t value = 0;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  const auto [end, ec] = std::from_chars(first, last, value);
  if (ec == std::errc::result_out_of_range) {
    fail_input(where, quote(text) + " is too large; a request may have at most " + std::to_string(kMaxWorkloadTokens) +
                          " tokens");
  }
  if (text.empty() || ec != std::errc() || end != last) fail_input(where, expected + ", got " + quote(text));
  if (value < lowest) fail_input(where, expected + ", got " + std::to_string(value));
  if (value > kMaxWorkloadTokens) {
    fail_input(where, std::to_string(value) + " tokens is too large; a request may have at most " +
                          std::to_string(kMaxWorkloadTokens) + " tokens");
  }
  return value;
}

}  // namespace

std::int64_t parse_prompt_tokens(std::string_view text, const std::string& where, const WorkloadLimits& limits) {
  const std::int64_t tokens = parse_count(text, where, 1);
  if (limits.max_prompt_tokens > 0 && tokens > limits.max_prompt_tokens) {
    fail_input(where, "prompt of " + std::to_string(tokens) + " tokens exceeds the limit of " +
                          std::to_string(limits.max_prompt_tokens) + " prompt tokens");
  }
  return tokens;
}

std::int64_t parse_output_tokens(std::string_view text, const std::string& where, Workload& w) {
  const std::int64_t tokens = parse_count(text, where, 0);
  if (tokens > 0) return tokens;
  ++w.zero_output_requests;
  return 1;
}

void check_limits(const WorkloadLimits& limits) {
  if (limits.max_requests < 0 || limits.max_prompt_tokens < 0) {
    throw std::invalid_argument("WorkloadLimits: max_requests and max_prompt_tokens must be >= 0");
  }
}

}  // namespace kvsim::workload_detail

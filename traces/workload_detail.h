#pragma once
// Pieces shared by the workload readers (not part of the public API): a streaming line reader
// with a line number and a length cap, and the token-count rules every format obeys.
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "traces/workload.h"
#include "util/strings.h"

namespace kvsim::workload_detail {

// A line longer than this is not a trace row (a binary file, or a file without newlines); it is
// refused before it is held in memory. A 10M-token Mooncake prompt needs ~20K hash ids (~250 KB).
inline constexpr std::size_t kMaxLineBytes = 4u << 20;

// Reads a text file one line at a time: strips the newline and a '\r' before it (CRLF files),
// and a UTF-8 byte-order mark at the start.
class LineReader {
 public:
  // Throws InputError("<path>: ...") when the path is a folder or cannot be opened.
  explicit LineReader(const std::string& path);
  // Next line into `line`; false at the end of the file.
  bool next(std::string& line);
  std::int64_t line_number() const { return line_number_; }
  // Whether the line last returned ended with '\n' (false for a file's last line without one).
  bool ended_with_newline() const { return ended_with_newline_; }
  // "<path> line <n>" for errors about the current line.
  std::string where() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  std::int64_t line_number_ = 0;
  bool ended_with_newline_ = false;
};

bool is_blank(std::string_view line);

// Text from an input file quoted for a one-line error: at most 40 characters, with an ellipsis.
std::string quote(std::string_view text);

// A prompt length: a whole decimal number in [1, kMaxWorkloadTokens], and within
// limits.max_prompt_tokens when that is set. `where` names the file, line and column/key.
std::int64_t parse_prompt_tokens(std::string_view text, const std::string& where, const WorkloadLimits& limits);

// An output length: a whole decimal number in [0, kMaxWorkloadTokens]; 0 is read as 1 and counted
// in w.zero_output_requests (see WorkloadRequest::output_tokens).
std::int64_t parse_output_tokens(std::string_view text, const std::string& where, Workload& w);

// Throws std::invalid_argument for negative limits (callers validate user input first).
void check_limits(const WorkloadLimits& limits);

}  // namespace kvsim::workload_detail

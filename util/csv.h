#pragma once
// CSV as RFC 4180 writes it: a cell holding a comma, quote, CR/LF or outer space is quoted, with
// quotes doubled. Enough for kvsim's own tables (policy specs contain commas).
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

std::string csv_cell(std::string_view text);

// One line of cells joined by commas (cells quoted as needed), without the newline.
std::string csv_line(const std::vector<std::string>& cells);

// Splits one line (no embedded newlines) into cells, unquoting. Throws InputError naming `where`
// for an unterminated quote or text after a closing quote.
std::vector<std::string> split_csv_line(std::string_view line, const std::string& where);

}  // namespace kvsim

#pragma once
// A strict parser for one line of JSON holding one flat object, as in JSON-lines traces:
//   {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}
// Values may be numbers, strings, true/false/null, or arrays of those; nested objects and arrays
// are refused (no trace format kvsim reads has them, and a flat parser cannot be made to recurse
// without bound by a hostile file). Views point into the parsed line.
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

enum class FlatJsonKind { kNumber, kString, kLiteral, kArray };

struct FlatJsonScalar {
  FlatJsonKind kind = FlatJsonKind::kNumber;
  std::string_view text;  // a number's digits as written; a string's raw contents (escapes kept)
};

struct FlatJsonField {
  std::string_view key;  // raw contents of the key string
  FlatJsonKind kind = FlatJsonKind::kNumber;
  std::string_view text;              // as in FlatJsonScalar; the whole "[...]" for an array
  std::vector<FlatJsonScalar> items;  // array elements
};

// Parses `line`; throws InputError("<where>: ...") naming the character position and what was
// expected, saying "truncated" when the line ends inside the object, and refusing repeated keys.
std::vector<FlatJsonField> parse_flat_json_object(std::string_view line, const std::string& where);

const char* flat_json_kind_name(FlatJsonKind kind);

}  // namespace kvsim

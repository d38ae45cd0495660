#pragma once
// The value syntax of sweep files (kvsim sweep --help): a value is a list of items separated by
// top-level commas; an item is a plain value, a "quoted" value (its commas kept), or a range.
//   prompt_tokens = 8192, 32768, 131072      three values
//   prompt_tokens = 8192..131072 x2          geometric: 8192, 16384, ..., 131072
//   budget        = 0.1..0.5 +0.1            arithmetic: 0.1, 0.2, 0.3, 0.4, 0.5
//   chunk_tokens  = 1..4                     integers, step 1
// Commas inside (), [], {} or quotes do not separate items, so policy specs and placements such as
// offload(tier=cxl, prefetch=layer) are one item. Policy specs also take brace alternatives:
//   snapkv(budget={0.1,0.2}, prefill={post_fill,chunk})  ->  4 specs
#include <string>
#include <string_view>
#include <vector>

namespace kvsim {

// Items at top-level commas, trimmed. Throws InputError naming `where` for an empty item.
std::vector<std::string> split_top_level(std::string_view text, const std::string& where);

// One item's values: a range expands (each value printed canonically: integers exactly, other
// numbers with 12 significant digits, so 0.1 + 2 * 0.1 prints 0.3); quotes are removed; anything
// else is itself. Throws InputError naming `where` for a malformed range.
std::vector<std::string> expand_item(std::string_view item, const std::string& where);

// A whole value: every item expanded, in order. Throws InputError for a value listed twice.
std::vector<std::string> expand_list(std::string_view text, const std::string& where);

// Brace expansion of a policy spec: each {a,b,...} group (items as in expand_list, ranges allowed)
// multiplies the specs, the first group varying slowest. Without braces: the spec itself.
std::vector<std::string> expand_braces(std::string_view spec, const std::string& where);

}  // namespace kvsim

#pragma once
// One cached retention profile as a small text file (sim/serving/profile_cache.h):
//   kvsim retention profile 1
//   key <the profile's key, one line>
//   prompt_tokens <int>
//   measured_until <int>
//   decode_slope <hex float>
//   knots <count>
//   <position> <after, hex float>        (count lines)
//   checksum <16 hex digits: text_hash of every byte above>
// Doubles are hex floats (util/exact_number.h), so a curve read back is bit-identical to the one
// written; the checksum catches a truncated or altered file that would still parse.
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "sim/serving/retention.h"

namespace kvsim {

void write_retention_curve(std::ostream& out, const std::string& key, const RetentionCurve& curve);

// The curve in `text` if it is whole, well formed, of `key` and of a prompt of `prompt_tokens`;
// otherwise nothing, with `*problem` saying what is wrong.
std::optional<RetentionCurve> read_retention_curve(std::string_view text, const std::string& key,
                                                   std::int64_t prompt_tokens, std::string* problem);

}  // namespace kvsim

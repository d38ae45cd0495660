#include "sim/serving/retention_curve_file.h"

#include <charconv>
#include <cmath>
#include <sstream>
#include <vector>

#include "util/exact_number.h"
#include "util/hash.h"

namespace kvsim {

namespace {

constexpr std::string_view kMagic = "kvsim retention profile 1";
constexpr std::string_view kChecksum = "checksum ";

// Reads "<name> <value>" lines in order; the first failure is kept in `problem`.
class Lines {
 public:
  explicit Lines(std::string_view text) : text_(text) {}

  std::optional<std::string_view> next() {
    if (at_ >= text_.size()) return std::nullopt;
    const auto end = text_.find('\n', at_);
    if (end == std::string_view::npos) return std::nullopt;  // every line ends in a newline
    const std::string_view line = text_.substr(at_, end - at_);
    at_ = end + 1;
    return line;
  }
  // The value of the next line, which must start with `name` and a space.
  std::optional<std::string_view> field(std::string_view name) {
    const auto line = next();
    if (!line || line->size() <= name.size() || line->substr(0, name.size()) != name || (*line)[name.size()] != ' ') {
      return std::nullopt;
    }
    return line->substr(name.size() + 1);
  }
  bool done() const { return at_ == text_.size(); }

 private:
  std::string_view text_;
  std::size_t at_ = 0;
};

std::optional<std::int64_t> parse_int(std::optional<std::string_view> text) {
  if (!text || text->empty()) return std::nullopt;
  std::int64_t value = 0;
  const char* end = text->data() + text->size();
  const auto [stop, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || stop != end) return std::nullopt;
  return value;
}

}  // namespace

void write_retention_curve(std::ostream& out, const std::string& key, const RetentionCurve& curve) {
  std::ostringstream body;
  body << kMagic << "\n"
       << "key " << key << "\n"
       << "prompt_tokens " << curve.prompt_tokens() << "\n"
       << "measured_until " << curve.measured_until() << "\n"
       << "decode_slope " << exact_double_text(curve.decode_slope()) << "\n"
       << "knots " << curve.knots().size() << "\n";
  for (const RetentionCurve::Knot& k : curve.knots()) body << k.position << " " << exact_double_text(k.after) << "\n";
  const std::string text = body.str();
  out << text << kChecksum << hex64(text_hash(text)) << "\n";
}

std::optional<RetentionCurve> read_retention_curve(std::string_view text, const std::string& key,
                                                   std::int64_t prompt_tokens, std::string* problem) {
  const auto fail = [&](const std::string& what) -> std::optional<RetentionCurve> {
    *problem = what;
    return std::nullopt;
  };
  // The checksum line is last; it covers everything before it.
  const auto checksum_at = text.rfind(kChecksum);
  if (checksum_at == std::string_view::npos || (checksum_at > 0 && text[checksum_at - 1] != '\n')) {
    return fail("no checksum line (truncated?)");
  }
  const std::string_view body = text.substr(0, checksum_at);
  if (text.substr(checksum_at) != std::string(kChecksum) + hex64(text_hash(body)) + "\n") {
    return fail("checksum mismatch");
  }
  Lines lines(body);
  if (lines.next() != kMagic) return fail("not a kvsim retention profile of format 1");
  if (lines.field("key") != key) return fail("written for another key");
  const auto prompt = parse_int(lines.field("prompt_tokens"));
  const auto measured_until = parse_int(lines.field("measured_until"));
  const auto slope_text = lines.field("decode_slope");
  const auto slope = slope_text ? parse_exact_double(*slope_text) : std::nullopt;
  const auto count = parse_int(lines.field("knots"));
  if (!prompt || !measured_until || !slope || !count) return fail("malformed header");
  if (*prompt != prompt_tokens)
    return fail("prompt_tokens " + std::to_string(*prompt) + ", expected " + std::to_string(prompt_tokens));
  if (!(*slope >= 0.0 && *slope <= 1.0)) return fail("decode_slope out of [0, 1]");
  if (*count < 0 || *count > *measured_until || *measured_until < 1) return fail("impossible knot count");
  std::vector<RetentionCurve::Knot> knots;
  for (std::int64_t i = 0; i < *count; ++i) {
    const auto line = lines.next();
    const auto space = line ? line->find(' ') : std::string_view::npos;
    if (space == std::string_view::npos) return fail("malformed knot line");
    const auto position = parse_int(line->substr(0, space));
    const auto after = parse_exact_double(line->substr(space + 1));
    // RetentionCurve's contract: positions ascending from 1, 0 <= after <= position.
    const std::int64_t previous = knots.empty() ? 0 : knots.back().position;
    if (!position || !after || *position <= previous || !(*after >= 0.0 && *after <= static_cast<double>(*position))) {
      return fail("malformed knot line");
    }
    knots.push_back({*position, *after});
  }
  if (!lines.done()) return fail("trailing lines");
  return RetentionCurve(*prompt, std::move(knots), *measured_until, *slope);
}

}  // namespace kvsim

// One flat JSON object per line (RFC 8259 grammar for the parts it accepts).
#include "traces/flat_json.h"

#include "util/error.h"

namespace kvsim {

namespace {

class Parser {
 public:
  Parser(std::string_view text, const std::string& where) : s_(text), where_(where) {}

  std::vector<FlatJsonField> object() {
    std::vector<FlatJsonField> fields;
    skip_space();
    expect('{', "'{' (each line must be one JSON object)");
    skip_space();
    if (peek() == '}') {
      ++at_;
    } else {
      while (true) {
        skip_space();
        if (peek() != '"') fail("a key in double quotes");
        FlatJsonField field;
        field.key = string_body();
        for (const FlatJsonField& f : fields) {
          if (f.key == field.key) fail_at(key_at_, "key \"" + std::string(field.key) + "\" appears twice");
        }
        skip_space();
        expect(':', "':' after the key");
        skip_space();
        value(field);
        fields.push_back(std::move(field));
        skip_space();
        if (peek() == ',') {
          ++at_;
          continue;
        }
        expect('}', "',' or '}'");
        break;
      }
    }
    skip_space();
    if (at_ < s_.size()) fail("the end of the line after the object's closing '}'");
    return fields;
  }

 private:
  static constexpr char kEnd = '\0';

  char peek() const { return at_ < s_.size() ? s_[at_] : kEnd; }
  bool at_end() const { return at_ >= s_.size(); }

  void skip_space() {
    while (!at_end() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\r' || s_[at_] == '\n')) ++at_;
  }

  [[noreturn]] void fail_at(std::size_t at, const std::string& what) const {
    fail_input(where_, "malformed JSON at character " + std::to_string(at + 1) + ": " + what);
  }

  // Expected `what` here: a truncated line (one that ends inside the object) is named as such.
  [[noreturn]] void fail(const std::string& what) const {
    if (at_end()) {
      fail_input(where_, "truncated JSON object: the line ends where " + what + " was expected (is the file cut off?)");
    }
    const char c = s_[at_];
    const std::string got = c >= 0x20 && c < 0x7f ? "'" + std::string(1, c) + "'" : "a control character";
    fail_at(at_, "expected " + what + ", got " + got);
  }

  void expect(char c, const std::string& what) {
    if (peek() != c || at_end()) fail(what);
    ++at_;
  }

  void value(FlatJsonField& field) {
    if (peek() == '[') {
      const std::size_t start = at_++;
      field.kind = FlatJsonKind::kArray;
      skip_space();
      if (peek() == ']') {
        ++at_;
      } else {
        while (true) {
          skip_space();
          if (peek() == '[' || peek() == '{')
            fail("a number, string, true, false or null (nested arrays and objects are not supported)");
          field.items.push_back(scalar());
          skip_space();
          if (peek() == ',') {
            ++at_;
            continue;
          }
          expect(']', "',' or ']' in the array");
          break;
        }
      }
      field.text = s_.substr(start, at_ - start);
      return;
    }
    if (peek() == '{') fail("a number, string, array, true, false or null (nested objects are not supported)");
    const FlatJsonScalar v = scalar();
    field.kind = v.kind;
    field.text = v.text;
  }

  FlatJsonScalar scalar() {
    const char c = peek();
    if (c == '"') return {FlatJsonKind::kString, string_body()};
    if (c == '-' || (c >= '0' && c <= '9')) return {FlatJsonKind::kNumber, number()};
    for (const std::string_view literal : {"true", "false", "null"}) {
      if (s_.substr(at_, literal.size()) == literal) {
        at_ += literal.size();
        return {FlatJsonKind::kLiteral, literal};
      }
    }
    fail("a number, string, true, false or null");
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  std::string_view number() {
    const std::size_t start = at_;
    const auto digits = [&](const char* what) {
      if (!is_digit(peek())) fail(what);
      while (is_digit(peek())) ++at_;
    };
    if (peek() == '-') ++at_;
    if (peek() == '0') {
      ++at_;
      if (is_digit(peek())) fail_at(at_ - 1, "a number must not start with 0");
    } else {
      digits("a digit");
    }
    if (peek() == '.') {
      ++at_;
      digits("a digit after the decimal point");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++at_;
      if (peek() == '+' || peek() == '-') ++at_;
      digits("a digit in the exponent");
    }
    return s_.substr(start, at_ - start);
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  // At an opening quote; returns the raw contents and moves past the closing quote.
  std::string_view string_body() {
    key_at_ = at_;
    const std::size_t start = ++at_;
    while (true) {
      if (at_end()) fail("the closing '\"' of a string");
      const char c = s_[at_];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("a printable character in a string");
      if (c == '\\') {
        ++at_;
        const char e = peek();
        if (e == 'u') {
          for (int i = 0; i < 4; ++i) {
            ++at_;
            if (!is_hex(peek())) fail("four hex digits after \\u");
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          fail("an escape \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX");
        }
      }
      ++at_;
    }
    const std::string_view body = s_.substr(start, at_ - start);
    ++at_;
    return body;
  }

  std::string_view s_;
  const std::string& where_;
  std::size_t at_ = 0;
  std::size_t key_at_ = 0;
};

}  // namespace

std::vector<FlatJsonField> parse_flat_json_object(std::string_view line, const std::string& where) {
  return Parser(line, where).object();
}

const char* flat_json_kind_name(FlatJsonKind kind) {
  switch (kind) {
    case FlatJsonKind::kNumber: return "a number";
    case FlatJsonKind::kString: return "a string";
    case FlatJsonKind::kLiteral: return "true, false or null";
    case FlatJsonKind::kArray: return "an array";
  }
  return "?";
}

}  // namespace kvsim

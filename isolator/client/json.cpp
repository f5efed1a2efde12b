#include "json.hpp"

#include <cstdio>
#include <unordered_set>
#include <utility>

namespace lazyroot::json {

const char* type_name(Type type) {
  switch (type) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.bool_ = b;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::String;
  v.text_ = std::move(s);
  return v;
}

Value Value::number(uint64_t n) { return number_text(std::to_string(n)); }

Value Value::number_text(std::string text) {
  Value v;
  v.type_ = Type::Number;
  v.text_ = std::move(text);
  return v;
}

Value Value::array() {
  Value v;
  v.type_ = Type::Array;
  return v;
}

Value Value::object() {
  Value v;
  v.type_ = Type::Object;
  return v;
}

const Value* Value::find(std::string_view key) const {
  for (const Member& m : members_) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

void Value::push(Value item) { items_.push_back(std::move(item)); }

void Value::append(std::string key, Value value) {
  members_.push_back(Member{std::move(key), std::move(value)});
}

void Value::set(std::string key, Value value) {
  for (Member& m : members_) {
    if (m.key == key) {
      m.value = std::move(value);
      return;
    }
  }
  members_.push_back(Member{std::move(key), std::move(value)});
}

// ---------------------------------------------------------------------------
// UTF-8

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid.
// Table 3-7 of the Unicode standard: this rejects overlong forms, UTF-16
// surrogates (ED A0..BF) and code points above U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) -> unsigned {
    return k < s.size() ? static_cast<unsigned char>(s[k]) : 0x100u;
  };
  auto in = [](unsigned b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
  unsigned b0 = byte(i);
  if (b0 < 0x80) return 1;
  if (in(b0, 0xC2, 0xDF)) return in(byte(i + 1), 0x80, 0xBF) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
    return in(byte(i + 1), lo, hi) && in(byte(i + 2), 0x80, 0xBF) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    unsigned lo = 0x80, hi = 0xBF;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
    return in(byte(i + 1), lo, hi) && in(byte(i + 2), 0x80, 0xBF) &&
                   in(byte(i + 3), 0x80, 0xBF)
               ? 4
               : 0;
  }
  return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::size_t find_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// ---------------------------------------------------------------------------
// Parser

namespace {

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : s_(text), limits_(limits) {}

  bool document(Value& out, std::string& error) {
    if (s_.size() > limits_.max_bytes) {
      error = "JSON document of " + std::to_string(s_.size()) +
              " bytes exceeds the limit of " + std::to_string(limits_.max_bytes);
      return false;
    }
    skip_ws();
    if (!value(out, 0)) {
      error = error_;
      return false;
    }
    skip_ws();
    if (pos_ != s_.size()) {
      fail("unexpected content after the JSON value");
      error = error_;
      return false;
    }
    return true;
  }

 private:
  bool fail(const std::string& what) {
    if (error_.empty()) {
      error_ = "invalid JSON at byte " + std::to_string(pos_) + ": " + what;
    }
    return false;
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return s_[pos_]; }

  void skip_ws() {
    while (!at_end()) {
      char c = peek();
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) {
      return fail("unknown literal (expected true, false or null)");
    }
    pos_ += word.size();
    return true;
  }

  bool value(Value& out, std::size_t depth) {
    if (at_end()) return fail("unexpected end of input, expected a value");
    switch (peek()) {
      case '{': return object(out, depth + 1);
      case '[': return array(out, depth + 1);
      case '"': {
        std::string str;
        if (!string(str)) return false;
        out = Value::string(std::move(str));
        return true;
      }
      case 't':
        out = Value::boolean(true);
        return literal("true");
      case 'f':
        out = Value::boolean(false);
        return literal("false");
      case 'n':
        out = Value();
        return literal("null");
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return number(out);
        return fail(std::string("unexpected character '") + printable(peek()) + "'");
    }
  }

  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) return std::string(1, c);
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", u);
    return buf;
  }

  bool object(Value& out, std::size_t depth) {
    if (depth > limits_.max_depth) {
      return fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    ++pos_;  // '{'
    out = Value::object();
    skip_ws();
    if (!at_end() && peek() == '}') {
      ++pos_;
      return true;
    }
    std::unordered_set<std::string> keys;
    for (;;) {
      skip_ws();
      if (at_end() || peek() != '"') return fail("expected a string as object key");
      std::size_t key_pos = pos_;
      std::string key;
      if (!string(key)) return false;
      if (!keys.insert(key).second) {
        pos_ = key_pos;
        return fail("duplicate object key \"" + key + "\"");
      }
      skip_ws();
      if (at_end() || peek() != ':') return fail("expected ':' after object key");
      ++pos_;
      skip_ws();
      Value member;
      if (!value(member, depth)) return false;
      out.append(std::move(key), std::move(member));
      skip_ws();
      if (at_end()) return fail("unexpected end of input inside an object");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}' in an object");
    }
  }

  bool array(Value& out, std::size_t depth) {
    if (depth > limits_.max_depth) {
      return fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    ++pos_;  // '['
    out = Value::array();
    skip_ws();
    if (!at_end() && peek() == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      skip_ws();
      Value item;
      if (!value(item, depth)) return false;
      out.push(std::move(item));
      skip_ws();
      if (at_end()) return fail("unexpected end of input inside an array");
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']' in an array");
    }
  }

  bool digits(std::size_t& count) {
    count = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      ++pos_;
      ++count;
    }
    return count > 0;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number(Value& out) {
    std::size_t start = pos_;
    std::size_t n = 0;
    if (peek() == '-') ++pos_;
    if (at_end()) return fail("a number needs digits");
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && peek() >= '0' && peek() <= '9') {
        return fail("leading zeros are not allowed in numbers");
      }
    } else if (!digits(n)) {
      return fail("a number needs digits");
    }
    if (!at_end() && peek() == '.') {
      ++pos_;
      if (!digits(n)) return fail("a decimal point must be followed by digits");
    }
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      ++pos_;
      if (!at_end() && (peek() == '+' || peek() == '-')) ++pos_;
      if (!digits(n)) return fail("an exponent needs digits");
    }
    out = Value::number_text(std::string(s_.substr(start, pos_ - start)));
    return true;
  }

  bool hex4(uint32_t& out) {
    if (s_.size() - pos_ < 4) return fail("\\u needs four hex digits");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_ + i];
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return fail("\\u needs four hex digits");
      out = out * 16 + d;
    }
    pos_ += 4;
    return true;
  }

  bool string(std::string& out) {
    ++pos_;  // opening quote
    for (;;) {
      if (at_end()) return fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(peek());
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return fail("control character in a string must be escaped");
      if (c == '\\') {
        if (!escape(out)) return false;
        continue;
      }
      std::size_t n = utf8_sequence_length(s_, pos_);
      if (n == 0) return fail("invalid UTF-8 in a string");
      out.append(s_.data() + pos_, n);
      pos_ += n;
    }
  }

  bool escape(std::string& out) {
    ++pos_;  // backslash
    if (at_end()) return fail("unterminated escape");
    char e = peek();
    ++pos_;
    switch (e) {
      case '"': out += '"'; return true;
      case '\\': out += '\\'; return true;
      case '/': out += '/'; return true;
      case 'b': out += '\b'; return true;
      case 'f': out += '\f'; return true;
      case 'n': out += '\n'; return true;
      case 'r': out += '\r'; return true;
      case 't': out += '\t'; return true;
      case 'u': break;
      default:
        --pos_;
        return fail(std::string("unknown escape '\\") + printable(e) + "'");
    }
    uint32_t cp = 0;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return fail("lone low surrogate in a \\u escape");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      // A high surrogate must be followed by an escaped low surrogate; the
      // pair encodes one code point above U+FFFF.
      if (s_.substr(pos_, 2) != "\\u") return fail("high surrogate not followed by a low surrogate");
      pos_ += 2;
      uint32_t low = 0;
      if (!hex4(low)) return false;
      if (low < 0xDC00 || low > 0xDFFF) {
        return fail("high surrogate not followed by a low surrogate");
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, cp);
    return true;
  }

  std::string_view s_;
  const Limits& limits_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace

bool parse(std::string_view text, Value& out, std::string& error, const Limits& limits) {
  Parser parser(text, limits);
  Value result;
  if (!parser.document(result, error)) return false;
  out = std::move(result);
  return true;
}

// ---------------------------------------------------------------------------
// Encoder

namespace {

bool encode_string(std::string_view s, std::string& out, std::string& error) {
  std::size_t bad = find_invalid_utf8(s);
  if (bad != std::string_view::npos) {
    error = "string is not valid UTF-8 (byte " + std::to_string(bad) + ")";
    return false;
  }
  out += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;  // UTF-8 passes through: JSON text is UTF-8
        }
    }
  }
  out += '"';
  return true;
}

bool encode_value(const Value& v, std::string& out, std::string& error) {
  switch (v.type()) {
    case Type::Null: out += "null"; return true;
    case Type::Bool: out += v.as_bool() ? "true" : "false"; return true;
    case Type::Number: out += v.text(); return true;
    case Type::String: return encode_string(v.text(), out, error);
    case Type::Array: {
      out += '[';
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += ',';
        first = false;
        if (!encode_value(item, out, error)) return false;
      }
      out += ']';
      return true;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (const Member& m : v.members()) {
        if (!first) out += ',';
        first = false;
        if (!encode_string(m.key, out, error)) return false;
        out += ':';
        if (!encode_value(m.value, out, error)) return false;
      }
      out += '}';
      return true;
    }
  }
  return false;
}

}  // namespace

bool encode(const Value& value, std::string& out, std::string& error) {
  std::string result;
  if (!encode_value(value, result, error)) return false;
  out = std::move(result);
  return true;
}

// ---------------------------------------------------------------------------

bool to_unsigned(const Value& value, uint64_t max, uint64_t& out) {
  if (value.type() != Type::Number && value.type() != Type::String) return false;
  const std::string& t = value.text();
  // Only a plain non-negative integer: "5.0" or "5e0" would be numbers of
  // the right value, but our daemon never writes them, so they signal a bug.
  if (t.empty() || (t.size() > 1 && t[0] == '0')) return false;
  uint64_t n = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (d > max || n > (max - d) / 10) return false;  // n * 10 + d > max
    n = n * 10 + d;
  }
  out = n;
  return true;
}

}  // namespace lazyroot::json

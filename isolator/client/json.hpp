// A small, strict JSON value, parser and encoder (RFC 8259), enough for the
// control API's messages and nothing more. Internal to the client (C++17).
//
// Strict on purpose: the only producer is our own daemon, so anything outside
// the grammar (comments, trailing commas, NaN, lone surrogates, invalid UTF-8,
// duplicate keys, leading zeros) means a bug or a wrong peer, and rejecting it
// with the byte offset is more useful than guessing.
#ifndef LAZYROOT_CLIENT_JSON_HPP
#define LAZYROOT_CLIENT_JSON_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lazyroot::json {

enum class Type { Null, Bool, Number, String, Array, Object };

const char* type_name(Type type);

struct Member;

class Value {
 public:
  Value() = default;  // null
  static Value boolean(bool b);
  static Value string(std::string s);
  static Value number(uint64_t n);
  // A number from its JSON text; the caller guarantees the grammar (the
  // parser does), so integers of any size stay exact.
  static Value number_text(std::string text);
  static Value array();
  static Value object();

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }

  bool as_bool() const { return bool_; }
  // String contents (UTF-8), or a number's JSON text.
  const std::string& text() const { return text_; }
  const std::vector<Value>& items() const { return items_; }
  const std::vector<Member>& members() const { return members_; }

  // Object member by key, or nullptr when absent (or when not an object).
  const Value* find(std::string_view key) const;

  void push(Value item);                   // arrays only
  void set(std::string key, Value value);  // objects only; replaces
  // Objects only; the caller guarantees `key` is new (the parser checks
  // with a hash set: set() would make parsing quadratic in the key count).
  void append(std::string key, Value value);

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  std::string text_;
  std::vector<Value> items_;
  std::vector<Member> members_;
};

struct Member {
  std::string key;
  Value value;
};

struct Limits {
  std::size_t max_depth = 64;              // nested arrays/objects
  std::size_t max_bytes = 4 * 1024 * 1024; // whole document
};

// Parses one JSON document (surrounding whitespace allowed). On failure
// returns false and sets `error` to what was wrong and at which byte.
bool parse(std::string_view text, Value& out, std::string& error,
           const Limits& limits = Limits());

// Serialises `value` compactly. Fails (false + error) only when a string is
// not valid UTF-8: such a string has no JSON representation.
bool encode(const Value& value, std::string& out, std::string& error);

// A JSON number that is a non-negative integer no larger than `max`, or
// (proto3 JSON writes 64-bit integers as strings) a string of such digits.
bool to_unsigned(const Value& value, uint64_t max, uint64_t& out);

// Checks UTF-8 strictly (no overlongs, no surrogates, nothing above
// U+10FFFF). Returns the offset of the first bad byte, or npos.
std::size_t find_invalid_utf8(std::string_view s);

}  // namespace lazyroot::json

#endif  // LAZYROOT_CLIENT_JSON_HPP

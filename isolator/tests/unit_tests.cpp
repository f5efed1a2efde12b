// Unit tests of the client's JSON, HTTP framing and message codec. No I/O:
// the socket side is tested by test_cli.py against a mock daemon. The
// isolator's rules, unpin queue and hook logic are in isolator_tests.cpp;
// main() below runs both.
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "check.hpp"
#include "codec.hpp"
#include "http.hpp"
#include "json.hpp"

namespace {

using lazyroot::json::Type;
using lazyroot::json::Value;

bool parses(const std::string& text, Value* out = nullptr, std::string* error = nullptr) {
  Value v;
  std::string e;
  bool ok = lazyroot::json::parse(text, v, e);
  if (out) *out = v;
  if (error) *error = e;
  return ok;
}

std::string parsed_string(const std::string& json_text) {
  Value v;
  if (!parses(json_text, &v) || v.type() != Type::String) return "<not a string>";
  return v.text();
}

// ---------------------------------------------------------------------------
// JSON

void json_basic_values() {
  Value v;
  CHECK(parses(" {\"a\": [1, true, false, null, \"x\", {}], \"b\": {\"c\": -2.5e3}} ", &v));
  CHECK(v.type() == Type::Object);
  const Value* a = v.find("a");
  CHECK(a != nullptr && a->type() == Type::Array && a->items().size() == 6);
  if (a && a->items().size() == 6) {
    CHECK(a->items()[0].type() == Type::Number && a->items()[0].text() == "1");
    CHECK(a->items()[1].type() == Type::Bool && a->items()[1].as_bool());
    CHECK(a->items()[2].type() == Type::Bool && !a->items()[2].as_bool());
    CHECK(a->items()[3].is_null());
    CHECK_EQ(a->items()[4].text(), std::string("x"));
    CHECK(a->items()[5].type() == Type::Object && a->items()[5].members().empty());
  }
  const Value* b = v.find("b");
  CHECK(b != nullptr && b->find("c") != nullptr && b->find("c")->text() == "-2.5e3");
  CHECK(v.find("missing") == nullptr);
  CHECK(parses("\"top-level string\""));
  CHECK(parses("42"));
  CHECK(parses("[]"));
}

void json_escapes() {
  CHECK_EQ(parsed_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), std::string("\"\\/\b\f\n\r\t"));
  CHECK_EQ(parsed_string("\"\\u0041\\u00e9\\u20AC\""), std::string("A\xc3\xa9\xe2\x82\xac"));
  // A surrogate pair is one code point above U+FFFF: U+1F433 (whale).
  CHECK_EQ(parsed_string("\"\\ud83d\\udc33\""), std::string("\xf0\x9f\x90\xb3"));
  CHECK_EQ(parsed_string("\"\\uDBFF\\uDFFF\""), std::string("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  CHECK_EQ(parsed_string("\"a\\u0000b\""), std::string("a\0b", 3));
  // Raw UTF-8 passes through unchanged.
  CHECK_EQ(parsed_string("\"caf\xc3\xa9 \xf0\x9f\x90\xb3\""), std::string("caf\xc3\xa9 \xf0\x9f\x90\xb3"));

  std::string error;
  CHECK(!parses("\"\\ud83d\"", nullptr, &error));  // lone high surrogate
  CHECK_CONTAINS(error, "surrogate");
  CHECK(!parses("\"\\ud83d\\u0041\""));            // high + non-low
  CHECK(!parses("\"\\ud83dx\""));
  CHECK(!parses("\"\\udc33\""));                   // lone low surrogate
  CHECK(!parses("\"\\ud83d\\ud83d\""));            // high + high
  CHECK(!parses("\"\\u12g4\""));
  CHECK(!parses("\"\\u12\""));
  CHECK(!parses("\"\\x41\""));                     // unknown escape
  CHECK(!parses("\"\\'\""));
  CHECK(!parses("\"tab\there\""));                 // raw control character
  CHECK(!parses("\"new\nline\""));
  CHECK(!parses("\"\x01\""));
}

void json_rejects_invalid_utf8() {
  CHECK(!parses("\"\xc3\""));              // truncated sequence
  CHECK(!parses("\"\xc0\xaf\""));          // overlong '/'
  CHECK(!parses("\"\xe0\x80\xaf\""));      // overlong, 3 bytes
  CHECK(!parses("\"\xed\xa0\x80\""));      // UTF-16 surrogate in UTF-8
  CHECK(!parses("\"\xf4\x90\x80\x80\""));  // above U+10FFFF
  CHECK(!parses("\"\x80\""));              // stray continuation byte
  CHECK(!parses("\"\xff\""));
  CHECK(!parses("\xef\xbb\xbf{}"));        // a BOM is not JSON
  CHECK_EQ(lazyroot::json::find_invalid_utf8("ok\xc3\xa9" "bad\xc3"), 7UL);
}

void json_nesting_limit() {
  auto nested = [](std::size_t depth, char open, const char* close) {
    std::string s;
    for (std::size_t i = 0; i < depth; ++i) s += open == '{' ? "{\"k\":" : "[";
    s += "0";
    for (std::size_t i = 0; i < depth; ++i) s += close;
    return s;
  };
  CHECK(parses(nested(64, '[', "]")));
  std::string error;
  CHECK(!parses(nested(65, '[', "]"), nullptr, &error));
  CHECK_CONTAINS(error, "nesting deeper than 64");
  CHECK(parses(nested(64, '{', "}")));
  CHECK(!parses(nested(65, '{', "}")));
  // Far deeper input is refused at the limit, without recursing further.
  CHECK(!parses(std::string(1000000, '[')));

  lazyroot::json::Limits tight;
  tight.max_depth = 2;
  Value v;
  CHECK(lazyroot::json::parse("[[1]]", v, error, tight));
  CHECK(!lazyroot::json::parse("[[[1]]]", v, error, tight));
  tight.max_bytes = 4;
  CHECK(!lazyroot::json::parse("[1,2]", v, error, tight));
  CHECK_CONTAINS(error, "exceeds the limit");
}

void json_rejects_malformed() {
  const char* bad[] = {
      "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "{\"a\":1,}", "{'a':1}", "{a:1}", "{\"a\" 1}",
      "{\"a\":}", "[1 2]", "01", "-", "-a", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity",
      "-Infinity", "tru", "nul", "True", "/*c*/{}", "{} // c", "{} x", "{}{}", "\"abc", "\"abc\\",
      "{\"a\":1,\"a\":2}", "[1]]", "\"\\u\"", "[\"a\"\"b\"]",
  };
  for (const char* text : bad) {
    std::string error;
    bool ok = parses(text, nullptr, &error);
    record(!ok, __FILE__, __LINE__, std::string("rejects ") + show(std::string(text)));
    record(ok || error.find("invalid JSON at byte") != std::string::npos || error.find("limit") != std::string::npos,
           __FILE__, __LINE__, "error names a byte offset: " + error);
  }
  std::string error;
  parses("[1,]", nullptr, &error);
  CHECK_CONTAINS(error, "at byte 3");
  parses("{\"a\":1,\"a\":2}", nullptr, &error);
  CHECK_CONTAINS(error, "duplicate object key \"a\"");
}

void json_numbers() {
  const char* good[] = {"0", "-0", "7", "123", "-45", "1.5", "0.25", "1e10", "1E+2", "-1.25e-3", "18446744073709551616"};
  for (const char* text : good) {
    Value v;
    bool ok = parses(text, &v);
    record(ok && v.type() == Type::Number && v.text() == text, __FILE__, __LINE__,
           std::string("number keeps its text: ") + text);
  }
  auto to_u = [](const char* json_text, uint64_t max, uint64_t* out) {
    Value v;
    if (!parses(json_text, &v)) return false;
    return lazyroot::json::to_unsigned(v, max, *out);
  };
  uint64_t n = 0;
  const uint64_t u64 = ~0ULL, u32 = 0xFFFFFFFFULL;
  CHECK(to_u("18446744073709551615", u64, &n) && n == u64);
  CHECK(!to_u("18446744073709551616", u64, &n));
  CHECK(!to_u("99999999999999999999", u64, &n));
  CHECK(to_u("4294967295", u32, &n) && n == u32);
  CHECK(!to_u("4294967296", u32, &n));
  CHECK(to_u("0", u32, &n) && n == 0);
  CHECK(!to_u("-1", u64, &n));
  CHECK(!to_u("-0", u64, &n));
  CHECK(!to_u("1.0", u64, &n));
  CHECK(!to_u("1e3", u64, &n));
  CHECK(to_u("\"42\"", u64, &n) && n == 42);  // proto3 JSON's 64-bit form
  CHECK(!to_u("\"042\"", u64, &n));
  CHECK(!to_u("\"\"", u64, &n));
  CHECK(!to_u("\" 1\"", u64, &n));
  CHECK(!to_u("true", u64, &n));
  CHECK(!to_u("5", 4, &n));
  CHECK(to_u("9", 9, &n) && n == 9);
}

void json_encoder() {
  std::string out, error;
  Value obj = Value::object();
  obj.set("quote\"back\\slash", Value::string("ctl\x01\x1f\n\t\r\b\f del\x7f"));
  obj.set("utf8", Value::string("caf\xc3\xa9 \xf0\x9f\x90\xb3"));
  Value arr = Value::array();
  arr.push(Value::number(18446744073709551615ULL));
  arr.push(Value::boolean(false));
  arr.push(Value());
  arr.push(Value::object());
  obj.set("list", arr);
  CHECK(lazyroot::json::encode(obj, out, error));
  CHECK_EQ(out, std::string("{\"quote\\\"back\\\\slash\":\"ctl\\u0001\\u001f\\n\\t\\r\\b\\f del\\u007f\","
                            "\"utf8\":\"caf\xc3\xa9 \xf0\x9f\x90\xb3\","
                            "\"list\":[18446744073709551615,false,null,{}]}"));
  // Round trip: what we write, we read back identically.
  Value back;
  CHECK(lazyroot::json::parse(out, back, error));
  const Value* key = back.find("quote\"back\\slash");
  CHECK(key != nullptr && key->text() == "ctl\x01\x1f\n\t\r\b\f del\x7f");
  CHECK(back.find("utf8") != nullptr && back.find("utf8")->text() == "caf\xc3\xa9 \xf0\x9f\x90\xb3");
  // Setting a key again replaces it: no duplicate keys on the wire.
  obj.set("utf8", Value::string("x"));
  CHECK(lazyroot::json::encode(obj, out, error));
  CHECK(out.find("\"utf8\":\"x\"") != std::string::npos && out.find("caf") == std::string::npos);
  // Invalid UTF-8 has no JSON form.
  CHECK(!lazyroot::json::encode(Value::string("bad\xff"), out, error));
  CHECK_CONTAINS(error, "not valid UTF-8");
  Value bad_key = Value::object();
  bad_key.set("\xc3", Value());
  CHECK(!lazyroot::json::encode(bad_key, out, error));
}

// ---------------------------------------------------------------------------
// HTTP

using lazyroot::http::ParserLimits;
using lazyroot::http::ResponseParser;
using State = ResponseParser::State;

// Feeds `bytes` in pieces of `step` bytes (0: all at once), then EOF if asked.
State feed(ResponseParser& p, const std::string& bytes, std::size_t step, bool eof) {
  if (step == 0) {
    p.feed(bytes);
  } else {
    for (std::size_t i = 0; i < bytes.size(); i += step) p.feed(std::string_view(bytes).substr(i, step));
  }
  return eof ? p.finish() : p.state();
}

void http_request() {
  CHECK_EQ(lazyroot::http::build_post("/lazyroot.v1.Control/Pin", "{\"a\":1}"),
           std::string("POST /lazyroot.v1.Control/Pin HTTP/1.1\r\n"
                       "Host: localhost\r\n"
                       "Content-Type: application/json\r\n"
                       "Accept: application/json\r\n"
                       "Content-Length: 7\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "{\"a\":1}"));
}

void http_content_length() {
  const std::string answer =
      "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
  for (std::size_t step : {0, 1, 2, 7}) {
    ResponseParser p;
    CHECK(feed(p, answer, step, false) == State::Complete);
    CHECK_EQ(p.status(), 200);
    CHECK_EQ(p.body(), std::string("{\"ok\":true}"));
  }
  ResponseParser p;  // bytes after the answer are ignored
  CHECK(feed(p, answer + "garbage", 0, true) == State::Complete);
  CHECK_EQ(p.body(), std::string("{\"ok\":true}"));

  ResponseParser empty;
  CHECK(feed(empty, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, false) == State::Complete);
  CHECK_EQ(empty.status(), 404);
  CHECK(empty.body().empty());

  ResponseParser no_reason;
  CHECK(feed(no_reason, "HTTP/1.0 500\r\nContent-Length: 2\r\n\r\n{}", 0, false) == State::Complete);
  CHECK_EQ(no_reason.status(), 500);

  ResponseParser lf_only;  // bare LF line ends are accepted (RFC 9112 2.2)
  CHECK(feed(lf_only, "HTTP/1.1 200 OK\nContent-Length: 2\n\n{}", 0, false) == State::Complete);
  CHECK_EQ(lf_only.body(), std::string("{}"));
}

void http_chunked() {
  const std::string answer =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
      "5\r\nhello\r\n6;name=value\r\n world\r\nA \r\n0123456789\r\n0\r\nX-Trailer: a\r\n\r\n";
  for (std::size_t step : {0, 1, 3, 10}) {
    ResponseParser p;
    CHECK(feed(p, answer, step, false) == State::Complete);
    CHECK_EQ(p.body(), std::string("hello world0123456789"));
  }
  // Transfer-Encoding overrides Content-Length.
  ResponseParser both;
  CHECK(feed(both, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 0,
             false) == State::Complete);
  CHECK_EQ(both.body(), std::string("{}"));

  ResponseParser cut;  // the last chunk never arrives
  CHECK(feed(cut, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", 0, true) == State::Error);
  CHECK(cut.truncated());

  const char* bad[] = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
  };
  for (const char* text : bad) {
    ResponseParser p;
    State s = feed(p, text, 0, false);
    record(s == State::Error && !p.truncated(), __FILE__, __LINE__, std::string("rejects ") + show(std::string(text)));
  }
}

void http_interim_and_special() {
  ResponseParser p;
  CHECK(feed(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1, false) ==
        State::Complete);
  CHECK_EQ(p.status(), 200);
  ResponseParser no_content;
  CHECK(feed(no_content, "HTTP/1.1 204 No Content\r\n\r\n", 0, false) == State::Complete);
  ResponseParser switching;
  CHECK(feed(switching, "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, false) == State::Error);
}

void http_until_eof() {
  ResponseParser p;
  CHECK(feed(p, "HTTP/1.1 200 OK\r\n\r\n{\"a\":", 0, false) == State::Incomplete);
  CHECK(feed(p, "1}", 0, true) == State::Complete);
  CHECK_EQ(p.body(), std::string("{\"a\":1}"));
}

void http_truncated() {
  ResponseParser nothing;
  CHECK(nothing.finish() == State::Error);
  CHECK(nothing.truncated());
  CHECK_CONTAINS(nothing.error(), "without answering");

  ResponseParser head;
  CHECK(feed(head, "HTTP/1.1 200 OK\r\nContent-Len", 0, true) == State::Error);
  CHECK(head.truncated());

  ResponseParser body;
  CHECK(feed(body, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"", 0, true) == State::Error);
  CHECK(body.truncated());
  CHECK_CONTAINS(body.error(), "after 4 of 10 body bytes");
}

void http_malformed() {
  const char* bad[] = {
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 099 Low\r\n\r\n",
      "FOO\r\n\r\n",
      "<html>\r\n",
      "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
  };
  for (const char* text : bad) {
    ResponseParser p;
    State s = feed(p, text, 0, false);
    record(s == State::Error && !p.truncated(), __FILE__, __LINE__, std::string("rejects ") + show(std::string(text)));
  }
  ResponseParser same;  // repeated but equal Content-Length is fine
  CHECK(feed(same, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 0, false) ==
        State::Complete);
}

void http_limits() {
  ParserLimits limits;
  limits.max_body_bytes = 10;
  limits.max_head_bytes = 100;
  {
    ResponseParser p(limits);
    CHECK(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 0, false) == State::Error);
    CHECK_CONTAINS(p.error(), "exceeds 10 bytes");
  }
  {
    ResponseParser p(limits);
    CHECK(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0, false) == State::Complete);
  }
  {
    ResponseParser p(limits);
    CHECK(feed(p, "HTTP/1.1 200 OK\r\nX: " + std::string(200, 'a'), 0, false) == State::Error);
    CHECK_CONTAINS(p.error(), "headers exceed 100 bytes");
  }
  {
    ResponseParser p(limits);  // many small headers add up
    std::string text = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 20; ++i) text += "X: y\r\n";
    CHECK(feed(p, text, 3, false) == State::Error);
  }
  {
    ResponseParser p(limits);
    CHECK(feed(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n", 0, false) ==
          State::Error);
  }
  {
    ResponseParser p(limits);
    CHECK(feed(p, "HTTP/1.1 200 OK\r\n\r\n" + std::string(11, 'x'), 0, false) == State::Error);
  }
  {
    ResponseParser p;  // default: 4 MiB body
    std::string body(4 * 1024 * 1024, 'x');
    CHECK(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body, 65536,
               false) == State::Complete);
    ResponseParser q;
    CHECK(feed(q, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size() + 1) + "\r\n\r\n", 0, false) ==
          State::Error);
  }
}

// ---------------------------------------------------------------------------
// Codec

namespace codec = lazyroot::codec;

void codec_requests() {
  lazyroot::PrepareImageRequest prepare;
  prepare.fqrn = "images.example.org";
  prepare.path = "/images/caf\xc3\xa9";
  auto body = codec::encode(prepare);
  CHECK(body.ok() && body.value() == "{\"fqrn\":\"images.example.org\",\"path\":\"/images/caf\xc3\xa9\"}");
  prepare.tag = "v1";
  body = codec::encode(prepare);
  CHECK(body.ok() && body.value() == "{\"fqrn\":\"images.example.org\",\"path\":\"/images/caf\xc3\xa9\",\"tag\":\"v1\"}");

  lazyroot::PinRequest pin;
  pin.container_id = "parent.child";
  pin.image_id = "sha512-00";
  body = codec::encode(pin);
  CHECK(body.ok() && body.value() == "{\"container_id\":\"parent.child\",\"image_id\":\"sha512-00\"}");

  // By appc name: image_id is left out, the labels are an array of
  // {"key","value"} objects in the task's order (an empty value included),
  // operator_pin is left out while false.
  lazyroot::PinRequest by_name;
  by_name.container_id = "c1";
  by_name.appc_name = "images.example.org/images/caf\xc3\xa9";
  by_name.appc_labels.push_back(lazyroot::AppcLabel("version", "latest"));
  by_name.appc_labels.push_back(lazyroot::AppcLabel("os", "linux"));
  by_name.appc_labels.push_back(lazyroot::AppcLabel("empty", ""));
  body = codec::encode(by_name);
  CHECK_EQ(body.ok() ? body.value() : body.error().describe(),
           std::string("{\"container_id\":\"c1\",\"appc_name\":\"images.example.org/images/caf\xc3\xa9\","
                       "\"appc_labels\":[{\"key\":\"version\",\"value\":\"latest\"},"
                       "{\"key\":\"os\",\"value\":\"linux\"},{\"key\":\"empty\",\"value\":\"\"}]}"));
  by_name.appc_labels.clear();
  body = codec::encode(by_name);  // no labels: no array
  CHECK_EQ(body.ok() ? body.value() : body.error().describe(),
           std::string("{\"container_id\":\"c1\",\"appc_name\":\"images.example.org/images/caf\xc3\xa9\"}"));
  pin.operator_pin = true;  // only `lazyroot pin` sets it; encoded when true
  body = codec::encode(pin);
  CHECK_EQ(body.ok() ? body.value() : body.error().describe(),
           std::string("{\"container_id\":\"parent.child\",\"image_id\":\"sha512-00\",\"operator_pin\":true}"));
  by_name.appc_labels.push_back(lazyroot::AppcLabel("k\xff", "v"));  // not UTF-8: no JSON for it
  body = codec::encode(by_name);
  CHECK(!body.ok() && body.error().code == "invalid_argument");

  lazyroot::SyncPinsRequest sync;
  body = codec::encode(sync);
  CHECK(body.ok() && body.value() == "{\"container_ids\":[]}");
  sync.container_ids = {"a", "b\"c"};
  body = codec::encode(sync);
  CHECK(body.ok() && body.value() == "{\"container_ids\":[\"a\",\"b\\\"c\"]}");

  lazyroot::UnpinRequest unpin;
  unpin.container_id = "bad\xff";
  body = codec::encode(unpin);
  CHECK(!body.ok() && body.error().code == "invalid_argument");
  CHECK_EQ(codec::encode_empty(), std::string("{}"));
}

void codec_answers() {
  auto health = codec::decode_health(
      "{\"status\":\"ok\",\"version\":\"0.1.0\",\"images\":3,\"pins\":2,\"mounts\":1,\"pid\":\"4242\","
      "\"future_field\":{\"nested\":[1,{\"x\":null}]},\"another\":1.5}");
  CHECK(health.ok());
  if (health.ok()) {
    CHECK_EQ(health.value().status, std::string("ok"));
    CHECK_EQ(health.value().images, 3u);
    CHECK_EQ(health.value().pins, 2u);
    CHECK_EQ(health.value().mounts, 1u);
    CHECK_EQ(static_cast<unsigned long long>(health.value().pid), 4242ULL);
  }

  auto image = codec::decode_image("{\"id\":\"sha512-ab\",\"revision\":18446744073709551615,\"rootfs\":null,"
                                   "\"pinned_by\":[\"c1\",\"c2\"]}");
  CHECK(image.ok());
  if (image.ok()) {
    CHECK_EQ(image.value().id, std::string("sha512-ab"));
    CHECK_EQ(static_cast<unsigned long long>(image.value().revision), 18446744073709551615ULL);
    CHECK(image.value().rootfs.empty());  // null is the default
    CHECK(image.value().fqrn.empty());    // absent is the default
    CHECK(image.value().pinned_by.size() == 2 && image.value().pinned_by[1] == "c2");
  }

  auto unpin = codec::decode_unpin("{}");
  CHECK(unpin.ok() && !unpin.value().was_pinned);
  unpin = codec::decode_unpin("{\"was_pinned\":true}");
  CHECK(unpin.ok() && unpin.value().was_pinned);

  auto list = codec::decode_list_images(
      "{\"images\":[{\"id\":\"a\"},{\"id\":\"b\",\"pinned_by\":[]}],\"pins\":[{\"container_id\":\"c\"}]}");
  CHECK(list.ok() && list.value().images.size() == 2 && list.value().pins.size() == 1 &&
        list.value().images[1].id == "b" && list.value().pins[0].container_id == "c");
  auto pinned = codec::decode_pin("{\"container_id\":\"c\",\"image_id\":\"sha512-1\",\"operator_pin\":true}");
  CHECK(pinned.ok() && pinned.value().operator_pin && pinned.value().image_id == "sha512-1");
  pinned = codec::decode_pin("{\"container_id\":\"c\"}");
  CHECK(pinned.ok() && !pinned.value().operator_pin);

  auto sync = codec::decode_sync_pins("{\"removed\":[\"x\",\"y\"]}");
  CHECK(sync.ok() && sync.value().removed.size() == 2);
}

void codec_rejects_wrong_types() {
  std::vector<std::pair<std::function<lazyroot::Error()>, std::string>> cases = {
      {[] { return codec::decode_image("{\"revision\":\"x\"}").error(); }, "revision"},
      {[] { return codec::decode_image("{\"revision\":-1}").error(); }, "revision"},
      {[] { return codec::decode_image("{\"revision\":1.5}").error(); }, "revision"},
      {[] { return codec::decode_image("{\"id\":5}").error(); }, "id must be a string, got a number"},
      {[] { return codec::decode_image("{\"pinned_by\":[1]}").error(); }, "pinned_by must hold only strings"},
      {[] { return codec::decode_image("{\"pinned_by\":\"a\"}").error(); }, "pinned_by"},
      {[] { return codec::decode_image("[]").error(); }, "must be a JSON object"},
      {[] { return codec::decode_image("not json").error(); }, "invalid JSON at byte 0"},
      {[] { return codec::decode_health("{\"images\":4294967296}").error(); }, "images"},
      {[] { return codec::decode_unpin("{\"was_pinned\":\"yes\"}").error(); }, "was_pinned"},
      {[] { return codec::decode_list_images("{\"images\":[{},{\"rootfs\":1}]}").error(); }, "images[1].rootfs"},
      {[] { return codec::decode_list_images("{\"images\":[{},7]}").error(); }, "images[1] must be a JSON object"},
      {[] { return codec::decode_list_images("{\"pins\":{}}").error(); }, "pins must be an array"},
      {[] { return codec::decode_sync_pins("{\"removed\":[null]}").error(); }, "removed"},
      {[] { return codec::decode_pin("{\"operator_pin\":\"yes\"}").error(); }, "operator_pin must be a boolean"},
  };
  for (auto& c : cases) {
    lazyroot::Error e = c.first();
    record(e.code == "internal" && e.message.find(c.second) != std::string::npos, __FILE__, __LINE__,
           "error \"" + e.message + "\" (" + e.code + ") mentions \"" + c.second + "\"");
  }
}

void codec_errors() {
  lazyroot::Error e = codec::decode_error(404, "{\"error\":\"no image sha512-x\",\"code\":\"not_found\",\"extra\":1}");
  CHECK_EQ(e.code, std::string("not_found"));
  CHECK_EQ(e.message, std::string("no image sha512-x"));
  CHECK_EQ(e.http_status, 404);
  e = codec::decode_error(400, "{\"error\":\"bad path\"}");  // no code: from the status
  CHECK_EQ(e.code, std::string("invalid_argument"));
  CHECK_EQ(e.message, std::string("bad path"));
  e = codec::decode_error(404, "Not Found\n");
  CHECK_EQ(e.code, std::string("not_found"));
  CHECK_CONTAINS(e.message, "HTTP 404: Not Found?");
  e = codec::decode_error(502, "");
  CHECK_EQ(e.code, std::string("internal"));
  CHECK_EQ(e.http_status, 502);
  CHECK_EQ(e.message, std::string("the daemon answered HTTP 502"));
  e = codec::decode_error(409, "{\"code\":7}");  // malformed Error: fall back
  CHECK_EQ(e.code, std::string("already_exists"));
  CHECK_EQ(codec::code_for_status(403), std::string("permission_denied"));
  CHECK_EQ(codec::code_for_status(503), std::string("unavailable"));
}

}  // namespace

int main() {
  std::vector<TestCase> tests = {
      {"json_basic_values", json_basic_values},
      {"json_escapes", json_escapes},
      {"json_rejects_invalid_utf8", json_rejects_invalid_utf8},
      {"json_nesting_limit", json_nesting_limit},
      {"json_rejects_malformed", json_rejects_malformed},
      {"json_numbers", json_numbers},
      {"json_encoder", json_encoder},
      {"http_request", http_request},
      {"http_content_length", http_content_length},
      {"http_chunked", http_chunked},
      {"http_interim_and_special", http_interim_and_special},
      {"http_until_eof", http_until_eof},
      {"http_truncated", http_truncated},
      {"http_malformed", http_malformed},
      {"http_limits", http_limits},
      {"codec_requests", codec_requests},
      {"codec_answers", codec_answers},
      {"codec_rejects_wrong_types", codec_rejects_wrong_types},
      {"codec_errors", codec_errors},
  };
  for (const TestCase& t : isolator_tests()) tests.push_back(t);
  int failed_tests = 0;
  for (auto& t : tests) {
    int before = g_failures;
    t.fn();
    bool ok = g_failures == before;
    if (!ok) ++failed_tests;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
  }
  int total = static_cast<int>(tests.size());
  std::printf("unit tests: %d passed, %d failed (%d checks, %d failed)\n", total - failed_tests, failed_tests,
              g_checks.load(), g_failures.load());
  return g_failures == 0 ? 0 : 1;
}

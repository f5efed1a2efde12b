// HTTP/1.1 framing for the control API: building a request, and an
// incremental, bounded parser for the answer. No I/O here (see transport.hpp),
// so the parser can be tested byte by byte.
#ifndef LAZYROOT_CLIENT_HTTP_HPP
#define LAZYROOT_CLIENT_HTTP_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lazyroot::http {

// "POST <target> HTTP/1.1" with Host, Content-Type: application/json,
// Content-Length and Connection: close.
std::string build_post(std::string_view target, std::string_view body);

struct ParserLimits {
  std::size_t max_head_bytes = 64 * 1024;         // status line + headers (each answer)
  std::size_t max_body_bytes = 4 * 1024 * 1024;   // decoded body
};

class ResponseParser {
 public:
  enum class State { Incomplete, Complete, Error };

  explicit ResponseParser(const ParserLimits& limits = ParserLimits()) : limits_(limits) {}

  // Feeds the next bytes received. Bytes after a complete answer are ignored
  // (the request said Connection: close; nothing may follow).
  State feed(std::string_view bytes);
  // The peer closed the connection: completes a body delimited by EOF, or
  // fails an answer cut short.
  State finish();

  State state() const { return state_; }
  int status() const { return status_; }
  const std::string& body() const { return body_; }
  const std::string& error() const { return error_; }
  // True when the error is an answer cut short by EOF (a transport problem),
  // false when the bytes themselves broke HTTP (a protocol problem).
  bool truncated() const { return truncated_; }

 private:
  enum class Phase { Head, Body, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilEof, Done };

  State fail(const std::string& what, bool truncated = false);
  State run();
  // Takes one line (without CR LF) from the buffer, or returns false when no
  // full line is buffered yet.
  bool take_line(std::string& line);
  State head_line(const std::string& line);
  State head_done();
  State header(const std::string& line);
  State body_bytes();
  State chunk_size_line(const std::string& line);

  ParserLimits limits_;
  State state_ = State::Incomplete;
  Phase phase_ = Phase::Head;
  std::string buf_;      // received, not yet consumed
  std::size_t pos_ = 0;  // consumed prefix of buf_
  std::size_t head_bytes_ = 0;
  bool saw_status_ = false;
  int status_ = 0;
  bool has_length_ = false;
  uint64_t length_ = 0;
  bool chunked_ = false;
  uint64_t chunk_left_ = 0;
  std::string body_;
  std::string error_;
  bool truncated_ = false;
};

}  // namespace lazyroot::http

#endif  // LAZYROOT_CLIENT_HTTP_HPP

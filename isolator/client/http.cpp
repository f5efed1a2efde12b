#include "http.hpp"

#include <algorithm>

namespace lazyroot::http {

std::string build_post(std::string_view target, std::string_view body) {
  std::string req;
  req.reserve(160 + target.size() + body.size());
  req += "POST ";
  req += target;
  req += " HTTP/1.1\r\n"
         "Host: localhost\r\n"
         "Content-Type: application/json\r\n"
         "Accept: application/json\r\n"
         "Content-Length: ";
  req += std::to_string(body.size());
  req += "\r\n"
         "Connection: close\r\n"
         "\r\n";
  req += body;
  return req;
}

namespace {

// Longest line accepted outside the head (chunk-size lines, trailers).
constexpr std::size_t kMaxLine = 8 * 1024;

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

ResponseParser::State ResponseParser::fail(const std::string& what, bool truncated) {
  state_ = State::Error;
  error_ = what;
  truncated_ = truncated;
  return state_;
}

ResponseParser::State ResponseParser::feed(std::string_view bytes) {
  if (state_ != State::Incomplete) return state_;
  buf_.append(bytes.data(), bytes.size());
  return run();
}

ResponseParser::State ResponseParser::finish() {
  if (state_ != State::Incomplete) return state_;
  switch (phase_) {
    case Phase::UntilEof:
      phase_ = Phase::Done;
      state_ = State::Complete;
      return state_;
    case Phase::Head:
      if (!saw_status_ && buf_.empty()) {
        return fail("the daemon closed the connection without answering", true);
      }
      return fail("the daemon closed the connection in the middle of the answer's headers", true);
    case Phase::Body:
      return fail("the daemon closed the connection after " + std::to_string(body_.size()) +
                      " of " + std::to_string(length_) + " body bytes",
                  true);
    default:
      return fail("the daemon closed the connection in the middle of a chunked body (" +
                      std::to_string(body_.size()) + " bytes received)",
                  true);
  }
}

bool ResponseParser::take_line(std::string& line) {
  std::size_t nl = buf_.find('\n', pos_);
  if (nl == std::string::npos) return false;
  std::size_t end = nl;
  if (end > pos_ && buf_[end - 1] == '\r') --end;
  line.assign(buf_, pos_, end - pos_);
  pos_ = nl + 1;
  return true;
}

ResponseParser::State ResponseParser::run() {
  std::string line;
  for (;;) {
    // Drop the consumed prefix now and then so the buffer stays small
    // without copying on every line.
    if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    std::size_t available = buf_.size() - pos_;
    switch (phase_) {
      case Phase::Head: {
        if (!take_line(line)) {
          if (head_bytes_ + available > limits_.max_head_bytes) {
            return fail("the answer's headers exceed " + std::to_string(limits_.max_head_bytes) +
                        " bytes");
          }
          return state_;
        }
        head_bytes_ += line.size() + 2;
        if (head_bytes_ > limits_.max_head_bytes) {
          return fail("the answer's headers exceed " + std::to_string(limits_.max_head_bytes) +
                      " bytes");
        }
        State s = !saw_status_ ? head_line(line) : line.empty() ? head_done() : header(line);
        if (s == State::Error) return s;
        break;
      }
      case Phase::Body: {
        std::size_t n = static_cast<std::size_t>(
            std::min<uint64_t>(available, length_ - body_.size()));
        body_.append(buf_, pos_, n);
        pos_ += n;
        if (body_.size() == length_) {
          phase_ = Phase::Done;
          break;
        }
        return state_;
      }
      case Phase::ChunkSize:
      case Phase::ChunkDataEnd:
      case Phase::Trailers: {
        if (!take_line(line)) {
          if (available > kMaxLine) return fail("a chunk-size or trailer line is too long");
          return state_;
        }
        if (phase_ == Phase::ChunkSize) {
          if (chunk_size_line(line) == State::Error) return state_;
        } else if (phase_ == Phase::ChunkDataEnd) {
          if (!line.empty()) return fail("a chunk's data is not followed by CRLF");
          phase_ = Phase::ChunkSize;
        } else {
          // Trailer fields carry nothing we need; the empty line ends them.
          head_bytes_ += line.size() + 2;
          if (head_bytes_ > limits_.max_head_bytes) return fail("the answer's trailers are too long");
          if (line.empty()) phase_ = Phase::Done;
        }
        break;
      }
      case Phase::ChunkData: {
        std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(available, chunk_left_));
        body_.append(buf_, pos_, n);
        pos_ += n;
        chunk_left_ -= n;
        if (chunk_left_ == 0) {
          phase_ = Phase::ChunkDataEnd;
          break;
        }
        return state_;
      }
      case Phase::UntilEof: {
        if (body_.size() + available > limits_.max_body_bytes) {
          return fail("the answer's body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes");
        }
        body_.append(buf_, pos_, available);
        pos_ += available;
        return state_;
      }
      case Phase::Done:
        state_ = State::Complete;
        buf_.clear();
        pos_ = 0;
        return state_;
    }
  }
}

// "HTTP/1.1 200 OK" (the reason phrase may be empty or absent).
ResponseParser::State ResponseParser::head_line(const std::string& line) {
  std::string_view l(line);
  if (l.size() < 12 || l.substr(0, 7) != "HTTP/1." || l[7] < '0' || l[7] > '9' || l[8] != ' ') {
    return fail("the answer does not start with an HTTP/1.x status line");
  }
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (l[i] < '0' || l[i] > '9') return fail("the answer's status code is not three digits");
    status = status * 10 + (l[i] - '0');
  }
  if (l.size() > 12 && l[12] != ' ') return fail("the answer's status code is not three digits");
  if (status < 100 || status > 599) {
    return fail("the answer's status code " + std::to_string(status) + " is out of range");
  }
  status_ = status;
  saw_status_ = true;
  return state_;
}

ResponseParser::State ResponseParser::header(const std::string& line) {
  if (line[0] == ' ' || line[0] == '\t') return fail("obsolete header line folding in the answer");
  std::size_t colon = line.find(':');
  if (colon == std::string::npos || colon == 0) return fail("malformed header line in the answer");
  std::string_view name(line.data(), colon);
  for (char c : name) {
    if (!is_tchar(c)) return fail("malformed header name in the answer");
  }
  std::string_view value = trim(std::string_view(line).substr(colon + 1));
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7F) return fail("control character in an answer header");
  }
  std::string key = lower(name);
  if (key == "content-length") {
    if (value.empty()) return fail("empty Content-Length in the answer");
    uint64_t n = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return fail("Content-Length is not a number");
      if (n > limits_.max_body_bytes) break;  // too large anyway; avoid overflow
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n > limits_.max_body_bytes) {
      return fail("the answer's body of " + std::string(value) + " bytes exceeds " +
                  std::to_string(limits_.max_body_bytes) + " bytes");
    }
    if (has_length_ && n != length_) return fail("conflicting Content-Length headers in the answer");
    has_length_ = true;
    length_ = n;
  } else if (key == "transfer-encoding") {
    if (lower(value) != "chunked") {
      return fail("unsupported Transfer-Encoding \"" + std::string(value) + "\" in the answer");
    }
    chunked_ = true;
  }
  return state_;
}

ResponseParser::State ResponseParser::head_done() {
  if (status_ == 101) return fail("unexpected 101 Switching Protocols");
  if (status_ < 200) {
    // An interim answer (100 Continue, 103 Early Hints): the real one follows.
    saw_status_ = false;
    has_length_ = false;
    chunked_ = false;
    head_bytes_ = 0;
    return state_;
  }
  head_bytes_ = 0;  // from now on counts trailer bytes
  if (status_ == 204 || status_ == 304) {
    phase_ = Phase::Done;
  } else if (chunked_) {
    // RFC 9112 6.3: Transfer-Encoding overrides Content-Length.
    phase_ = Phase::ChunkSize;
  } else if (has_length_) {
    phase_ = length_ == 0 ? Phase::Done : Phase::Body;
  } else {
    phase_ = Phase::UntilEof;
  }
  return state_;
}

// "1a2b[;extension]"
ResponseParser::State ResponseParser::chunk_size_line(const std::string& line) {
  std::string_view l(line);
  std::size_t semi = l.find(';');
  std::string_view hex = trim(semi == std::string_view::npos ? l : l.substr(0, semi));
  if (hex.empty()) return fail("a chunk-size line has no size");
  if (hex.size() > 15) return fail("a chunk size is too large");
  uint64_t n = 0;
  for (char c : hex) {
    uint64_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint64_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<uint64_t>(c - 'A' + 10);
    else return fail("a chunk size is not hexadecimal");
    n = n * 16 + d;
  }
  if (body_.size() + n > limits_.max_body_bytes) {
    return fail("the answer's body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes");
  }
  if (n == 0) {
    phase_ = Phase::Trailers;
  } else {
    chunk_left_ = n;
    phase_ = Phase::ChunkData;
  }
  return state_;
}

}  // namespace lazyroot::http

// One HTTP/1.1 exchange over the daemon's Unix socket, bounded in time and
// size. Internal to the client.
#ifndef LAZYROOT_CLIENT_TRANSPORT_HPP
#define LAZYROOT_CLIENT_TRANSPORT_HPP

#include <string>

#include "result.hpp"

namespace lazyroot::transport {

struct Answer {
  int status = 0;
  std::string body;
};

// Connects to `socket_path`, sends `request` (a complete HTTP request) and
// reads the whole answer. The whole exchange, connect included, must finish
// within `timeout_ms`: a daemon that accepts but never answers, or trickles
// bytes, cannot hold the caller longer than that.
//
// Errors: "unavailable" (cannot connect, timeout, connection reset or closed
// mid-answer; `daemon_absent` set for ENOENT/ECONNREFUSED at connect), or
// "internal" (the bytes are not a well-formed, bounded HTTP answer), or
// "invalid_argument" (socket path too long for sockaddr_un).
Result<Answer> exchange(const std::string& socket_path, const std::string& request, int timeout_ms);

}  // namespace lazyroot::transport

#endif  // LAZYROOT_CLIENT_TRANSPORT_HPP

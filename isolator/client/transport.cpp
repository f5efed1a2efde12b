#include "transport.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "http.hpp"

namespace lazyroot::transport {

namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string seconds(int ms) {
  char buf[32];
  if (ms % 1000 == 0) {
    std::snprintf(buf, sizeof buf, "%d s", ms / 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g s", ms / 1000.0);
  }
  return buf;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return deadline > Clock::now() ? 1 : 0;
  return left > 1000 * 1000 * 1000 ? 1000 * 1000 * 1000 : static_cast<int>(left);
}

// 1: ready (or hung up / in error: the next send/recv tells which),
// 0: the deadline passed, -1: poll failed (errno).
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int ms = remaining_ms(deadline);
    if (ms == 0) return 0;
    struct pollfd p;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;  // re-check the deadline: poll may wake early
    return r > 0 ? 1 : -1;
  }
}

Error unavailable(const std::string& message) { return Error("unavailable", message); }

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

Result<Answer> exchange(const std::string& socket_path, const std::string& request, int timeout_ms) {
  const std::string where = "the daemon's socket " + socket_path;
  if (timeout_ms <= 0) timeout_ms = 1;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return Error("invalid_argument", "socket path \"" + socket_path + "\" is empty or longer than the " +
                                         std::to_string(sizeof addr.sun_path - 1) +
                                         " bytes a Unix socket address holds");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return unavailable("cannot create a Unix socket: " + errno_text(errno));

  // A blocking connect() on a Unix socket waits only while the listener's
  // backlog is full; SO_SNDTIMEO bounds that wait. After connecting, poll()
  // against the overall deadline bounds every send and receive.
  struct timeval tv;
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EISCONN) break;
    if (err == ENOENT || err == ECONNREFUSED) {
      Error e = unavailable("cannot connect to " + where + ": " + errno_text(err) +
                            " (is the lazyroot daemon running?)");
      e.daemon_absent = true;
      return e;
    }
    if (err == EAGAIN || err == EINPROGRESS) {
      return unavailable("timed out after " + seconds(timeout_ms) + " connecting to " + where +
                         " (the daemon is not accepting connections)");
    }
    return unavailable("cannot connect to " + where + ": " + errno_text(err));
  }

  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return unavailable("cannot make the socket non-blocking: " + errno_text(errno));
  }

  // Send. If the daemon closes early (EPIPE), it may still have written an
  // error answer (e.g. "request too large"): read it before giving up.
  std::size_t sent = 0;
  std::string send_error;
  while (sent < request.size()) {
    int w = wait_for(fd.get(), POLLOUT, deadline);
    if (w == 0) {
      return unavailable("timed out after " + seconds(timeout_ms) + " sending the request to " + where);
    }
    if (w < 0) return unavailable("poll on " + where + " failed: " + errno_text(errno));
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      send_error = "sending the request to " + where + " failed: " + errno_text(errno);
      break;
    }
    sent += static_cast<std::size_t>(n);
  }

  http::ResponseParser parser;
  std::size_t received = 0;
  char buf[64 * 1024];
  while (parser.state() == http::ResponseParser::State::Incomplete) {
    int w = wait_for(fd.get(), POLLIN, deadline);
    if (w == 0) {
      return unavailable("no complete answer on " + where + " within " + seconds(timeout_ms) + " (" +
                         std::to_string(received) + " bytes received)");
    }
    if (w < 0) return unavailable("poll on " + where + " failed: " + errno_text(errno));
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      if (!send_error.empty()) return unavailable(send_error);
      return unavailable("reading the answer from " + where + " failed: " + errno_text(errno));
    }
    if (n == 0) {
      parser.finish();
      break;
    }
    received += static_cast<std::size_t>(n);
    parser.feed(std::string_view(buf, static_cast<std::size_t>(n)));
  }

  if (parser.state() == http::ResponseParser::State::Error) {
    if (!send_error.empty() && received == 0) return unavailable(send_error);
    if (parser.truncated()) return unavailable(parser.error() + " (socket " + socket_path + ")");
    return Error("internal", "malformed answer from " + where + ": " + parser.error());
  }
  Answer answer;
  answer.status = parser.status();
  answer.body = parser.body();
  return answer;
}

}  // namespace lazyroot::transport

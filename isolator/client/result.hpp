// The value-or-error type every client call returns.
//
// This header, like every public header of the client (daemon_client.hpp,
// ensure_daemon.hpp, messages.hpp), stays C++11-compatible: the Mesos module
// includes it from a translation unit compiled with Mesos' own language level.
#ifndef LAZYROOT_CLIENT_RESULT_HPP
#define LAZYROOT_CLIENT_RESULT_HPP

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

namespace lazyroot {

// An error as the daemon reports it (its `Error` message), or as the client
// classifies a failure that never reached the daemon:
//   "unavailable"      the socket could not be reached, or the daemon stopped
//                      answering (timeout, connection closed mid-answer);
//   "internal"         the daemon's answer was malformed;
//   "invalid_argument" the caller asked for something impossible.
struct Error {
  Error() : daemon_absent(false), http_status(0) {}
  Error(const std::string& code_, const std::string& message_)
      : code(code_), message(message_), daemon_absent(false), http_status(0) {}

  std::string code;
  std::string message;

  // True only when connect() failed with ENOENT or ECONNREFUSED: nothing
  // listens on the socket. ensure_daemon() starts a daemon only then, never
  // when a daemon exists but is slow.
  bool daemon_absent;

  // The HTTP status of the daemon's error answer (4xx, 5xx); 0 when there
  // was none: no complete answer, a 200 the client could not read, or a
  // request the client refused before sending it. It tells a refusal that
  // will not change (4xx) from a failure that may pass (5xx, no answer): see
  // unpin_may_succeed_later() in pin_rules.hpp.
  int http_status;

  // "<code>: <message>", the form the CLI and the module print.
  std::string describe() const { return code + ": " + message; }
};

template <typename T>
class Result {
 public:
  Result(const T& value) : ok_(true), value_(value) {}  // NOLINT: implicit on purpose
  Result(T&& value) : ok_(true), value_(std::move(value)) {}  // NOLINT
  Result(const Error& error) : ok_(false), value_(), error_(error) {}  // NOLINT

  bool ok() const { return ok_; }

  // Calling value() on an error, or error() on a value, is a programming
  // error; failing loudly beats returning a default that looks valid.
  const T& value() const {
    if (!ok_) die("value() called on an error result: " + error_.describe());
    return value_;
  }
  T& value() {
    if (!ok_) die("value() called on an error result: " + error_.describe());
    return value_;
  }
  const Error& error() const {
    if (ok_) die("error() called on a successful result");
    return error_;
  }

 private:
  static void die(const std::string& what) {
    std::fprintf(stderr, "lazyroot client bug: %s\n", what.c_str());
    std::abort();
  }

  bool ok_;
  T value_;
  Error error_;
};

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_RESULT_HPP

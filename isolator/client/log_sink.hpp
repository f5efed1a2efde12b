// Where the client's long-lived parts (UnpinQueue, PinKeeper) report what
// they did: the Mesos module sends it to glog, the CLI to stdout.
//
// C++11-compatible public header (see result.hpp).
#ifndef LAZYROOT_CLIENT_LOG_SINK_HPP
#define LAZYROOT_CLIENT_LOG_SINK_HPP

#include <functional>
#include <string>

namespace lazyroot {

enum class LogLevel {
  kDebug,    // glog VLOG(1): routine, e.g. an image that is not lazyroot's
  kInfo,     // something done: a pin taken, a kept unpin replayed
  kWarning,  // something operators should see: an unpin kept for replay
  kError,    // something lost: an unpin dropped (refused, or the queue is full)
};

// Called from any thread, the retry thread included; must be thread-safe.
// An empty sink discards everything.
typedef std::function<void(LogLevel, const std::string&)> LogSink;

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_LOG_SINK_HPP

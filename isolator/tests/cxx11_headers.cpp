// Compiled with -std=c++11 by `make check`: the Mesos module includes these
// public headers from a translation unit built at Mesos' language level
// (C++11), so they must not use anything newer.
#include "daemon_client.hpp"
#include "ensure_daemon.hpp"
#include "messages.hpp"
#include "result.hpp"

int main() {
  lazyroot::DaemonClient client(lazyroot::kDefaultSocket);
  lazyroot::Result<lazyroot::Pin> r = lazyroot::Error("unavailable", "not called");
  return client.options().timeout_ms > 0 && !r.ok() ? 0 : 1;
}

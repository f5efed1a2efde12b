// Compiled with -std=c++11 by `make check`: the Mesos module includes these
// public headers from a translation unit built at Mesos' language level
// (C++11), so they must not use anything newer.
#include "daemon_client.hpp"
#include "ensure_daemon.hpp"
#include "log_sink.hpp"
#include "messages.hpp"
#include "pin_keeper.hpp"
#include "pin_rules.hpp"
#include "result.hpp"
#include "unpin_queue.hpp"

#include <memory>
#include <string>
#include <vector>

int main() {
  lazyroot::DaemonClient client(lazyroot::kDefaultSocket);
  lazyroot::Result<lazyroot::Pin> r = lazyroot::Error("unavailable", "not called");

  // What the module does with these headers, short of calling the daemon.
  lazyroot::ContainerImage image;
  image.has_image = true;
  image.appc = true;
  image.name = "images.example.org/images/a";
  image.labels.push_back(lazyroot::AppcLabel("version", "latest"));
  lazyroot::PinTarget target;
  bool named = lazyroot::pin_target_for(image, &target);
  lazyroot::PinOutcome outcome = lazyroot::pin_outcome(r, target, "c", client.socket_path());

  lazyroot::LogSink sink = [](lazyroot::LogLevel, const std::string&) {};
  std::shared_ptr<lazyroot::Daemon> daemon(new lazyroot::SocketDaemon(
      "/nonexistent/control.sock", lazyroot::ClientOptions(), std::vector<std::string>(), std::string(), 1000));
  lazyroot::PinKeeper keeper(daemon, sink);
  bool claimed = keeper.claim_cleanup("never-prepared");

  return client.options().timeout_ms > 0 && !r.ok() && named && outcome.kind == lazyroot::PinOutcome::kFailed &&
                 !claimed && keeper.kept_unpins().size() == 0
             ? 0
             : 1;
}

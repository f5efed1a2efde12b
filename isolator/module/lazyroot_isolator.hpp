// The lazyroot Mesos agent isolator (Mesos 1.11): keeps the lazyroot daemon
// from dropping a revision that a container's root filesystem still uses.
//
//   prepare()  a container whose image is an APPC image with a "sha512-" id:
//              make sure the daemon runs (start it detached if its socket is
//              absent), then Pin(container, image). `not_found`: not a
//              lazyroot image, nothing to do. Any other error fails the launch.
//   cleanup()  Unpin(container). Unknown containers are fine.
//   recover()  SyncPins(every container the agent still knows, orphans
//              included: Mesos cleans orphans up later, through cleanup()).
//
// The root filesystem itself comes from Mesos' own appc store and bind (or
// overlay) backend, into which the daemon publishes its images: an isolator
// may not set ContainerLaunchInfo.rootfs, and this one returns no launch info.
//
// Every daemon call blocks (bounded by `timeout_secs`), so it runs on a
// thread of its own, never on a libprocess worker: a slow daemon delays only
// the containers that need it, never the agent.
//
// Written against the Mesos 1.11 public headers at Mesos' language level
// (C++11); the daemon client it links is built as C++17 by the same compiler.
#ifndef LAZYROOT_ISOLATOR_MODULE_HPP
#define LAZYROOT_ISOLATOR_MODULE_HPP

#include <string>
#include <vector>

#include <mesos/mesos.hpp>
#include <mesos/slave/isolator.hpp>

#include <process/future.hpp>

#include <stout/hashset.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>
#include <stout/try.hpp>

namespace lazyroot_isolator {

// The module parameters (see README.md).
struct Config
{
  Config();

  std::string socket;                       // "socket"
  std::vector<std::string> daemonCommand;   // "daemon_command", split on spaces
  std::string daemonLog;                    // "daemon_log"; empty: /dev/null
  int timeoutSecs;                          // "timeout_secs": daemon start, and each call

  static Try<Config> parse(const mesos::Parameters& parameters);
};

// "root.child.grandchild": a nested container's id with its ancestors, root
// first, joined with "." as Mesos prints it.
std::string containerIdString(const mesos::ContainerID& containerId);

// The appc image id if the container's image may be lazyroot's (an APPC
// image with an id "sha512-..."), else None.
Option<std::string> lazyrootImageId(
    const mesos::slave::ContainerConfig& containerConfig);


class LazyrootIsolator : public mesos::slave::Isolator
{
public:
  explicit LazyrootIsolator(const Config& config);
  ~LazyrootIsolator() override {}

  bool supportsNesting() override { return true; }
  bool supportsStandalone() override { return true; }

  process::Future<Nothing> recover(
      const std::vector<mesos::slave::ContainerState>& states,
      const hashset<mesos::ContainerID>& orphans) override;

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepare(
      const mesos::ContainerID& containerId,
      const mesos::slave::ContainerConfig& containerConfig) override;

  process::Future<Nothing> cleanup(
      const mesos::ContainerID& containerId) override;

private:
  const Config config_;
};

} // namespace lazyroot_isolator {

#endif // LAZYROOT_ISOLATOR_MODULE_HPP

// The lazyroot Mesos agent isolator (Mesos 1.11): keeps the lazyroot daemon
// from dropping a revision that a container's root filesystem still uses.
//
// A thin adapter: it copies Mesos fields into plain structs and runs the
// daemon client's PinKeeper (isolator/client/pin_keeper.hpp), where every
// decision is made and tested, on threads of its own:
//
//   prepare()  an APPC image with an id: Pin by id; with no id but a name:
//              Pin by name and labels (pin_target_for). The daemon is
//              started detached if its socket is absent. Only `not_ours`
//              (none of the daemon's images) lets the launch go on
//              unpinned; any other failure fails it (pin_outcome).
//   cleanup()  Unpin(container), for containers that may hold a pin. A
//              failure that may pass is kept and replayed (before later
//              daemon calls, and by a background thread), never lost.
//   recover()  SyncPins(every container the agent still knows, orphans
//              included: Mesos cleans orphans up later, through cleanup()),
//              then kept unpins of containers the sync dropped are settled.
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

#include <memory>
#include <string>
#include <vector>

#include <mesos/mesos.hpp>
#include <mesos/slave/isolator.hpp>

#include <process/future.hpp>

#include <stout/hashset.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>
#include <stout/try.hpp>

// The daemon client (isolator/client): plain C++ and POSIX, no Mesos types.
#include "pin_rules.hpp"

namespace lazyroot {
class PinKeeper;
} // namespace lazyroot {

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

// The container's image, copied field by field from
// container_info().mesos().image() for lazyroot::pin_target_for(), which
// decides what to pin.
lazyroot::ContainerImage containerImage(
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

  // Shared with the hook threads, which may outlive this object.
  const std::shared_ptr<lazyroot::PinKeeper> keeper_;
};

} // namespace lazyroot_isolator {

#endif // LAZYROOT_ISOLATOR_MODULE_HPP

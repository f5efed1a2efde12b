// The Mesos-facing half of the lazyroot isolator: Mesos types in, daemon
// client calls out. See lazyroot_isolator.hpp for what each hook does and
// README.md for building and configuring it.
//
// C++11 on purpose (Mesos 1.11 builds its own code and its modules as C++11).

#include "lazyroot_isolator.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include <glog/logging.h>

#include <mesos/mesos.hpp>
#include <mesos/module.hpp>
#include <mesos/module/isolator.hpp>
#include <mesos/slave/isolator.hpp>

#include <process/future.hpp>

#include <stout/error.hpp>

// The daemon client (isolator/client): plain C++ and POSIX, no Mesos types.
#include "daemon_client.hpp"
#include "ensure_daemon.hpp"

using mesos::ContainerID;
using mesos::ContainerInfo;
using mesos::Image;
using mesos::Parameter;
using mesos::Parameters;
using mesos::slave::ContainerConfig;
using mesos::slave::ContainerLaunchInfo;
using mesos::slave::ContainerState;
using mesos::slave::Isolator;

using process::Failure;
using process::Future;
using process::Promise;

using std::string;
using std::vector;

namespace lazyroot_isolator {

namespace {

const char kDefaultDaemonCommand[] =
  "/usr/local/bin/lazyroot provisioner --config /etc/lazyroot/provisioner.json";
const int kDefaultTimeoutSecs = 30;
const int kMaxTimeoutSecs = 3600;


vector<string> splitOnSpaces(const string& text)
{
  vector<string> words;
  std::istringstream in(text);
  string word;
  while (in >> word) {
    words.push_back(word);
  }
  return words;
}


string join(const vector<string>& words)
{
  string out;
  for (size_t i = 0; i < words.size(); ++i) {
    out += (i == 0 ? "" : " ") + words[i];
  }
  return out;
}


lazyroot::DaemonClient makeClient(const Config& config)
{
  lazyroot::ClientOptions options;
  options.timeout_ms = config.timeoutSecs * 1000;
  options.prepare_timeout_ms = config.timeoutSecs * 1000;
  return lazyroot::DaemonClient(config.socket, options);
}


// Starts the daemon detached if nothing listens on its socket. An Error
// names what failed; starting is logged.
Try<Nothing> ensureDaemon(const Config& config)
{
  lazyroot::Result<lazyroot::EnsureOutcome> ensured = lazyroot::ensure_daemon(
      config.socket,
      config.daemonCommand,
      config.timeoutSecs * 1000,
      config.daemonLog);

  if (!ensured.ok()) {
    return Error(
        "the lazyroot daemon does not answer on " + config.socket +
        " and could not be started with '" + join(config.daemonCommand) +
        "': " + ensured.error().describe());
  }

  if (ensured.value() == lazyroot::EnsureOutcome::kStarted) {
    LOG(INFO) << "lazyroot: started the daemon '" << join(config.daemonCommand)
              << "' (detached) and it answers on " << config.socket;
  }

  return Nothing();
}


// Runs `work` (blocking daemon calls) on a new detached thread and returns
// its result as a Future.
//
// Why a thread of its own and not process::async: async runs the function
// on a libprocess worker thread, and the agent has only a few of those; a
// daemon call may block up to `timeout_secs` (default 30 s) and several
// containers may launch at once. The thread owns copies of everything it
// uses (never `this`), so it may outlive the isolator object.
//
// Discarding the returned future does not cancel the call: Mesos calls
// cleanup() only after prepare() finished, so a Pin always completes
// before its Unpin.
template <typename T>
Future<T> runOffActor(const string& what, const std::function<Try<T>()>& work)
{
  std::shared_ptr<Promise<T>> promise(new Promise<T>());
  Future<T> future = promise->future();

  try {
    std::thread([promise, work, what]() {
      try {
        Try<T> result = work();
        if (result.isError()) {
          promise->fail(result.error());
        } else {
          promise->set(result.get());
        }
      } catch (const std::exception& e) {
        promise->fail("lazyroot: " + what + " failed: " + e.what());
      } catch (...) {
        promise->fail("lazyroot: " + what + " failed with an unknown exception");
      }
    }).detach();
  } catch (const std::system_error& e) {
    return Failure("lazyroot: cannot start a thread to " + what + ": " + e.what());
  }

  return future;
}

} // namespace {


Config::Config()
  : socket(lazyroot::kDefaultSocket),
    daemonCommand(splitOnSpaces(kDefaultDaemonCommand)),
    timeoutSecs(kDefaultTimeoutSecs) {}


Try<Config> Config::parse(const Parameters& parameters)
{
  Config config;
  std::set<string> seen;

  for (const Parameter& parameter : parameters.parameter()) {
    const string& key = parameter.key();
    const string& value = parameter.value();

    if (!seen.insert(key).second) {
      return Error("module parameter '" + key + "' is given twice");
    }

    if (key == "socket") {
      if (value.empty() || value[0] != '/') {
        return Error("module parameter 'socket' must be an absolute path, not '" +
                     value + "'");
      }
      config.socket = value;
    } else if (key == "daemon_command") {
      config.daemonCommand = splitOnSpaces(value);
      if (config.daemonCommand.empty()) {
        return Error("module parameter 'daemon_command' is empty");
      }
    } else if (key == "daemon_log") {
      if (!value.empty() && value[0] != '/') {
        return Error("module parameter 'daemon_log' must be an absolute path, not '" +
                     value + "'");
      }
      config.daemonLog = value;
    } else if (key == "timeout_secs") {
      char* end = nullptr;
      errno = 0;
      long secs = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno != 0 ||
          secs < 1 || secs > kMaxTimeoutSecs) {
        return Error("module parameter 'timeout_secs' must be a whole number of"
                     " seconds from 1 to " + std::to_string(kMaxTimeoutSecs) +
                     ", not '" + value + "'");
      }
      config.timeoutSecs = static_cast<int>(secs);
    } else {
      return Error("unknown module parameter '" + key + "' (known: socket,"
                   " daemon_command, daemon_log, timeout_secs)");
    }
  }

  return config;
}


string containerIdString(const ContainerID& containerId)
{
  return containerId.has_parent()
    ? containerIdString(containerId.parent()) + "." + containerId.value()
    : containerId.value();
}


Option<string> lazyrootImageId(const ContainerConfig& containerConfig)
{
  if (!containerConfig.has_container_info()) {
    return None();
  }

  const ContainerInfo& info = containerConfig.container_info();
  if (info.type() != ContainerInfo::MESOS ||
      !info.has_mesos() ||
      !info.mesos().has_image()) {
    return None();
  }

  const Image& image = info.mesos().image();
  if (image.type() != Image::APPC ||
      !image.has_appc() ||
      !image.appc().has_id()) {
    return None();
  }

  const string& id = image.appc().id();
  if (id.compare(0, 7, "sha512-") != 0) {
    return None();
  }

  return id;
}


LazyrootIsolator::LazyrootIsolator(const Config& config)
  : config_(config) {}


Future<Nothing> LazyrootIsolator::recover(
    const vector<ContainerState>& states,
    const hashset<ContainerID>& orphans)
{
  // Orphans are kept: Mesos destroys them after recovery, and cleanup()
  // then releases their pins one by one.
  vector<string> known;
  for (const ContainerState& state : states) {
    known.push_back(containerIdString(state.container_id()));
  }
  for (const ContainerID& orphan : orphans) {
    known.push_back(containerIdString(orphan));
  }

  const Config config = config_;  // the thread gets a copy

  std::function<Try<Nothing>()> work = [config, known]() -> Try<Nothing> {
    // Failing recovery would keep the agent from starting at all, for every
    // container, lazyroot or not. A failed sync only leaves extra pins
    // (revisions kept mounted longer), which the next recovery drops; so
    // this warns and goes on. A launch that needs the daemon still fails
    // in prepare() with the reason.
    Try<Nothing> ensured = ensureDaemon(config);
    if (ensured.isError()) {
      LOG(WARNING) << "lazyroot: cannot re-sync pins after agent recovery: "
                   << ensured.error();
      return Nothing();
    }

    lazyroot::Result<lazyroot::SyncPinsResponse> synced =
      makeClient(config).sync_pins(known);

    if (!synced.ok()) {
      LOG(WARNING) << "lazyroot: cannot re-sync pins after agent recovery ("
                   << known.size() << " containers known): "
                   << synced.error().describe();
      return Nothing();
    }

    const vector<string>& removed = synced.value().removed;
    LOG(INFO) << "lazyroot: re-synced pins for " << known.size()
              << " known containers; dropped the pins of " << removed.size()
              << " containers gone" << (removed.empty() ? "" : ": ")
              << join(removed);
    return Nothing();
  };

  return runOffActor<Nothing>("re-sync pins after agent recovery", work);
}


Future<Option<ContainerLaunchInfo>> LazyrootIsolator::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  const Option<string> imageId = lazyrootImageId(containerConfig);
  if (imageId.isNone()) {
    return None();
  }

  const string container = containerIdString(containerId);
  const string image = imageId.get();
  const Config config = config_;  // the thread gets a copy

  std::function<Try<Option<ContainerLaunchInfo>>()> work =
    [config, container, image]() -> Try<Option<ContainerLaunchInfo>> {
      Try<Nothing> ensured = ensureDaemon(config);
      if (ensured.isError()) {
        return Error(
            "lazyroot: cannot pin image " + image + " for container " +
            container + ": " + ensured.error());
      }

      lazyroot::Result<lazyroot::Pin> pinned =
        makeClient(config).pin(container, image);

      if (!pinned.ok()) {
        if (pinned.error().code == "not_found") {
          // An appc image from another source (the appc store holds more
          // than lazyroot's images): not ours to pin.
          VLOG(1) << "lazyroot: image " << image << " of container "
                  << container << " is not a lazyroot image: "
                  << pinned.error().message;
          return Option<ContainerLaunchInfo>::none();
        }
        return Error(
            "lazyroot: cannot pin image " + image + " for container " +
            container + " (daemon socket " + config.socket + "): " +
            pinned.error().describe());
      }

      LOG(INFO) << "lazyroot: container " << container << " pins image "
                << image << " at root hash " << pinned.value().root_hash
                << " (" << pinned.value().rootfs << ")";

      // Nothing to add to the launch: the rootfs comes from the appc store
      // (an isolator must not set it), and no mounts are needed.
      return Option<ContainerLaunchInfo>::none();
    };

  return runOffActor<Option<ContainerLaunchInfo>>(
      "pin image " + image + " for container " + container, work);
}


Future<Nothing> LazyrootIsolator::cleanup(const ContainerID& containerId)
{
  // No socket, no daemon, no pins to release (a daemon that starts later
  // drops stale pins at the next recovery). This also keeps cleanup of the
  // many containers that never used lazyroot free of threads and timeouts.
  struct stat st;
  if (::stat(config_.socket.c_str(), &st) != 0) {
    return Nothing();
  }

  const string container = containerIdString(containerId);
  const Config config = config_;  // the thread gets a copy

  std::function<Try<Nothing>()> work = [config, container]() -> Try<Nothing> {
    lazyroot::Result<lazyroot::UnpinResponse> unpinned =
      makeClient(config).unpin(container);

    // Failing cleanup would leave the container half destroyed; a pin that
    // could not be released only keeps a revision mounted until the next
    // recovery re-syncs. So: warn, never fail.
    if (!unpinned.ok()) {
      if (unpinned.error().daemon_absent) {
        VLOG(1) << "lazyroot: no daemon to unpin container " << container
                << " from: " << unpinned.error().describe();
      } else {
        LOG(WARNING) << "lazyroot: cannot unpin container " << container
                     << ": " << unpinned.error().describe();
      }
      return Nothing();
    }

    if (unpinned.value().was_pinned) {
      LOG(INFO) << "lazyroot: container " << container << " released its pin";
    }
    return Nothing();
  };

  return runOffActor<Nothing>("unpin container " + container, work);
}

} // namespace lazyroot_isolator {


namespace {

bool compatible()
{
  // The module manager has already required this module's Mesos version
  // (MESOS_VERSION below) to be the agent's minor version or older, and
  // Isolator's kind version to match: nothing more to check.
  return true;
}


Isolator* createLazyrootIsolator(const Parameters& parameters)
{
  Try<lazyroot_isolator::Config> config =
    lazyroot_isolator::Config::parse(parameters);

  if (config.isError()) {
    LOG(ERROR) << "lazyroot isolator: " << config.error();
    return nullptr;
  }

  LOG(INFO) << "lazyroot isolator: daemon socket " << config->socket
            << ", daemon command '"
            << lazyroot_isolator::join(config->daemonCommand) << "', log "
            << (config->daemonLog.empty() ? "/dev/null" : config->daemonLog)
            << ", timeout " << config->timeoutSecs << " s";

  return new lazyroot_isolator::LazyrootIsolator(config.get());
}

} // namespace {


// The module symbol the agent looks up: its name is the module name used in
// --modules and --isolation.
mesos::modules::Module<Isolator> org_lazyroot_LazyrootIsolator(
    MESOS_MODULE_API_VERSION,
    MESOS_VERSION,
    "lazyroot",
    "lazyroot@localhost",
    "lazyroot isolator: pins the revision of a lazily mounted image root"
    " filesystem while a container uses it (Pin in prepare, Unpin in cleanup,"
    " SyncPins in recover); starts the lazyroot daemon detached if its socket"
    " is absent.",
    compatible,
    createLazyrootIsolator);

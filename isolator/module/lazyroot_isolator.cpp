// The Mesos-facing half of the lazyroot isolator: Mesos types in, daemon
// client calls out. See lazyroot_isolator.hpp for what each hook does and
// README.md for building and configuring it.
//
// C++11 on purpose (Mesos 1.11 builds its own code and its modules as C++11).

#include "lazyroot_isolator.hpp"

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
#include "log_sink.hpp"
#include "pin_keeper.hpp"
#include "pin_rules.hpp"

using mesos::ContainerID;
using mesos::ContainerInfo;
using mesos::Image;
using mesos::Label;
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


// The daemon on its socket, started with `daemon_command` when absent.
std::shared_ptr<lazyroot::Daemon> makeDaemon(const Config& config)
{
  lazyroot::ClientOptions options;
  options.timeout_ms = config.timeoutSecs * 1000;
  options.prepare_timeout_ms = config.timeoutSecs * 1000;
  return std::make_shared<lazyroot::SocketDaemon>(
      config.socket,
      options,
      config.daemonCommand,
      config.daemonLog,
      config.timeoutSecs * 1000);
}


// The client's log lines, into the agent's log. glog is thread-safe; the
// background retry thread logs through here too.
void logToGlog(lazyroot::LogLevel level, const string& message)
{
  switch (level) {
    case lazyroot::LogLevel::kDebug:
      VLOG(1) << message;
      break;
    case lazyroot::LogLevel::kInfo:
      LOG(INFO) << message;
      break;
    case lazyroot::LogLevel::kWarning:
      LOG(WARNING) << message;
      break;
    case lazyroot::LogLevel::kError:
      LOG(ERROR) << message;
      break;
  }
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


lazyroot::ContainerImage containerImage(const ContainerConfig& containerConfig)
{
  lazyroot::ContainerImage image;
  if (!containerConfig.has_container_info()) {
    return image;
  }

  const ContainerInfo& info = containerConfig.container_info();
  if (info.type() != ContainerInfo::MESOS ||
      !info.has_mesos() ||
      !info.mesos().has_image()) {
    return image;
  }
  image.has_image = true;

  const Image& mesosImage = info.mesos().image();
  if (mesosImage.type() != Image::APPC || !mesosImage.has_appc()) {
    return image;
  }
  image.appc = true;

  const Image::Appc& appc = mesosImage.appc();
  image.name = appc.name();
  if (appc.has_id()) {
    image.id = appc.id();
  }
  if (appc.has_labels()) {
    for (const Label& label : appc.labels().labels()) {
      image.labels.push_back(lazyroot::AppcLabel(label.key(), label.value()));
    }
  }
  return image;
}


LazyrootIsolator::LazyrootIsolator(const Config& config)
  : config_(config),
    keeper_(std::make_shared<lazyroot::PinKeeper>(makeDaemon(config), logToGlog)) {}


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

  // Here, not on the thread: their cleanup() must unpin them even if the
  // thread below cannot start.
  keeper_->note_recovered(known);

  const std::shared_ptr<lazyroot::PinKeeper> keeper = keeper_;
  std::function<Try<Nothing>()> work = [keeper, known]() -> Try<Nothing> {
    // Never fails: failing recovery would keep the agent from starting at
    // all, for every container; it logs what went wrong.
    keeper->recover(known);
    return Nothing();
  };

  Future<Nothing> recovered =
    runOffActor<Nothing>("re-sync pins after agent recovery", work);
  if (recovered.isFailed()) {
    LOG(WARNING) << recovered.failure();
    return Nothing();
  }
  return recovered;
}


Future<Option<ContainerLaunchInfo>> LazyrootIsolator::prepare(
    const ContainerID& containerId,
    const ContainerConfig& containerConfig)
{
  lazyroot::PinTarget target;
  if (!lazyroot::pin_target_for(containerImage(containerConfig), &target)) {
    return None();  // no APPC image: nothing of the daemon's to pin
  }

  const string container = containerIdString(containerId);
  const std::shared_ptr<lazyroot::PinKeeper> keeper = keeper_;

  std::function<Try<Option<ContainerLaunchInfo>>()> work =
    [keeper, container, target]() -> Try<Option<ContainerLaunchInfo>> {
      const lazyroot::PinOutcome outcome = keeper->prepare(container, target);
      if (outcome.kind == lazyroot::PinOutcome::kFailed) {
        return Error(outcome.message);
      }

      // Pinned, or none of the daemon's images (logged by the keeper).
      // Nothing to add to the launch: the rootfs comes from the appc store
      // (an isolator must not set it), and no mounts are needed.
      return Option<ContainerLaunchInfo>::none();
    };

  return runOffActor<Option<ContainerLaunchInfo>>(
      "pin " + target.describe() + " for container " + container, work);
}


Future<Nothing> LazyrootIsolator::cleanup(const ContainerID& containerId)
{
  const string container = containerIdString(containerId);

  // No I/O: a container that was never pinned here and not recovered
  // holds no pin, and costs no thread and no call.
  if (!keeper_->claim_cleanup(container)) {
    return Nothing();
  }

  const std::shared_ptr<lazyroot::PinKeeper> keeper = keeper_;
  std::function<Try<Nothing>()> work = [keeper, container]() -> Try<Nothing> {
    // Never fails: a failed cleanup would leave the container half
    // destroyed. An unpin that fails is kept and replayed.
    keeper->cleanup(container);
    return Nothing();
  };

  Future<Nothing> cleaned =
    runOffActor<Nothing>("unpin container " + container, work);
  if (cleaned.isFailed()) {
    keeper_->keep_unpin(container, cleaned.failure());
    return Nothing();
  }
  return cleaned;
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

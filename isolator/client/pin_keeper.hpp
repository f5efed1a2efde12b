// What the Mesos isolator does in each hook, without Mesos types: the module
// (module/lazyroot_isolator.cpp) converts ids and images and runs these
// blocking calls on threads of its own; everything it decides is here,
// where it is tested against fakes (unit_tests.cpp) and, through the CLI,
// against a mock daemon (test_cli.py).
//
//   prepare(c, target)  start the daemon if it is absent, replay kept
//                       unpins, Pin; the outcome says whether the launch
//                       goes on (pinned, or not the daemon's image) or fails.
//   claim_cleanup(c)    on the hook's own thread, no I/O: whether c may hold
//                       a pin (pinned here, or recovered), i.e. whether
//                       cleanup(c) has anything to do.
//   note_recovered(k)   on the hook's own thread, no I/O: the recovered
//                       containers k may hold pins.
//   cleanup(c)          replay kept unpins, Unpin(c); a failure that may
//                       pass is kept and replayed (UnpinQueue), never lost.
//   recover(known)      start the daemon if absent, replay kept unpins,
//                       SyncPins(known); then kept unpins of containers the
//                       sync dropped are settled.
//
// C++11-compatible public header (see result.hpp). Thread-safe.
#ifndef LAZYROOT_CLIENT_PIN_KEEPER_HPP
#define LAZYROOT_CLIENT_PIN_KEEPER_HPP

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "daemon_client.hpp"
#include "ensure_daemon.hpp"
#include "log_sink.hpp"
#include "messages.hpp"
#include "pin_rules.hpp"
#include "result.hpp"
#include "unpin_queue.hpp"

namespace lazyroot {

// The daemon calls the isolator makes; an interface so that tests can
// script the answers.
class Daemon {
 public:
  virtual ~Daemon() {}
  virtual const std::string& socket_path() const = 0;
  // A daemon answers (kRunning), or was started and answers (kStarted).
  virtual Result<EnsureOutcome> ensure_running() = 0;
  virtual Result<Pin> pin(const PinRequest& request) = 0;
  virtual Result<UnpinResponse> unpin(const std::string& container_id) = 0;
  virtual Result<SyncPinsResponse> sync_pins(const std::vector<std::string>& container_ids) = 0;
};

// The daemon on its Unix socket (DaemonClient), started with ensure_daemon()
// when absent.
class SocketDaemon : public Daemon {
 public:
  // `command` empty: never start one; ensure_running() says kRunning and the
  // calls themselves report a missing daemon (the CLI's replay scenarios).
  SocketDaemon(const std::string& socket_path, const ClientOptions& options, const std::vector<std::string>& command,
               const std::string& log_file, int start_timeout_ms);

  const std::string& socket_path() const override { return client_.socket_path(); }
  // Errors name the socket and the command.
  Result<EnsureOutcome> ensure_running() override;
  Result<Pin> pin(const PinRequest& request) override { return client_.pin(request); }
  Result<UnpinResponse> unpin(const std::string& container_id) override { return client_.unpin(container_id); }
  Result<SyncPinsResponse> sync_pins(const std::vector<std::string>& container_ids) override {
    return client_.sync_pins(container_ids);
  }

 private:
  DaemonClient client_;
  std::vector<std::string> command_;
  std::string log_file_;
  int start_timeout_ms_;
};

struct KeeperOptions {
  KeeperOptions()
      : unpin_queue_capacity(UnpinQueue::kDefaultCapacity),
        retry_initial_ms(1000),
        retry_max_ms(60000),
        replays_per_hook(64) {}
  std::size_t unpin_queue_capacity;
  int retry_initial_ms;  // the background retry's first delay, doubled while it fails
  int retry_max_ms;      // ... up to this
  // At most this many kept unpins are replayed before a hook's own call, so
  // that a daemon back after a long absence delays no launch by more than
  // that many quick calls; the retry thread replays the rest.
  std::size_t replays_per_hook;
};

class PinKeeper {
 public:
  PinKeeper(const std::shared_ptr<Daemon>& daemon, const LogSink& log, const KeeperOptions& options = KeeperOptions());

  // prepare(): see pin_outcome(). A daemon that cannot be started fails the
  // launch too. Logs a pin at INFO and "not ours" at kDebug; a failure is
  // the caller's to report (it fails the launch with `message`).
  PinOutcome prepare(const std::string& container_id, const PinTarget& target);

  // cleanup(), first half: forgets the container and returns whether it may
  // hold a pin (prepare() sent its Pin, or recover() listed it). A
  // container that never used lazyroot costs no call and no thread.
  bool claim_cleanup(const std::string& container_id);

  // cleanup(), second half (blocking): never fails; see the file comment.
  void cleanup(const std::string& container_id);

  // cleanup() could not run its second half (no thread could be started):
  // the unpin waits with the kept ones, so it is not lost either.
  void keep_unpin(const std::string& container_id, const std::string& why);

  // recover(), first half, no I/O: the agent's containers may hold pins
  // from before it restarted, so their cleanup() must unpin them. Done on
  // the hook's own thread, so that it holds even if recover() cannot run.
  void note_recovered(const std::vector<std::string>& known);

  // recover(), second half (blocking; calls note_recovered() too): never
  // fails, logs what went wrong at WARNING. `known`: every container the
  // agent still knows, orphans included.
  void recover(const std::vector<std::string>& known);

  UnpinQueue& kept_unpins() { return queue_; }
  const UnpinRetrier& retrier() const { return retrier_; }

 private:
  PinKeeper(const PinKeeper&) = delete;
  PinKeeper& operator=(const PinKeeper&) = delete;

  // Before a hook's own call: replays kept unpins (at most replays_per_hook).
  void replay_kept();

  const std::shared_ptr<Daemon> daemon_;
  const LogSink log_;
  const KeeperOptions options_;
  std::mutex mutex_;
  std::unordered_set<std::string> may_hold_pin_;
  UnpinQueue queue_;
  UnpinRetrier retrier_;  // last: its thread uses queue_ and stops first
};

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_PIN_KEEPER_HPP

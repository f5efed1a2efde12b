#include "pin_keeper.hpp"

#include <utility>

namespace lazyroot {

namespace {

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) out += (i == 0 ? "" : " ") + words[i];
  return out;
}

}  // namespace

SocketDaemon::SocketDaemon(const std::string& socket_path, const ClientOptions& options,
                           const std::vector<std::string>& command, const std::string& log_file, int start_timeout_ms)
    : client_(socket_path, options), command_(command), log_file_(log_file), start_timeout_ms_(start_timeout_ms) {}

Result<EnsureOutcome> SocketDaemon::ensure_running() {
  if (command_.empty()) return EnsureOutcome::kRunning;
  Result<EnsureOutcome> ensured = ensure_daemon(client_.socket_path(), command_, start_timeout_ms_, log_file_);
  if (ensured.ok()) return ensured;
  Error e = ensured.error();
  e.message = "the lazyroot daemon does not answer on " + client_.socket_path() + " and could not be started with '" +
              join(command_) + "': " + e.message;
  return e;
}

PinKeeper::PinKeeper(const std::shared_ptr<Daemon>& daemon, const LogSink& log, const KeeperOptions& options)
    : daemon_(daemon),
      log_(log),
      options_(options),
      queue_(log, options.unpin_queue_capacity),
      // The retry thread holds the daemon itself, never this keeper.
      retrier_(&queue_, [daemon](const std::string& id) { return daemon->unpin(id); }, log,
               options.retry_initial_ms, options.retry_max_ms) {}

void PinKeeper::replay_kept() {
  queue_.replay([this](const std::string& id) { return daemon_->unpin(id); }, options_.replays_per_hook);
  // Normally running already; this restarts it if starting it failed once.
  if (queue_.size() > 0) retrier_.wake();
}

PinOutcome PinKeeper::prepare(const std::string& container_id, const PinTarget& target) {
  Result<EnsureOutcome> ensured = daemon_->ensure_running();
  if (!ensured.ok()) {
    PinOutcome failed;
    failed.kind = PinOutcome::kFailed;
    failed.error = ensured.error();
    failed.message = pin_failure_message(target, container_id, daemon_->socket_path(), failed.error);
    return failed;
  }
  if (ensured.value() == EnsureOutcome::kStarted && log_) {
    log_(LogLevel::kInfo, "lazyroot: started the daemon (detached); it answers on " + daemon_->socket_path());
  }

  replay_kept();

  // Before the call: a Pin whose answer is lost (a timeout) may still have
  // been taken, and Mesos cleans up after a failed launch too.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    may_hold_pin_.insert(container_id);
  }
  PinOutcome outcome =
      pin_outcome(daemon_->pin(target.request(container_id)), target, container_id, daemon_->socket_path());

  if (outcome.kind == PinOutcome::kNotOurs) {
    std::lock_guard<std::mutex> lock(mutex_);
    may_hold_pin_.erase(container_id);  // the daemon took no pin
  }
  if (log_ && outcome.kind == PinOutcome::kPinned) log_(LogLevel::kInfo, outcome.message);
  if (log_ && outcome.kind == PinOutcome::kNotOurs) log_(LogLevel::kDebug, outcome.message);
  return outcome;
}

bool PinKeeper::claim_cleanup(const std::string& container_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return may_hold_pin_.erase(container_id) > 0;
}

void PinKeeper::cleanup(const std::string& container_id) {
  replay_kept();
  Result<UnpinResponse> unpinned = daemon_->unpin(container_id);
  if (!unpinned.ok()) {
    // Logged by the queue: WARNING when kept, ERROR when refused.
    if (queue_.keep(container_id, unpinned.error())) retrier_.wake();
    return;
  }
  if (unpinned.value().was_pinned && log_) {
    log_(LogLevel::kInfo, "lazyroot: container " + container_id + " released its pin");
  }
}

void PinKeeper::keep_unpin(const std::string& container_id, const std::string& why) {
  if (queue_.keep(container_id, Error("unavailable", why))) retrier_.wake();
}

void PinKeeper::note_recovered(const std::vector<std::string>& known) {
  std::lock_guard<std::mutex> lock(mutex_);
  may_hold_pin_.insert(known.begin(), known.end());
}

void PinKeeper::recover(const std::vector<std::string>& known) {
  // Whatever happens below, their cleanup() must unpin them.
  note_recovered(known);

  // Failing recovery would keep the agent from starting at all, for every
  // container, lazyroot's or not. A failed sync only leaves extra pins
  // (revisions kept mounted longer), which the next recovery drops; so this
  // warns and goes on. A launch that needs the daemon still fails in
  // prepare() with the reason.
  Result<EnsureOutcome> ensured = daemon_->ensure_running();
  if (!ensured.ok()) {
    if (log_) log_(LogLevel::kWarning, "lazyroot: cannot re-sync pins after agent recovery: " + ensured.error().describe());
    return;
  }
  if (ensured.value() == EnsureOutcome::kStarted && log_) {
    log_(LogLevel::kInfo, "lazyroot: started the daemon (detached); it answers on " + daemon_->socket_path());
  }

  replay_kept();

  const uint64_t mark = queue_.mark();
  Result<SyncPinsResponse> synced = daemon_->sync_pins(known);
  if (!synced.ok()) {
    if (log_) {
      log_(LogLevel::kWarning, "lazyroot: cannot re-sync pins after agent recovery (" + std::to_string(known.size()) +
                                   " containers known): " + synced.error().describe());
    }
    return;
  }
  // Kept unpins of containers the agent no longer knows are done: the sync
  // dropped their pins. Those of known containers stay kept (the sync kept
  // their pins).
  const std::size_t settled = queue_.forget_synced(mark, known);

  if (log_) {
    const std::vector<std::string>& removed = synced.value().removed;
    std::string line = "lazyroot: re-synced pins for " + std::to_string(known.size()) +
                       " known containers; dropped the pins of " + std::to_string(removed.size()) +
                       " containers gone" + (removed.empty() ? "" : ": " + join(removed));
    if (settled > 0) line += "; " + std::to_string(settled) + " kept unpins settled by the sync";
    log_(LogLevel::kInfo, line);
  }
}

}  // namespace lazyroot

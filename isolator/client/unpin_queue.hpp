// Unpins that failed, kept and replayed until the daemon takes them.
//
// Why: cleanup() must not fail (a failed cleanup leaves the container half
// destroyed), so a failed Unpin used to be logged and forgotten, and the pin
// then kept its revision mounted until the next agent recovery, which may be
// weeks away; the daemon keeps pins across its own restarts. Now the
// container id waits here and is sent again: before each later daemon call
// of the isolator (PinKeeper), and by one background thread (UnpinRetrier)
// while anything waits. Unpin is idempotent, so a replay that finds no pin is
// as good as one that releases it.
//
// C++11-compatible public header (see result.hpp).
#ifndef LAZYROOT_CLIENT_UNPIN_QUEUE_HPP
#define LAZYROOT_CLIENT_UNPIN_QUEUE_HPP

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "log_sink.hpp"
#include "messages.hpp"
#include "result.hpp"

namespace lazyroot {

// Thread-safe: any number of hooks and the retry thread use one queue.
class UnpinQueue {
 public:
  // An agent runs at most a few thousand containers; 65,536 kept unpins
  // means the daemon has been away through a great many cleanups. Beyond
  // that the oldest is dropped (at ERROR): the next agent recovery's
  // SyncPins drops its pin anyway.
  static const std::size_t kDefaultCapacity = 65536;

  typedef std::function<Result<UnpinResponse>(const std::string& container_id)> UnpinCall;

  explicit UnpinQueue(const LogSink& log, std::size_t capacity = kDefaultCapacity);

  // After a failed Unpin of `container_id`. When the failure may pass
  // (unpin_may_succeed_later), keeps the id, logs a WARNING with the reason
  // and returns true; an id already kept keeps its place in line. Otherwise
  // (the daemon refused the request) logs an ERROR and returns false.
  bool keep(const std::string& container_id, const Error& why);

  struct Replay {
    Replay() : skipped(false), replayed(0), dropped(0), failed(false), remaining(0) {}
    bool skipped;           // another replay was under way: nothing done
    std::size_t replayed;   // unpins the daemon took (with or without a pin to release)
    std::size_t dropped;    // refused on replay (4xx): logged at ERROR and dropped
    bool failed;            // stopped at an unpin that failed again
    Error error;            // when failed: why
    std::size_t remaining;  // kept after this replay
  };

  // Sends kept unpins with `unpin`, oldest first, at most `limit` of them,
  // without holding the queue's lock during a call. Stops at the first
  // that fails again and moves it to the back of the line (so one container
  // the daemon keeps failing cannot hold up the others): when the daemon is
  // away, a replay costs one failed call, not one per kept id. One replay
  // at a time: a replay that finds another under way returns at once
  // (`skipped`). Logs each replayed unpin at INFO.
  Replay replay(const UnpinCall& unpin, std::size_t limit);

  // For recover(): mark() before sending SyncPins(known); after it
  // succeeded, forget_synced(mark, known) drops every id kept before the
  // mark that is not in `known`, since the sync dropped those pins. An id in
  // `known` stays kept: SyncPins keeps the pins of listed containers, so
  // only its own Unpin releases it. Returns how many were dropped.
  uint64_t mark() const;
  std::size_t forget_synced(uint64_t mark, const std::vector<std::string>& known);

  std::size_t size() const;
  std::vector<std::string> ids() const;  // oldest first
  std::size_t capacity() const { return capacity_; }
  // Waits until nothing is kept, at most `timeout_ms`; true if empty.
  bool wait_until_empty(int timeout_ms) const;

 private:
  struct Entry {
    std::string id;
    uint64_t seq;  // when it was first kept: mark() compares with it
  };
  typedef std::list<Entry> Line;

  void erase_locked(std::unordered_map<std::string, Line::iterator>::iterator it);

  const LogSink log_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  mutable std::condition_variable emptied_;
  Line line_;
  std::unordered_map<std::string, Line::iterator> index_;
  uint64_t next_seq_;
  bool replaying_;
};

// The background half of the replay: one thread, started when something is
// kept and gone again when nothing is, that replays the queue after a delay
// doubling from `initial_ms` up to `max_ms` while replays keep failing (1 s
// to 60 s by default: a daemon away for an hour costs about 60 connection
// attempts). It never runs on a caller's thread, so it never holds up a
// hook or an agent actor.
class UnpinRetrier {
 public:
  UnpinRetrier(UnpinQueue* queue, const UnpinQueue::UnpinCall& unpin, const LogSink& log, int initial_ms = 1000,
               int max_ms = 60000);
  // Stops the thread; waits for a call in flight (bounded by its timeout).
  ~UnpinRetrier();

  // Something was kept: makes sure the thread runs. Cheap when it does.
  void wake();
  bool running() const;

 private:
  UnpinRetrier(const UnpinRetrier&) = delete;
  UnpinRetrier& operator=(const UnpinRetrier&) = delete;

  void run();

  UnpinQueue* const queue_;
  const UnpinQueue::UnpinCall unpin_;
  const LogSink log_;
  const int initial_ms_;
  const int max_ms_;
  mutable std::mutex mutex_;
  std::condition_variable stop_;
  bool stopping_;
  bool running_;
  std::thread thread_;
};

// The delay after `delay_ms` when a replay failed again: doubled, at most
// `max_ms`.
int next_retry_delay_ms(int delay_ms, int max_ms);

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_UNPIN_QUEUE_HPP

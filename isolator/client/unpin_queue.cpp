#include "unpin_queue.hpp"

#include <chrono>
#include <exception>
#include <limits>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "pin_rules.hpp"

namespace lazyroot {

const std::size_t UnpinQueue::kDefaultCapacity;

namespace {

void emit(const LogSink& log, LogLevel level, const std::string& message) {
  if (log) log(level, message);
}

}  // namespace

UnpinQueue::UnpinQueue(const LogSink& log, std::size_t capacity)
    : log_(log), capacity_(capacity == 0 ? 1 : capacity), next_seq_(0), replaying_(false) {}

void UnpinQueue::erase_locked(std::unordered_map<std::string, Line::iterator>::iterator it) {
  line_.erase(it->second);
  index_.erase(it);
  if (line_.empty()) emptied_.notify_all();
}

bool UnpinQueue::keep(const std::string& container_id, const Error& why) {
  if (!unpin_may_succeed_later(why)) {
    emit(log_, LogLevel::kError,
         "lazyroot: cannot unpin container " + container_id + ": " + why.describe() +
             "; the daemon refused it, so it is not retried (the next agent recovery's SyncPins drops the pin, if"
             " there is one)");
    return false;
  }
  std::string dropped;
  std::size_t kept;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (index_.find(container_id) == index_.end()) {
      if (line_.size() >= capacity_) {
        dropped = line_.front().id;
        erase_locked(index_.find(dropped));
      }
      Entry entry;
      entry.id = container_id;
      entry.seq = next_seq_++;
      line_.push_back(entry);
      index_[container_id] = --line_.end();
    }
    kept = line_.size();
  }
  if (!dropped.empty()) {
    emit(log_, LogLevel::kError,
         "lazyroot: " + std::to_string(capacity_) + " unpins are kept for replay already; dropped the oldest, of"
             " container " + dropped + ": its pin stays until the next agent recovery's SyncPins");
  }
  emit(log_, LogLevel::kWarning,
       "lazyroot: cannot unpin container " + container_id + ": " + why.describe() +
           "; kept, and retried in the background and before the next daemon call (" + std::to_string(kept) +
           " kept)");
  return true;
}

UnpinQueue::Replay UnpinQueue::replay(const UnpinCall& unpin, std::size_t limit) {
  Replay r;
  std::vector<std::string> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (replaying_) {
      r.skipped = true;
      r.remaining = line_.size();
      return r;
    }
    if (line_.empty()) return r;
    replaying_ = true;
    for (Line::const_iterator it = line_.begin(); it != line_.end() && batch.size() < limit; ++it) {
      batch.push_back(it->id);
    }
  }

  // Clears `replaying_` however this ends (the call may throw).
  struct Done {
    UnpinQueue* q;
    ~Done() {
      std::lock_guard<std::mutex> lock(q->mutex_);
      q->replaying_ = false;
    }
  } done = {this};

  std::string failed_at;
  for (const std::string& id : batch) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (index_.find(id) == index_.end()) continue;  // forgotten by a sync meanwhile
    }
    Result<UnpinResponse> answer = unpin(id);
    std::string message;
    LogLevel level = LogLevel::kInfo;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = index_.find(id);
      if (answer.ok()) {
        ++r.replayed;
        if (it != index_.end()) erase_locked(it);
        message = "lazyroot: replayed the kept unpin of container " + id +
                  (answer.value().was_pinned ? ": its pin is released" : ": it held no pin any more");
      } else if (!unpin_may_succeed_later(answer.error())) {
        ++r.dropped;
        if (it != index_.end()) erase_locked(it);
        level = LogLevel::kError;
        message = "lazyroot: the replayed unpin of container " + id + " was refused: " +
                  answer.error().describe() + "; dropped (the next agent recovery's SyncPins drops the pin)";
      } else {
        if (it != index_.end()) line_.splice(line_.end(), line_, it->second);
        r.failed = true;
        r.error = answer.error();
        failed_at = id;
        stop = true;
      }
    }
    if (!message.empty()) emit(log_, level, message);
    if (stop) break;
  }

  r.remaining = size();
  if (r.failed) {
    emit(log_, LogLevel::kWarning,
         "lazyroot: replaying kept unpins failed again at container " + failed_at + ": " + r.error.describe() +
             "; " + std::to_string(r.remaining) + " kept, retried later");
  }
  return r;
}

uint64_t UnpinQueue::mark() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_seq_;
}

std::size_t UnpinQueue::forget_synced(uint64_t mark, const std::vector<std::string>& known) {
  const std::unordered_set<std::string> keep(known.begin(), known.end());
  std::size_t forgotten = 0;
  std::lock_guard<std::mutex> lock(mutex_);
  for (Line::iterator it = line_.begin(); it != line_.end();) {
    if (it->seq < mark && keep.find(it->id) == keep.end()) {
      index_.erase(it->id);
      it = line_.erase(it);
      ++forgotten;
    } else {
      ++it;
    }
  }
  if (line_.empty()) emptied_.notify_all();
  return forgotten;
}

std::size_t UnpinQueue::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return line_.size();
}

std::vector<std::string> UnpinQueue::ids() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const Entry& e : line_) out.push_back(e.id);
  return out;
}

bool UnpinQueue::wait_until_empty(int timeout_ms) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return emptied_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return line_.empty(); });
}

int next_retry_delay_ms(int delay_ms, int max_ms) {
  if (delay_ms >= max_ms / 2) return max_ms;
  return delay_ms < 1 ? 1 : delay_ms * 2;
}

UnpinRetrier::UnpinRetrier(UnpinQueue* queue, const UnpinQueue::UnpinCall& unpin, const LogSink& log,
                           int initial_ms, int max_ms)
    : queue_(queue),
      unpin_(unpin),
      log_(log),
      initial_ms_(initial_ms < 1 ? 1 : initial_ms),
      max_ms_(max_ms < initial_ms_ ? initial_ms_ : max_ms),
      stopping_(false),
      running_(false) {}

UnpinRetrier::~UnpinRetrier() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void UnpinRetrier::wake() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_ || running_) return;
  // A thread that found the queue empty has cleared running_ under this
  // lock and only returns now: joining it takes no time.
  if (thread_.joinable()) thread_.join();
  try {
    thread_ = std::thread(&UnpinRetrier::run, this);
    running_ = true;
  } catch (const std::system_error& e) {
    emit(log_, LogLevel::kError,
         std::string("lazyroot: cannot start the thread that retries kept unpins: ") + e.what() +
             "; they are replayed before the next daemon call only");
  }
}

bool UnpinRetrier::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void UnpinRetrier::run() {
  int delay_ms = initial_ms_;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (stop_.wait_for(lock, std::chrono::milliseconds(delay_ms), [this] { return stopping_; })) {
        running_ = false;
        return;
      }
    }
    UnpinQueue::Replay r;
    try {
      r = queue_->replay(unpin_, std::numeric_limits<std::size_t>::max());
    } catch (const std::exception& e) {
      r.failed = true;
      emit(log_, LogLevel::kError, std::string("lazyroot: replaying kept unpins threw: ") + e.what());
    }
    {
      // The emptiness check and running_ = false under one lock, the same
      // that wake() takes after keep(): an id kept just after the check
      // finds running_ false and starts a new thread; none is stranded.
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ || queue_->size() == 0) {
        running_ = false;
        return;
      }
    }
    if (r.failed) {
      delay_ms = next_retry_delay_ms(delay_ms, max_ms_);
    } else if (!r.skipped) {
      delay_ms = initial_ms_;  // progress, and ids kept meanwhile: soon again
    }
  }
}

}  // namespace lazyroot

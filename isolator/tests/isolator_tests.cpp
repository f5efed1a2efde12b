// Unit tests of what the Mesos isolator decides, without Mesos and without
// a socket: which image a Pin names (pin_target_for), what a Pin's answer
// means for the launch (pin_outcome), which failed unpins are replayed
// (unpin_may_succeed_later, UnpinQueue, UnpinRetrier), and the hooks
// themselves (PinKeeper) against a scripted daemon. test_cli.py drives the
// same code through the CLI against mock_daemon.py.
#include <chrono>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "pin_keeper.hpp"
#include "pin_rules.hpp"
#include "unpin_queue.hpp"

namespace {

using lazyroot::AppcLabel;
using lazyroot::ContainerImage;
using lazyroot::Error;
using lazyroot::LogLevel;
using lazyroot::PinOutcome;
using lazyroot::PinTarget;
using lazyroot::Result;
using lazyroot::UnpinQueue;
using lazyroot::UnpinResponse;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Helpers

// The errors the client produces, as it produces them.
Error absent() {
  Error e("unavailable", "Pin: cannot connect to /run/lazyroot/control.sock: No such file or directory");
  e.daemon_absent = true;
  return e;
}
Error timed_out() { return Error("unavailable", "Unpin: no complete answer within 5 s"); }
Error answered(int status, const std::string& code, const std::string& message = "the daemon says no") {
  Error e(code, message);
  e.http_status = status;
  return e;
}

UnpinResponse unpinned(bool was_pinned = true) {
  UnpinResponse r;
  r.was_pinned = was_pinned;
  return r;
}

// Records what is logged, from any thread.
class Log {
 public:
  lazyroot::LogSink sink() {
    return [this](LogLevel level, const std::string& message) {
      std::lock_guard<std::mutex> lock(mutex_);
      lines_.push_back(std::make_pair(level, message));
    };
  }
  // The lines at `level` that contain `needle`.
  int count(LogLevel level, const std::string& needle) {
    std::lock_guard<std::mutex> lock(mutex_);
    int n = 0;
    for (const auto& l : lines_) n += l.first == level && l.second.find(needle) != std::string::npos;
    return n;
  }
  std::string all() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& l : lines_) out += std::to_string(static_cast<int>(l.first)) + " " + l.second + "\n";
    return out;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

#define CHECK_LOGGED(log, level, needle) \
  record((log).count((level), (needle)) > 0, __FILE__, __LINE__, std::string("logged: ") + (needle) + "\n" + (log).all())

// A daemon whose answers the test scripts; records every call in order.
class FakeDaemon : public lazyroot::Daemon {
 public:
  FakeDaemon() : socket_("/run/test/control.sock") {
    on_ensure = [] { return Result<lazyroot::EnsureOutcome>(lazyroot::EnsureOutcome::kRunning); };
    on_pin = [](const lazyroot::PinRequest& r) {
      lazyroot::Pin p;
      p.container_id = r.container_id;
      p.image_id = r.image_id.empty() ? "sha512-resolved" : r.image_id;
      p.root_hash = "abc";
      p.rootfs = "/mnt/x";
      return Result<lazyroot::Pin>(p);
    };
    on_unpin = [](const std::string&) { return Result<UnpinResponse>(unpinned()); };
    on_sync = [](const std::vector<std::string>&) { return Result<lazyroot::SyncPinsResponse>(lazyroot::SyncPinsResponse()); };
  }

  const std::string& socket_path() const override { return socket_; }
  Result<lazyroot::EnsureOutcome> ensure_running() override {
    note("ensure");
    return on_ensure();
  }
  Result<lazyroot::Pin> pin(const lazyroot::PinRequest& r) override {
    std::string what = "pin " + r.container_id + " " + (r.image_id.empty() ? "name=" + r.appc_name : r.image_id);
    for (const AppcLabel& l : r.appc_labels) what += " " + l.key + "=" + l.value;
    if (r.operator_pin) what += " OPERATOR";
    note(what);
    return on_pin(r);
  }
  Result<UnpinResponse> unpin(const std::string& id) override {
    note("unpin " + id);
    return on_unpin(id);
  }
  Result<lazyroot::SyncPinsResponse> sync_pins(const std::vector<std::string>& ids) override {
    std::string what = "sync";
    for (const std::string& id : ids) what += " " + id;
    note(what);
    return on_sync(ids);
  }

  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.clear();
  }

  // Scripted answers; set them before handing the daemon to a keeper whose
  // retry thread may call it.
  std::function<Result<lazyroot::EnsureOutcome>()> on_ensure;
  std::function<Result<lazyroot::Pin>(const lazyroot::PinRequest&)> on_pin;
  std::function<Result<UnpinResponse>(const std::string&)> on_unpin;
  std::function<Result<lazyroot::SyncPinsResponse>(const std::vector<std::string>&)> on_sync;

 private:
  void note(const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.push_back(what);
  }
  std::string socket_;
  std::mutex mutex_;
  std::vector<std::string> calls_;
};

// An unpin answer that can be switched while a retry thread uses it.
class Switch {
 public:
  explicit Switch(const Error& failure) : failure_(failure), up_(false) {}
  void set_up(bool up) {
    std::lock_guard<std::mutex> lock(mutex_);
    up_ = up;
  }
  Result<UnpinResponse> answer() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (up_) return unpinned();
    return failure_;
  }

 private:
  Error failure_;
  std::mutex mutex_;
  bool up_;
};

// Keeper options whose retry thread stays out of the way of a test that
// scripts every call (it would wait a minute; the keeper's destructor
// stops it at once).
lazyroot::KeeperOptions quiet_retries() {
  lazyroot::KeeperOptions o;
  o.retry_initial_ms = 60000;
  o.retry_max_ms = 60000;
  return o;
}

ContainerImage appc(const std::string& id, const std::string& name, const std::vector<AppcLabel>& labels) {
  ContainerImage image;
  image.has_image = true;
  image.appc = true;
  image.id = id;
  image.name = name;
  image.labels = labels;
  return image;
}

const std::string kId = "sha512-" + std::string(128, 'f');
const std::string kName = "images.example.org/images/bookworm";

// ---------------------------------------------------------------------------
// Which image a Pin names

void pin_target_rule() {
  const std::vector<AppcLabel> labels = {AppcLabel("version", "latest"), AppcLabel("os", "linux"),
                                         AppcLabel("arch", "amd64"), AppcLabel("org.example/empty", "")};
  PinTarget t;

  // No image, a Docker image (or any non-APPC one): nothing to pin, even
  // with appc fields around.
  CHECK(!lazyroot::pin_target_for(ContainerImage(), &t));
  ContainerImage docker = appc(kId, kName, labels);
  docker.appc = false;
  CHECK(!lazyroot::pin_target_for(docker, &t));
  ContainerImage no_image = appc(kId, kName, labels);
  no_image.has_image = false;
  CHECK(!lazyroot::pin_target_for(no_image, &t));

  // An id: by id alone, whatever the name and labels say.
  t = PinTarget();
  CHECK(lazyroot::pin_target_for(appc(kId, kName, labels), &t));
  CHECK(t.by_id());
  CHECK_EQ(t.image_id, kId);
  CHECK(t.appc_name.empty() && t.labels.empty());
  CHECK_EQ(t.describe(), "image " + kId);

  // Any id, not only "sha512-...": only the daemon knows which are its
  // own (it answers not_ours for the others). The old rule skipped these.
  t = PinTarget();
  CHECK(lazyroot::pin_target_for(appc("sha256-0123", kName, labels), &t));
  CHECK_EQ(t.image_id, std::string("sha256-0123"));

  // No id: by name and every label, as given and in order (empty values
  // too). The old rule ran these containers unpinned.
  t = PinTarget();
  CHECK(lazyroot::pin_target_for(appc("", kName, labels), &t));
  CHECK(!t.by_id());
  CHECK_EQ(t.appc_name, kName);
  CHECK_EQ(t.labels.size(), labels.size());
  for (std::size_t i = 0; i < labels.size() && i < t.labels.size(); ++i) {
    CHECK_EQ(t.labels[i].key, labels[i].key);
    CHECK_EQ(t.labels[i].value, labels[i].value);
  }
  CHECK_EQ(t.describe(), "image '" + kName + "' with labels version=latest, os=linux, arch=amd64, org.example/empty=");

  // A name without labels: still asked (the daemon says what is missing).
  t = PinTarget();
  CHECK(lazyroot::pin_target_for(appc("", kName, {}), &t));
  CHECK_EQ(t.appc_name, kName);
  CHECK(t.labels.empty());
  CHECK_EQ(t.describe(), "image '" + kName + "' with no labels");

  // Neither id nor name: nothing to name.
  CHECK(!lazyroot::pin_target_for(appc("", "", labels), &t));

  // The request: the container, the target, never an operator pin.
  t = PinTarget();
  lazyroot::pin_target_for(appc("", kName, labels), &t);
  lazyroot::PinRequest r = t.request("parent.child");
  CHECK_EQ(r.container_id, std::string("parent.child"));
  CHECK(r.image_id.empty());
  CHECK_EQ(r.appc_name, kName);
  CHECK_EQ(r.appc_labels.size(), labels.size());
  CHECK(!r.operator_pin);
}

// ---------------------------------------------------------------------------
// What a Pin's answer means for the launch

void pin_outcome_rule() {
  PinTarget by_id;
  by_id.image_id = kId;
  PinTarget by_name;
  by_name.appc_name = kName;
  by_name.labels = {AppcLabel("version", "v1"), AppcLabel("os", "linux")};
  const std::string socket = "/run/lazyroot/control.sock";

  lazyroot::Pin pin;
  pin.container_id = "c1";
  pin.image_id = kId;
  pin.root_hash = "abc123";
  pin.rootfs = "/var/lib/lazyroot/mnt/x";
  PinOutcome o = lazyroot::pin_outcome(pin, by_name, "c1", socket);
  CHECK(o.kind == PinOutcome::kPinned);
  CHECK_EQ(o.pin.root_hash, std::string("abc123"));
  CHECK_CONTAINS(o.message, "abc123");
  CHECK_CONTAINS(o.message, kId);  // the id the name resolved to

  // not_ours, and only not_ours, lets the launch go on unpinned.
  o = lazyroot::pin_outcome(answered(404, "not_ours", "no image sha512-x"), by_id, "c1", socket);
  CHECK(o.kind == PinOutcome::kNotOurs);
  CHECK_EQ(o.error.code, std::string("not_ours"));
  CHECK_CONTAINS(o.message, "not a lazyroot image");

  // Everything else fails the launch, and says what, for whom, where, why.
  struct Case {
    Error error;
    const char* why;
  };
  const std::vector<Case> failures = {
      {answered(404, "not_found", "image images.example.org/images/bookworm version v1 is not served on this agent"),
       "a lazyroot image this agent does not serve (it was no-op before)"},
      {answered(503, "unavailable", "no server of images.example.org answers"), "servers or cache down"},
      {answered(400, "invalid_argument", "the 'arch' label is required"), "a malformed request"},
      {answered(500, "internal", "state database: disk I/O error"), "the daemon's fault"},
      {answered(409, "already_exists", "container c1 pins another image"), "a conflict"},
      {answered(403, "permission_denied", "root only"), "not root"},
      {answered(409, "busy", "still in use"), "busy"},
      {answered(418, "some_future_code", "a code this client does not know"), "an unknown code"},
      {absent(), "no daemon"},
      {timed_out(), "a daemon that does not answer"},
      {Error("internal", "malformed Pin answer from the daemon: rootfs must be a string"), "a broken answer"},
  };
  for (const Case& c : failures) {
    for (const PinTarget* target : {&by_id, &by_name}) {
      o = lazyroot::pin_outcome(c.error, *target, "parent.child", socket);
      record(o.kind == PinOutcome::kFailed, __FILE__, __LINE__, std::string("fails the launch: ") + c.why);
      CHECK_EQ(o.error.code, c.error.code);
      CHECK_CONTAINS(o.message, target->describe());
      CHECK_CONTAINS(o.message, "container parent.child");
      CHECK_CONTAINS(o.message, "daemon socket " + socket);
      CHECK_CONTAINS(o.message, c.error.code + ": " + c.error.message);
    }
  }
  o = lazyroot::pin_outcome(answered(404, "not_found", "x"), by_name, "c1", socket);
  CHECK_CONTAINS(o.message, "image '" + kName + "' with labels version=v1, os=linux");
}

// ---------------------------------------------------------------------------
// Which failed unpins are worth replaying

void unpin_retry_rule() {
  CHECK(lazyroot::unpin_may_succeed_later(absent()));
  CHECK(lazyroot::unpin_may_succeed_later(timed_out()));
  CHECK(lazyroot::unpin_may_succeed_later(Error("unavailable", "closed the connection after 20 of 200 body bytes")));
  CHECK(lazyroot::unpin_may_succeed_later(Error("internal", "malformed Unpin answer")));  // no status: a 200 unread
  CHECK(lazyroot::unpin_may_succeed_later(answered(500, "internal")));
  CHECK(lazyroot::unpin_may_succeed_later(answered(502, "internal")));
  CHECK(lazyroot::unpin_may_succeed_later(answered(503, "unavailable")));
  CHECK(lazyroot::unpin_may_succeed_later(answered(409, "busy")));  // "try again later"
  CHECK(!lazyroot::unpin_may_succeed_later(answered(400, "invalid_argument")));
  CHECK(!lazyroot::unpin_may_succeed_later(answered(403, "permission_denied")));
  CHECK(!lazyroot::unpin_may_succeed_later(answered(404, "not_found")));
  CHECK(!lazyroot::unpin_may_succeed_later(answered(409, "already_exists")));
  CHECK(!lazyroot::unpin_may_succeed_later(answered(429, "internal")));  // any 4xx
  // Refused by the client before sending (socket path too long, not UTF-8).
  CHECK(!lazyroot::unpin_may_succeed_later(Error("invalid_argument", "socket path too long")));
}

// ---------------------------------------------------------------------------
// UnpinQueue

void unpin_queue_keeps_what_may_pass() {
  Log log;
  UnpinQueue q(log.sink());
  CHECK_EQ(q.capacity(), static_cast<std::size_t>(65536));
  CHECK(q.keep("c-absent", absent()));
  CHECK_LOGGED(log, LogLevel::kWarning, "cannot unpin container c-absent: unavailable: Pin: cannot connect");
  CHECK_LOGGED(log, LogLevel::kWarning, "kept, and retried");
  CHECK(q.keep("c-timeout", timed_out()));
  CHECK(q.keep("c-500", answered(500, "internal")));
  CHECK(q.keep("c-busy", answered(409, "busy")));

  // A 4xx would fail forever: logged at ERROR, not kept.
  CHECK(!q.keep("bad/id", answered(400, "invalid_argument", "container_id 'bad/id' is not a container id")));
  CHECK_LOGGED(log, LogLevel::kError, "cannot unpin container bad/id: invalid_argument: container_id 'bad/id'");
  CHECK_LOGGED(log, LogLevel::kError, "not retried");
  CHECK(!q.keep("c-403", answered(403, "permission_denied")));
  CHECK(!q.keep("c-local", Error("invalid_argument", "socket path too long")));
  CHECK_EQ(q.ids(), std::vector<std::string>({"c-absent", "c-timeout", "c-500", "c-busy"}));
}

void unpin_queue_dedup_and_bound() {
  Log log;
  UnpinQueue q(log.sink(), 3);
  CHECK(q.keep("a", absent()));
  CHECK(q.keep("b", absent()));
  CHECK(q.keep("a", timed_out()));  // again: still one entry, in its first place
  CHECK_EQ(q.ids(), std::vector<std::string>({"a", "b"}));
  CHECK(q.keep("c", absent()));
  CHECK_EQ(log.count(LogLevel::kError, ""), 0);
  CHECK(q.keep("d", absent()));  // full: the oldest goes, at ERROR
  CHECK_EQ(q.ids(), std::vector<std::string>({"b", "c", "d"}));
  CHECK_LOGGED(log, LogLevel::kError, "dropped the oldest, of container a");
  CHECK(q.keep("c", absent()));  // a duplicate never evicts anything
  CHECK_EQ(q.ids(), std::vector<std::string>({"b", "c", "d"}));
  CHECK_EQ(log.count(LogLevel::kError, "dropped the oldest"), 1);

  UnpinQueue big(log.sink());
  for (int i = 0; i < 65536 + 10; ++i) big.keep("c" + std::to_string(i), absent());
  CHECK_EQ(big.size(), static_cast<std::size_t>(65536));
  CHECK_EQ(big.ids().empty() ? std::string() : big.ids().front(), std::string("c10"));
}

void unpin_queue_replay_order() {
  Log log;
  UnpinQueue q(log.sink());
  for (const char* id : {"a", "b", "c", "d"}) q.keep(id, absent());

  // Oldest first; stops at the first that fails again, which goes to the back.
  std::vector<std::string> sent;
  UnpinQueue::Replay r = q.replay(
      [&](const std::string& id) -> Result<UnpinResponse> {
        sent.push_back(id);
        if (id == "b") return timed_out();
        return unpinned(id == "a");
      },
      100);
  CHECK_EQ(sent, std::vector<std::string>({"a", "b"}));
  CHECK(r.failed && !r.skipped);
  CHECK_EQ(r.replayed, static_cast<std::size_t>(1));
  CHECK_EQ(r.remaining, static_cast<std::size_t>(3));
  CHECK_EQ(q.ids(), std::vector<std::string>({"c", "d", "b"}));
  CHECK_LOGGED(log, LogLevel::kInfo, "replayed the kept unpin of container a: its pin is released");
  CHECK_LOGGED(log, LogLevel::kWarning, "failed again at container b");

  // A limit; was_pinned=false is a success (the replay is idempotent); a
  // refusal on replay is dropped (ERROR) and the replay goes on.
  sent.clear();
  r = q.replay(
      [&](const std::string& id) -> Result<UnpinResponse> {
        sent.push_back(id);
        if (id == "c") return answered(400, "invalid_argument");
        return unpinned(false);
      },
      2);
  CHECK_EQ(sent, std::vector<std::string>({"c", "d"}));
  CHECK(!r.failed);
  CHECK_EQ(r.replayed, static_cast<std::size_t>(1));
  CHECK_EQ(r.dropped, static_cast<std::size_t>(1));
  CHECK_EQ(q.ids(), std::vector<std::string>({"b"}));
  CHECK_LOGGED(log, LogLevel::kInfo, "container d: it held no pin any more");
  CHECK_LOGGED(log, LogLevel::kError, "the replayed unpin of container c was refused");

  // One replay at a time: a second one meanwhile does nothing.
  UnpinQueue::Replay inner;
  r = q.replay(
      [&](const std::string&) -> Result<UnpinResponse> {
        inner = q.replay([](const std::string&) -> Result<UnpinResponse> { return unpinned(); }, 100);
        return timed_out();
      },
      100);
  CHECK(inner.skipped);
  CHECK_EQ(q.ids(), std::vector<std::string>({"b"}));

  // An id forgotten (by a sync) while its replay is in flight stays gone,
  // even if the call fails.
  r = q.replay(
      [&](const std::string&) -> Result<UnpinResponse> {
        q.forget_synced(q.mark(), {});
        return timed_out();
      },
      100);
  CHECK_EQ(q.size(), static_cast<std::size_t>(0));
  CHECK(q.wait_until_empty(0));

  // Nothing kept: no call.
  sent.clear();
  r = q.replay([&](const std::string& id) -> Result<UnpinResponse> {
    sent.push_back(id);
    return unpinned();
  }, 100);
  CHECK(sent.empty() && !r.failed && r.remaining == 0);
}

void unpin_queue_recover() {
  Log log;
  UnpinQueue q(log.sink());
  for (const char* id : {"gone-1", "known", "gone-2"}) q.keep(id, absent());
  const uint64_t mark = q.mark();
  q.keep("after-mark", absent());  // kept after SyncPins was sent: not settled by it
  // SyncPins(known, x) dropped the pins of gone-1 and gone-2, and kept
  // known's: its unpin must still be replayed.
  CHECK_EQ(q.forget_synced(mark, {"known", "x"}), static_cast<std::size_t>(2));
  CHECK_EQ(q.ids(), std::vector<std::string>({"known", "after-mark"}));
  CHECK_EQ(q.forget_synced(q.mark(), {}), static_cast<std::size_t>(2));
  CHECK(q.wait_until_empty(0));
}

// ---------------------------------------------------------------------------
// UnpinRetrier

void unpin_retry_backoff() {
  std::vector<int> delays;
  int d = 1000;
  for (int i = 0; i < 8; ++i) delays.push_back(d = lazyroot::next_retry_delay_ms(d, 60000));
  const std::vector<int> expected = {2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
  record(delays == expected, __FILE__, __LINE__, "1 s doubling, capped at 60 s");
  CHECK_EQ(lazyroot::next_retry_delay_ms(40000, 60000), 60000);
  CHECK_EQ(lazyroot::next_retry_delay_ms(std::numeric_limits<int>::max() / 2 + 1, std::numeric_limits<int>::max()),
           std::numeric_limits<int>::max());  // no overflow
}

void unpin_retrier_thread() {
  Log log;
  UnpinQueue q(log.sink());
  std::mutex m;
  std::vector<Clock::time_point> calls;
  int failures_left = 3;
  UnpinQueue::UnpinCall unpin = [&](const std::string&) -> Result<UnpinResponse> {
    std::lock_guard<std::mutex> lock(m);
    calls.push_back(Clock::now());
    if (failures_left > 0) {
      --failures_left;
      return absent();
    }
    return unpinned();
  };
  {
    lazyroot::UnpinRetrier retrier(&q, unpin, log.sink(), 20, 50);
    CHECK(!retrier.running());  // nothing kept, no thread

    const Clock::time_point kept_at = Clock::now();
    q.keep("c1", absent());
    retrier.wake();
    CHECK(retrier.running());
    retrier.wake();  // already running: still one thread
    CHECK(q.wait_until_empty(5000));

    // Four calls: three failures, then the unpin; the waits double from
    // 20 ms and stop at 50 ms.
    std::vector<Clock::time_point> seen;
    {
      std::lock_guard<std::mutex> lock(m);
      seen = calls;
    }
    CHECK_EQ(seen.size(), static_cast<std::size_t>(4));
    if (seen.size() == 4) {
      auto ms = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
      };
      record(ms(kept_at, seen[0]) >= 20, __FILE__, __LINE__, "first retry after 20 ms");
      record(ms(seen[0], seen[1]) >= 40, __FILE__, __LINE__, "then 40 ms");
      record(ms(seen[1], seen[2]) >= 50 && ms(seen[2], seen[3]) >= 50, __FILE__, __LINE__, "then capped at 50 ms");
    }
    CHECK_LOGGED(log, LogLevel::kInfo, "replayed the kept unpin of container c1");

    // The queue is empty: the thread goes.
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
    while (retrier.running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(!retrier.running());

    // Kept again: a new thread replays it.
    q.keep("c2", absent());
    retrier.wake();
    CHECK(q.wait_until_empty(5000));
  }

  // A retrier waiting out a long delay stops at once when destroyed.
  q.keep("c3", absent());
  const Clock::time_point before = Clock::now();
  {
    lazyroot::UnpinRetrier slow(&q, unpin, log.sink(), 60000, 60000);
    slow.wake();
    CHECK(slow.running());
  }
  record(Clock::now() - before < std::chrono::seconds(2), __FILE__, __LINE__, "destroying the retrier stops it");
  CHECK_EQ(q.ids(), std::vector<std::string>({"c3"}));
}

// ---------------------------------------------------------------------------
// PinKeeper: the hooks

void keeper_prepare() {
  Log log;
  auto daemon = std::make_shared<FakeDaemon>();
  PinTarget by_id;
  by_id.image_id = kId;
  PinTarget by_name;
  by_name.appc_name = kName;
  by_name.labels = {AppcLabel("os", "linux"), AppcLabel("arch", "amd64")};

  // Pinned: the launch goes on, cleanup() will unpin.
  {
    lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());
    PinOutcome o = keeper.prepare("c1", by_name);
    CHECK(o.kind == PinOutcome::kPinned);
    CHECK_EQ(daemon->calls(), std::vector<std::string>({"ensure", "pin c1 name=" + kName + " os=linux arch=amd64"}));
    CHECK_LOGGED(log, LogLevel::kInfo, "container c1 pins image '" + kName + "'");
    CHECK(keeper.claim_cleanup("c1"));
    CHECK(!keeper.claim_cleanup("c1"));  // once
    CHECK(!keeper.claim_cleanup("never-prepared"));  // no call, no thread for it
  }

  // not_ours: launch unpinned, and nothing to unpin later.
  daemon->clear();
  daemon->on_pin = [](const lazyroot::PinRequest&) { return Result<lazyroot::Pin>(answered(404, "not_ours")); };
  {
    lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());
    PinOutcome o = keeper.prepare("c2", by_id);
    CHECK(o.kind == PinOutcome::kNotOurs);
    CHECK_LOGGED(log, LogLevel::kDebug, "image " + kId + " of container c2 is not a lazyroot image");
    CHECK(!keeper.claim_cleanup("c2"));
  }

  // not_found (or any failure): the launch fails; cleanup() still unpins,
  // since a failed call (a timeout) may have taken the pin.
  daemon->on_pin = [](const lazyroot::PinRequest&) { return Result<lazyroot::Pin>(timed_out()); };
  {
    lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());
    PinOutcome o = keeper.prepare("c3", by_id);
    CHECK(o.kind == PinOutcome::kFailed);
    CHECK_CONTAINS(o.message, "cannot pin image " + kId + " for container c3 (daemon socket /run/test/control.sock)");
    CHECK(keeper.claim_cleanup("c3"));
  }

  // A daemon that cannot be started fails the launch, naming why; no Pin.
  daemon->clear();
  daemon->on_ensure = [] {
    return Result<lazyroot::EnsureOutcome>(Error("unavailable", "could not be started with '/usr/local/bin/lazyroot'"));
  };
  {
    lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());
    PinOutcome o = keeper.prepare("c4", by_name);
    CHECK(o.kind == PinOutcome::kFailed);
    CHECK_CONTAINS(o.message, "cannot pin image '" + kName + "' with labels os=linux, arch=amd64 for container c4");
    CHECK_CONTAINS(o.message, "unavailable: could not be started with '/usr/local/bin/lazyroot'");
    CHECK_EQ(daemon->calls(), std::vector<std::string>({"ensure"}));
    CHECK(!keeper.claim_cleanup("c4"));  // no Pin was sent
  }
}

void keeper_cleanup_keeps_and_replays() {
  Log log;
  auto daemon = std::make_shared<FakeDaemon>();
  Switch up(absent());
  daemon->on_unpin = [&](const std::string& id) -> Result<UnpinResponse> {
    if (id == "bad/id") return answered(400, "invalid_argument");
    return up.answer();
  };
  lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());

  // The daemon is away: both unpins are kept, at WARNING.
  keeper.cleanup("c1");
  keeper.cleanup("c2");
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"c1", "c2"}));
  CHECK_LOGGED(log, LogLevel::kWarning, "cannot unpin container c1");
  CHECK(keeper.retrier().running());  // will retry in the background
  // Before its own call, a hook replays; with the daemon away that costs
  // one failed call, not one per kept unpin.
  daemon->clear();
  keeper.cleanup("c3");
  CHECK_EQ(daemon->calls(), std::vector<std::string>({"unpin c1", "unpin c3"}));
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"c2", "c1", "c3"}));

  // A refused unpin is not kept (and the replay before it moved c2 back).
  keeper.cleanup("bad/id");
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"c1", "c3", "c2"}));
  CHECK_LOGGED(log, LogLevel::kError, "cannot unpin container bad/id");

  // The daemon is back: the next hook call replays the kept ones first, in
  // line, then makes its own.
  up.set_up(true);
  daemon->clear();
  PinTarget t;
  t.image_id = kId;
  CHECK(keeper.prepare("c4", t).kind == PinOutcome::kPinned);
  CHECK_EQ(daemon->calls(), std::vector<std::string>({"ensure", "unpin c1", "unpin c3", "unpin c2", "pin c4 " + kId}));
  CHECK_EQ(keeper.kept_unpins().size(), static_cast<std::size_t>(0));
  CHECK_LOGGED(log, LogLevel::kInfo, "replayed the kept unpin of container c3");
}

void keeper_retries_in_the_background() {
  Log log;
  auto daemon = std::make_shared<FakeDaemon>();
  Switch up(answered(503, "unavailable", "state busy"));
  daemon->on_unpin = [&](const std::string&) { return up.answer(); };
  lazyroot::KeeperOptions options;
  options.retry_initial_ms = 10;
  options.retry_max_ms = 40;
  lazyroot::PinKeeper keeper(daemon, log.sink(), options);
  auto unpins = [&daemon] {
    int n = 0;
    for (const std::string& c : daemon->calls()) n += c == "unpin c1";
    return n;
  };
  keeper.cleanup("c1");
  CHECK_EQ(keeper.kept_unpins().size(), static_cast<std::size_t>(1));
  // The thread retries while the daemon keeps failing (wait for two retries;
  // a loaded machine may take a while).
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (unpins() < 3 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  record(unpins() >= 3, __FILE__, __LINE__, "the first unpin and two retries: " + std::to_string(unpins()));
  CHECK_EQ(keeper.kept_unpins().size(), static_cast<std::size_t>(1));  // still failing, still kept
  up.set_up(true);  // no hook call from here on: the thread alone replays it
  CHECK(keeper.kept_unpins().wait_until_empty(5000));
}

void keeper_recover() {
  Log log;
  auto daemon = std::make_shared<FakeDaemon>();
  daemon->on_unpin = [](const std::string&) { return Result<UnpinResponse>(absent()); };
  lazyroot::PinKeeper keeper(daemon, log.sink(), quiet_retries());

  keeper.cleanup("gone");
  keeper.cleanup("known");
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"gone", "known"}));

  // The sync fails: nothing is settled.
  daemon->on_sync = [](const std::vector<std::string>&) { return Result<lazyroot::SyncPinsResponse>(timed_out()); };
  keeper.recover({"known", "other"});
  CHECK_EQ(keeper.kept_unpins().size(), static_cast<std::size_t>(2));
  CHECK_LOGGED(log, LogLevel::kWarning, "cannot re-sync pins after agent recovery (2 containers known)");

  // The sync works: "gone" is settled (its pin was dropped); "known" stays
  // kept, since SyncPins keeps the pins of the containers it lists.
  daemon->on_sync = [](const std::vector<std::string>&) {
    lazyroot::SyncPinsResponse r;
    r.removed = {"gone"};
    return Result<lazyroot::SyncPinsResponse>(r);
  };
  daemon->clear();
  keeper.recover({"known", "other"});
  // (The failed replay of the first recover moved "gone" behind "known".)
  CHECK_EQ(daemon->calls(), std::vector<std::string>({"ensure", "unpin known", "sync known other"}));
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"known"}));
  CHECK_LOGGED(log, LogLevel::kInfo, "1 kept unpins settled by the sync");

  // Recovered containers may hold pins from before the restart: their
  // cleanup() unpins.
  CHECK(keeper.claim_cleanup("other"));

  // The first half alone (the module's, on the agent's thread).
  keeper.note_recovered({"n1"});
  CHECK(keeper.claim_cleanup("n1"));

  // A cleanup whose thread could not start keeps its unpin.
  keeper.keep_unpin("no-thread", "cannot start a thread to unpin container no-thread: Resource temporarily unavailable");
  CHECK_EQ(keeper.kept_unpins().ids(), std::vector<std::string>({"known", "no-thread"}));
  CHECK_LOGGED(log, LogLevel::kWarning, "cannot unpin container no-thread: unavailable: cannot start a thread");

  // A daemon that cannot be started: a warning, no sync, recovery goes on.
  daemon->clear();
  daemon->on_ensure = [] { return Result<lazyroot::EnsureOutcome>(Error("unavailable", "cannot start")); };
  keeper.recover({"r1"});
  CHECK_EQ(daemon->calls(), std::vector<std::string>({"ensure"}));
  CHECK_LOGGED(log, LogLevel::kWarning, "cannot re-sync pins after agent recovery: unavailable: cannot start");
  CHECK(keeper.claim_cleanup("r1"));
}

}  // namespace

std::vector<TestCase> isolator_tests() {
  return {
      {"pin_target_rule", pin_target_rule},
      {"pin_outcome_rule", pin_outcome_rule},
      {"unpin_retry_rule", unpin_retry_rule},
      {"unpin_queue_keeps_what_may_pass", unpin_queue_keeps_what_may_pass},
      {"unpin_queue_dedup_and_bound", unpin_queue_dedup_and_bound},
      {"unpin_queue_replay_order", unpin_queue_replay_order},
      {"unpin_queue_recover", unpin_queue_recover},
      {"unpin_retry_backoff", unpin_retry_backoff},
      {"unpin_retrier_thread", unpin_retrier_thread},
      {"keeper_prepare", keeper_prepare},
      {"keeper_cleanup_keeps_and_replays", keeper_cleanup_keeps_and_replays},
      {"keeper_retries_in_the_background", keeper_retries_in_the_background},
      {"keeper_recover", keeper_recover},
  };
}

#include "ensure_daemon.hpp"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "daemon_client.hpp"
#include "spawn.hpp"

namespace lazyroot {

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

std::string seconds(int ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g s", ms / 1000.0);
  return buf;
}

// One Health call, bounded by the deadline and by 2 s, so a daemon that is
// still starting gets asked again rather than waited on once.
Result<HealthResponse> probe(const std::string& socket_path, Clock::time_point deadline) {
  ClientOptions options;
  options.timeout_ms = std::max(1, std::min(ms_left(deadline), 2000));
  return DaemonClient(socket_path, options).health();
}

// True once `pid` no longer runs: gone, or a zombie waiting for its new
// parent to reap it.
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  std::size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return false;
  char state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

std::string log_hint(const std::string& log_file) {
  return log_file.empty() ? "its output went to /dev/null; give a log file to see why"
                          : "see " + log_file;
}

// Polls Health until it answers or the deadline passes. `pid` > 0: a daemon
// this call started, whose early exit ends the wait at once.
Result<EnsureOutcome> wait_until_healthy(const std::string& socket_path, Clock::time_point deadline,
                                         int timeout_ms, pid_t pid, const std::string& log_file,
                                         EnsureOutcome outcome) {
  int pause_ms = 20;
  for (;;) {
    Result<HealthResponse> health = probe(socket_path, deadline);
    if (health.ok()) return outcome;
    if (health.error().code == "invalid_argument") return health.error();  // waiting cannot help
    if (pid > 0 && process_gone(pid)) {
      return Error("unavailable", "the daemon started as pid " + std::to_string(pid) +
                                      " exited before answering on " + socket_path + " (" +
                                      log_hint(log_file) + "); last error: " + health.error().message);
    }
    if (ms_left(deadline) == 0) {
      std::string who = pid > 0 ? "the daemon started as pid " + std::to_string(pid)
                                : "the daemon listening on " + socket_path;
      std::string hint = pid > 0 ? " (" + log_hint(log_file) + ")" : "";
      return Error("unavailable", who + " did not answer Health within " + seconds(timeout_ms) + hint +
                                      "; last error: " + health.error().message);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(pause_ms, ms_left(deadline))));
    pause_ms = std::min(pause_ms * 2, 250);
  }
}

// mkdir -p of the directory holding `path`.
Result<bool> make_parent_dirs(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return true;
  std::string dir = path.substr(0, slash);
  for (std::size_t i = 1; i <= dir.size(); ++i) {
    if (i != dir.size() && dir[i] != '/') continue;
    std::string prefix = dir.substr(0, i);
    if (::mkdir(prefix.c_str(), 0755) < 0 && errno != EEXIST) {
      return Error("unavailable", "cannot create the directory " + prefix + ": " + std::strerror(errno));
    }
  }
  return true;
}

// Holds an exclusive flock until destroyed.
class LockGuard {
 public:
  LockGuard() = default;
  ~LockGuard() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

  Result<bool> acquire(const std::string& path, Clock::time_point deadline, int timeout_ms) {
    Result<bool> dirs = make_parent_dirs(path);
    if (!dirs.ok()) return dirs.error();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) return Error("unavailable", "cannot open the lock file " + path + ": " + std::strerror(errno));
    // flock() itself cannot time out: try without blocking until the deadline.
    for (;;) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) {
        return Error("unavailable", "cannot lock " + path + ": " + std::strerror(errno));
      }
      if (ms_left(deadline) == 0) {
        return Error("unavailable", "another process held " + path + " (starting the daemon) for more than " +
                                        seconds(timeout_ms));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20, ms_left(deadline))));
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace

Result<EnsureOutcome> ensure_daemon(const std::string& socket_path, const std::vector<std::string>& argv,
                                    int timeout_ms, const std::string& log_file) {
  if (argv.empty()) return Error("invalid_argument", "no daemon command given");
  if (timeout_ms <= 0) timeout_ms = 1;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);

  // Fast path, no lock: the daemon normally runs.
  Result<HealthResponse> first = probe(socket_path, deadline);
  if (first.ok()) return EnsureOutcome::kRunning;
  if (!first.error().daemon_absent) {
    // Something listens but did not answer well (starting, busy): starting a
    // second daemon would fight it for the socket and the mounts. Wait.
    return wait_until_healthy(socket_path, deadline, timeout_ms, -1, log_file, EnsureOutcome::kRunning);
  }

  // Check-and-start under the lock: a caller that waited here finds the
  // daemon its predecessor started (which answered before the lock was let go).
  LockGuard lock;
  Result<bool> locked = lock.acquire(socket_path + ".lock", deadline, timeout_ms);
  if (!locked.ok()) return locked.error();

  Result<HealthResponse> again = probe(socket_path, deadline);
  if (again.ok()) return EnsureOutcome::kRunning;
  if (!again.error().daemon_absent) {
    return wait_until_healthy(socket_path, deadline, timeout_ms, -1, log_file, EnsureOutcome::kRunning);
  }

  Result<pid_t> pid = spawn::start_detached(argv, log_file);
  if (!pid.ok()) return pid.error();
  return wait_until_healthy(socket_path, deadline, timeout_ms, pid.value(), log_file, EnsureOutcome::kStarted);
}

}  // namespace lazyroot

#include "spawn.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace lazyroot::spawn {

namespace {

// What the children tell the caller through a close-on-exec pipe. EOF
// without a failure report means execv() succeeded.
enum Step : int32_t { kPid = 0, kSetsid, kFork, kStdio, kChdir, kExec };

struct Report {
  int32_t step;
  int32_t value;  // the daemon's pid for kPid, errno otherwise
};

const char* step_name(int32_t step) {
  switch (step) {
    case kSetsid: return "setsid()";
    case kFork: return "the second fork()";
    case kStdio: return "redirecting stdin/stdout/stderr";
    case kChdir: return "chdir(\"/\")";
    case kExec: return "execv()";
    default: return "an unknown step";
  }
}

// Async-signal-safe: write(2) only. A report is 8 bytes, below PIPE_BUF,
// so it arrives whole.
void report(int fd, int32_t step, int32_t value) {
  Report r{step, value};
  ssize_t ignored = ::write(fd, &r, sizeof r);
  (void)ignored;
}

// Moves `fd` to a number >= 10 (close-on-exec), so that the dup2() calls
// onto 0..3 in the child can never clobber a descriptor still needed.
int to_high_fd(int fd) {
  if (fd < 0) return fd;
  int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return high;
}

void close_quietly(int fd) {
  if (fd >= 0) ::close(fd);
}

bool is_executable_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The grandchild: becomes the daemon. Never returns.
[[noreturn]] void exec_daemon(const char* program, char* const* argv, int in_fd, int out_fd,
                              int status_fd, long max_fd) {
  if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(out_fd, 2) < 0) {
    report(status_fd, kStdio, errno);
    _exit(127);
  }
  // The status pipe moves to 3 (still close-on-exec) and everything above
  // is closed: the daemon must not inherit the caller's sockets, the lock
  // file (it would keep the lock held forever) or anything else.
  if (::dup3(status_fd, 3, O_CLOEXEC) < 0) {
    report(status_fd, kStdio, errno);
    _exit(127);
  }
  status_fd = 3;
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
#endif
  {
    for (long fd = 4; fd < max_fd; ++fd) ::close(static_cast<int>(fd));
  }
  if (::chdir("/") < 0) {
    report(status_fd, kChdir, errno);
    _exit(127);
  }
  // Ignored signals and the blocked mask survive execv(); the agent's would
  // make the daemon deaf to SIGTERM or SIGPIPE.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // EINVAL for KILL/STOP: fine
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  ::execv(program, argv);
  report(status_fd, kExec, errno);
  _exit(127);
}

}  // namespace

Result<std::string> resolve_program(const std::string& program) {
  if (program.empty()) return Error("invalid_argument", "the daemon command is empty");
  if (program.find('/') != std::string::npos) {
    if (!is_executable_file(program)) {
      return Error("invalid_argument", "the daemon command " + program + " is not an executable file");
    }
    return program;
  }
  const char* env = std::getenv("PATH");
  std::string path = env != nullptr && *env != '\0' ? env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    std::size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + program;
    if (is_executable_file(candidate)) return candidate;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return Error("invalid_argument", "the daemon command " + program + " is not on PATH (" + path + ")");
}

Result<pid_t> start_detached(const std::vector<std::string>& argv, const std::string& log_file) {
  if (argv.empty()) return Error("invalid_argument", "the daemon command is empty");
  Result<std::string> program = resolve_program(argv[0]);
  if (!program.ok()) return program.error();

  // Everything the children touch is prepared here, before fork().
  std::vector<std::string> args(argv);
  std::vector<char*> cargv;
  for (std::string& a : args) cargv.push_back(&a[0]);
  cargv.push_back(nullptr);
  long max_fd = ::sysconf(_SC_OPEN_MAX);
  if (max_fd < 0 || max_fd > (1L << 20)) max_fd = 1L << 20;

  int in_fd = to_high_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (in_fd < 0) return Error("unavailable", std::string("cannot open /dev/null: ") + std::strerror(errno));
  const std::string out_path = log_file.empty() ? "/dev/null" : log_file;
  int out_fd = to_high_fd(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (out_fd < 0) {
    int err = errno;
    close_quietly(in_fd);
    return Error("invalid_argument", "cannot open the daemon log " + out_path + ": " + std::strerror(err));
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) {
    int err = errno;
    close_quietly(in_fd);
    close_quietly(out_fd);
    return Error("unavailable", std::string("cannot create a pipe: ") + std::strerror(err));
  }
  int status_r = to_high_fd(pipe_fds[0]);
  int status_w = to_high_fd(pipe_fds[1]);
  if (status_r < 0 || status_w < 0) {
    int err = errno;
    for (int fd : {in_fd, out_fd, status_r, status_w}) close_quietly(fd);
    return Error("unavailable", std::string("cannot move descriptors: ") + std::strerror(err));
  }

  pid_t child = ::fork();
  if (child < 0) {
    int err = errno;
    for (int fd : {in_fd, out_fd, status_r, status_w}) close_quietly(fd);
    return Error("unavailable", std::string("fork() failed: ") + std::strerror(err));
  }
  if (child == 0) {
    // First child: a new session, then fork again and exit at once, so the
    // daemon is orphaned (adopted by init or the nearest subreaper) and,
    // not being a session leader, can never acquire a controlling terminal.
    ::close(status_r);
    if (::setsid() < 0) {
      report(status_w, kSetsid, errno);
      _exit(1);
    }
    pid_t daemon = ::fork();
    if (daemon < 0) {
      report(status_w, kFork, errno);
      _exit(1);
    }
    if (daemon == 0) exec_daemon(program.value().c_str(), cargv.data(), in_fd, out_fd, status_w, max_fd);
    report(status_w, kPid, static_cast<int32_t>(daemon));
    _exit(0);
  }

  close_quietly(in_fd);
  close_quietly(out_fd);
  close_quietly(status_w);
  // Reap the first child (it exits immediately), so it does not linger as
  // a zombie of the caller.
  for (;;) {
    int wstatus;
    pid_t r = ::waitpid(child, &wstatus, 0);
    if (r >= 0 || errno != EINTR) break;  // ECHILD: SIGCHLD ignored, reaped already
  }

  // Read reports until EOF: the daemon's execv() closes the pipe. Bounded,
  // in case something between fork and exec hangs.
  pid_t daemon = -1;
  int32_t failed_step = -1, failed_errno = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string partial;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      close_quietly(status_r);
      return Error("unavailable", "the daemon process did not reach execv() within 10 s");
    }
    struct pollfd p{status_r, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[64];
    ssize_t n = ::read(status_r, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buf, static_cast<std::size_t>(n));
    while (partial.size() >= sizeof(Report)) {
      Report rep;
      std::memcpy(&rep, partial.data(), sizeof rep);
      partial.erase(0, sizeof rep);
      if (rep.step == kPid) {
        daemon = rep.value;
      } else if (failed_step < 0) {
        failed_step = rep.step;
        failed_errno = rep.value;
      }
    }
  }
  close_quietly(status_r);

  if (failed_step >= 0) {
    return Error("unavailable", "starting the daemon " + program.value() + " failed at " +
                                    step_name(failed_step) + ": " + std::strerror(failed_errno));
  }
  if (daemon <= 0) return Error("unavailable", "the daemon's launcher process died before reporting");
  return daemon;
}

}  // namespace lazyroot::spawn

// Starting a program fully detached from the caller. Internal to the client.
#ifndef LAZYROOT_CLIENT_SPAWN_HPP
#define LAZYROOT_CLIENT_SPAWN_HPP

#include <sys/types.h>

#include <string>
#include <vector>

#include "result.hpp"

namespace lazyroot::spawn {

// The executable `program` names: itself when it contains a '/', otherwise
// the first match on $PATH. "invalid_argument" when nothing executable is
// there, so a typo in a daemon command is reported before anything forks.
Result<std::string> resolve_program(const std::string& program);

// Starts argv[0] (resolved as above) as a daemon: double fork with setsid()
// in between, so the program is neither the caller's child nor in its
// session or process group, and survives the caller's exit or restart; cwd
// "/", stdin from /dev/null, stdout and stderr appended to `log_file` (or
// /dev/null when empty), every other descriptor closed, signal mask and
// dispositions reset. Returns the daemon's pid once execv() succeeded, or
// the step that failed with its errno.
//
// Safe to call from a multi-threaded process: between fork() and execv()
// the children make only async-signal-safe calls on data prepared before.
Result<pid_t> start_detached(const std::vector<std::string>& argv, const std::string& log_file);

}  // namespace lazyroot::spawn

#endif  // LAZYROOT_CLIENT_SPAWN_HPP

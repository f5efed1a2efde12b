// Making sure the lazyroot daemon answers on its socket, starting it if
// nothing listens there.
//
// C++11-compatible public header (see result.hpp).
#ifndef LAZYROOT_CLIENT_ENSURE_DAEMON_HPP
#define LAZYROOT_CLIENT_ENSURE_DAEMON_HPP

#include <string>
#include <vector>

#include "result.hpp"

namespace lazyroot {

enum class EnsureOutcome {
  kRunning,  // a daemon already answered Health
  kStarted,  // this call started one, and it answered Health
};

// If a daemon answers Health on `socket_path`, returns kRunning. If nothing
// listens there (the socket file is missing, or connect() is refused), takes
// an exclusive flock on "<socket_path>.lock" (creating the socket's directory
// if needed), looks again, and only if still nothing listens starts `argv`
// detached (see spawn.hpp: double fork + setsid, so the daemon is not the
// caller's child and outlives a Mesos agent restart, keeping its mounts),
// then polls Health until it answers: kStarted. Concurrent callers, threads
// or processes, therefore start at most one daemon: the others wait on the
// lock and then find it answering.
//
// A daemon that exists but answers slowly or with errors is waited for, never
// duplicated. Everything (lock wait, start, polling) ends within `timeout_ms`;
// if the daemon exits or stays silent, the error names the log file.
// `log_file` receives the daemon's stdout and stderr (appended); empty means
// /dev/null.
Result<EnsureOutcome> ensure_daemon(const std::string& socket_path, const std::vector<std::string>& argv,
                                    int timeout_ms, const std::string& log_file = std::string());

}  // namespace lazyroot

#endif  // LAZYROOT_CLIENT_ENSURE_DAEMON_HPP

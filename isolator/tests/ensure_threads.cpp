// Calls ensure_daemon() from several threads of one process at once, the way
// the Mesos isolator may (several containers launching together), and prints
// each thread's outcome: "started", "running" or "error <code>: <message>".
// Used by test_cli.py, which checks that exactly one daemon was started.
//
// With --hold it then stays alive until its stdin closes, so the test can
// look at the started daemon while the caller still runs (is the daemon its
// child? did it leave a zombie?).
//
// usage: ensure_threads [--hold] SOCKET THREADS TIMEOUT_MS -- CMD [ARGS...]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ensure_daemon.hpp"

int main(int argc, char** argv) {
  bool hold = argc > 1 && std::string(argv[1]) == "--hold";
  if (hold) {
    --argc;
    ++argv;
  }
  if (argc < 6 || std::string(argv[4]) != "--") {
    std::fprintf(stderr, "usage: ensure_threads [--hold] SOCKET THREADS TIMEOUT_MS -- CMD [ARGS...]\n");
    return 2;
  }
  const std::string socket = argv[1];
  const int threads = std::atoi(argv[2]);
  const int timeout_ms = std::atoi(argv[3]);
  const std::vector<std::string> command(argv + 5, argv + argc);

  std::vector<std::string> outcomes(static_cast<std::size_t>(threads));
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      lazyroot::Result<lazyroot::EnsureOutcome> r = lazyroot::ensure_daemon(socket, command, timeout_ms);
      outcomes[static_cast<std::size_t>(i)] =
          !r.ok() ? "error " + r.error().describe()
                  : r.value() == lazyroot::EnsureOutcome::kStarted ? "started" : "running";
    });
  }
  bool all_ok = true;
  for (int i = 0; i < threads; ++i) {
    workers[static_cast<std::size_t>(i)].join();
    std::printf("%s\n", outcomes[static_cast<std::size_t>(i)].c_str());
    if (outcomes[static_cast<std::size_t>(i)].compare(0, 5, "error") == 0) all_ok = false;
  }
  std::fflush(stdout);
  if (hold) {
    while (std::getchar() != EOF) {
    }
  }
  return all_ok ? 0 : 1;
}

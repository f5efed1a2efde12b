// lazyroot-isolator-client: the daemon client library as a command, for
// operators and for the integration tests that drive the real daemon.
// Output is one simple line per result so that shell scripts can use it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "daemon_client.hpp"
#include "ensure_daemon.hpp"
#include "log_sink.hpp"
#include "pin_keeper.hpp"
#include "pin_rules.hpp"

namespace {

using lazyroot::Error;
using lazyroot::Result;

const char* const kProgram = "lazyroot-isolator-client";

const char* const kUsage =
    "usage: lazyroot-isolator-client [--socket PATH] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "  health                              ok images=N pins=N mounts=N\n"
    "  prepare FQRN PATH [--root-hash H | --tag T]\n"
    "                                      <id> <rootfs> <root_hash> <revision>\n"
    "  pin CONTAINER_ID (IMAGE_ID | --name NAME [--label KEY=VALUE]...)\n"
    "                                      <root_hash> <rootfs>\n"
    "  unpin CONTAINER_ID                  unpinned | not pinned\n"
    "  sync [CONTAINER_ID...]              the removed container ids, one per line\n"
    "  list                                <id> <fqrn> <path> <root_hash> <pinned_by,...|->\n"
    "  ensure-daemon [--timeout SECONDS] [--log FILE] -- CMD [ARGS...]\n"
    "                                      started | running\n"
    "\n"
    "The isolator's hooks, as the Mesos module runs them (PinKeeper):\n"
    "  isolator-prepare CONTAINER_ID [--id ID] [--name NAME] [--label KEY=VALUE]...\n"
    "                                      pinned <image_id> <root_hash> <rootfs> | not ours | nothing to pin\n"
    "  unpin-replay [--deadline SECONDS] [--retry SECONDS] [--max-retry SECONDS] CONTAINER_ID...\n"
    "                                      cleanup() of each; failed unpins kept and retried\n"
    "                                      until none is left (exit 0) or the deadline (exit 1);\n"
    "                                      prints the isolator's log lines as they come\n"
    "\n"
    "--socket defaults to /run/lazyroot/control.sock. --timeout bounds each\n"
    "request (default 5 s, 30 s for prepare); ensure-daemon's own --timeout\n"
    "bounds the whole start (default 30 s). unpin-replay: --deadline 30 s,\n"
    "--retry 1 s (the first retry's delay, doubled while retries fail), --max-retry 60 s.\n"
    "On error: exit status 1 and one line on stderr: lazyroot-isolator-client: <code>: <message>\n";

[[noreturn]] void fail(const Error& e) {
  std::string message = e.message;
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';  // the contract is one line
  }
  std::fprintf(stderr, "%s: %s: %s\n", kProgram, e.code.c_str(), message.c_str());
  std::exit(1);
}

[[noreturn]] void usage_error(const std::string& message) {
  fail(Error("invalid_argument", message + " (see --help)"));
}

// The value, or exit with the error. Returns a copy: callers pass temporaries.
template <typename T>
T check(const Result<T>& result) {
  if (!result.ok()) fail(result.error());
  return result.value();
}

// "2", "0.5": seconds, more than 0 and at most a day, as milliseconds.
int parse_seconds(const std::string& option, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(v) || v <= 0 || v > 86400) {
    usage_error(option + " needs a number of seconds between 0 and 86400, not \"" + text + "\"");
  }
  return static_cast<int>(std::ceil(v * 1000));
}

// Matches "--name VALUE" or "--name=VALUE" at args[i]; advances i past it.
bool take_option(const std::vector<std::string>& args, std::size_t& i, const std::string& name,
                 std::string& value) {
  const std::string& a = args[i];
  if (a == name) {
    if (i + 1 >= args.size()) usage_error(name + " needs a value");
    value = args[i + 1];
    i += 2;
    return true;
  }
  if (a.compare(0, name.size() + 1, name + "=") == 0) {
    value = a.substr(name.size() + 1);
    i += 1;
    return true;
  }
  return false;
}

// "KEY=VALUE" (the value may be empty or hold more '='), for --label.
lazyroot::AppcLabel parse_label(const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) usage_error("--label needs KEY=VALUE, not \"" + text + "\"");
  return lazyroot::AppcLabel(text.substr(0, eq), text.substr(eq + 1));
}

void expect_args(const std::string& command, const std::vector<std::string>& rest, std::size_t n,
                 const char* shape) {
  if (rest.size() != n) usage_error(command + " takes " + shape);
}

std::string output;

void line(const std::string& text) {
  output += text;
  output += '\n';
}

const char* level_name(lazyroot::LogLevel level) {
  switch (level) {
    case lazyroot::LogLevel::kDebug: return "DEBUG";
    case lazyroot::LogLevel::kInfo: return "INFO";
    case lazyroot::LogLevel::kWarning: return "WARNING";
    case lazyroot::LogLevel::kError: return "ERROR";
  }
  return "?";
}

// unpin-replay's log: each line at once (a test watches them while the
// command runs), from the main thread and the retry thread alike.
void print_log_line(lazyroot::LogLevel level, const std::string& message) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::printf("%s %s\n", level_name(level), message.c_str());
  std::fflush(stdout);
}

int run(const std::vector<std::string>& args) {
  std::string socket = lazyroot::kDefaultSocket;
  int timeout_ms = -1;
  std::size_t i = 0;
  while (i < args.size() && args[i].compare(0, 1, "-") == 0) {
    std::string value;
    if (args[i] == "-h" || args[i] == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (take_option(args, i, "--socket", value)) {
      if (value.empty()) usage_error("--socket needs a path");
      socket = value;
    } else if (take_option(args, i, "--timeout", value)) {
      timeout_ms = parse_seconds("--timeout", value);
    } else {
      usage_error("unknown option " + args[i]);
    }
  }
  if (i >= args.size()) usage_error("no command given");
  const std::string command = args[i++];
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  lazyroot::ClientOptions options;
  if (timeout_ms > 0) options.timeout_ms = options.prepare_timeout_ms = timeout_ms;
  lazyroot::DaemonClient client(socket, options);

  if (command == "health") {
    expect_args(command, rest, 0, "no arguments");
    const lazyroot::HealthResponse h = check(client.health());
    if (h.status != "ok") fail(Error("unavailable", "the daemon reports status \"" + h.status + "\""));
    line(h.status + " images=" + std::to_string(h.images) + " pins=" + std::to_string(h.pins) +
         " mounts=" + std::to_string(h.mounts));
  } else if (command == "prepare") {
    lazyroot::PrepareImageRequest request;
    std::vector<std::string> positional;
    for (std::size_t k = 0; k < rest.size();) {
      std::string value;
      if (take_option(rest, k, "--root-hash", value)) {
        request.root_hash = value;
      } else if (take_option(rest, k, "--tag", value)) {
        request.tag = value;
      } else if (rest[k].compare(0, 2, "--") == 0) {
        usage_error("unknown option " + rest[k] + " for prepare");
      } else {
        positional.push_back(rest[k++]);
      }
    }
    expect_args(command, positional, 2, "FQRN PATH [--root-hash H | --tag T]");
    if (!request.root_hash.empty() && !request.tag.empty()) usage_error("prepare takes --root-hash or --tag, not both");
    request.fqrn = positional[0];
    request.path = positional[1];
    const lazyroot::Image image = check(client.prepare_image(request));
    line(image.id + " " + image.rootfs + " " + image.root_hash + " " + std::to_string(image.revision));
  } else if (command == "pin") {
    lazyroot::PinRequest request;
    std::vector<std::string> positional;
    bool by_name = false;
    for (std::size_t k = 0; k < rest.size();) {
      std::string value;
      if (take_option(rest, k, "--name", value)) {
        request.appc_name = value;
        by_name = true;
      } else if (take_option(rest, k, "--label", value)) {
        request.appc_labels.push_back(parse_label(value));
      } else if (rest[k].compare(0, 2, "--") == 0) {
        usage_error("unknown option " + rest[k] + " for pin");
      } else {
        positional.push_back(rest[k++]);
      }
    }
    const char* shape = "CONTAINER_ID (IMAGE_ID | --name NAME [--label KEY=VALUE]...)";
    if (by_name) {
      expect_args(command, positional, 1, shape);
    } else {
      if (!request.appc_labels.empty()) usage_error("pin: --label goes with --name");
      expect_args(command, positional, 2, shape);
      request.image_id = positional[1];
    }
    request.container_id = positional[0];
    const lazyroot::Pin pin = check(client.pin(request));
    line(pin.root_hash + " " + pin.rootfs);
  } else if (command == "unpin") {
    expect_args(command, rest, 1, "CONTAINER_ID");
    line(check(client.unpin(rest[0])).was_pinned ? "unpinned" : "not pinned");
  } else if (command == "sync") {
    const lazyroot::SyncPinsResponse synced = check(client.sync_pins(rest));
    for (const std::string& id : synced.removed) line(id);
  } else if (command == "list") {
    expect_args(command, rest, 0, "no arguments");
    const lazyroot::ListImagesResponse listed = check(client.list_images());
    for (const lazyroot::Image& image : listed.images) {
      std::string pinned;
      for (const std::string& id : image.pinned_by) pinned += (pinned.empty() ? "" : ",") + id;
      line(image.id + " " + image.fqrn + " " + image.path + " " + image.root_hash + " " +
           (pinned.empty() ? "-" : pinned));
    }
  } else if (command == "ensure-daemon") {
    int wait_ms = timeout_ms > 0 ? timeout_ms : 30000;
    std::string log;
    std::size_t k = 0;
    while (k < rest.size() && rest[k] != "--") {
      std::string value;
      if (take_option(rest, k, "--timeout", value)) {
        wait_ms = parse_seconds("--timeout", value);
      } else if (take_option(rest, k, "--log", value)) {
        log = value;
      } else {
        usage_error("ensure-daemon: unexpected " + rest[k] + " (the daemon command goes after --)");
      }
    }
    if (k >= rest.size() || k + 1 >= rest.size()) usage_error("ensure-daemon needs -- CMD [ARGS...]");
    std::vector<std::string> argv(rest.begin() + static_cast<std::ptrdiff_t>(k + 1), rest.end());
    const lazyroot::EnsureOutcome outcome = check(lazyroot::ensure_daemon(socket, argv, wait_ms, log));
    line(outcome == lazyroot::EnsureOutcome::kStarted ? "started" : "running");
  } else if (command == "isolator-prepare") {
    // prepare() as the module runs it, from the image fields Mesos gives
    // (an APPC image), never starting a daemon.
    lazyroot::ContainerImage image;
    image.has_image = image.appc = true;
    std::vector<std::string> positional;
    for (std::size_t k = 0; k < rest.size();) {
      std::string value;
      if (take_option(rest, k, "--id", value)) {
        image.id = value;
      } else if (take_option(rest, k, "--name", value)) {
        image.name = value;
      } else if (take_option(rest, k, "--label", value)) {
        image.labels.push_back(parse_label(value));
      } else if (rest[k].compare(0, 2, "--") == 0) {
        usage_error("unknown option " + rest[k] + " for isolator-prepare");
      } else {
        positional.push_back(rest[k++]);
      }
    }
    expect_args(command, positional, 1, "CONTAINER_ID [--id ID] [--name NAME] [--label KEY=VALUE]...");
    lazyroot::PinTarget target;
    if (!lazyroot::pin_target_for(image, &target)) {
      line("nothing to pin");
    } else {
      std::shared_ptr<lazyroot::Daemon> daemon(
          new lazyroot::SocketDaemon(socket, options, std::vector<std::string>(), std::string(), 0));
      lazyroot::PinOutcome outcome;
      {
        lazyroot::PinKeeper keeper(daemon, lazyroot::LogSink());
        outcome = keeper.prepare(positional[0], target);
      }
      if (outcome.kind == lazyroot::PinOutcome::kFailed) fail(Error(outcome.error.code, outcome.message));
      if (outcome.kind == lazyroot::PinOutcome::kNotOurs) {
        line("not ours");
      } else {
        line("pinned " + outcome.pin.image_id + " " + outcome.pin.root_hash + " " + outcome.pin.rootfs);
      }
    }
  } else if (command == "unpin-replay") {
    int deadline_ms = 30000;
    lazyroot::KeeperOptions keeper_options;
    std::vector<std::string> containers;
    for (std::size_t k = 0; k < rest.size();) {
      std::string value;
      if (take_option(rest, k, "--deadline", value)) {
        deadline_ms = parse_seconds("--deadline", value);
      } else if (take_option(rest, k, "--retry", value)) {
        keeper_options.retry_initial_ms = parse_seconds("--retry", value);
      } else if (take_option(rest, k, "--max-retry", value)) {
        keeper_options.retry_max_ms = parse_seconds("--max-retry", value);
      } else if (rest[k].compare(0, 2, "--") == 0) {
        usage_error("unknown option " + rest[k] + " for unpin-replay");
      } else {
        containers.push_back(rest[k++]);
      }
    }
    if (containers.empty()) usage_error("unpin-replay takes CONTAINER_ID...");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
    std::shared_ptr<lazyroot::Daemon> daemon(
        new lazyroot::SocketDaemon(socket, options, std::vector<std::string>(), std::string(), 0));
    std::vector<std::string> left;
    {
      lazyroot::PinKeeper keeper(daemon, print_log_line, keeper_options);
      for (const std::string& c : containers) keeper.cleanup(c);
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      keeper.kept_unpins().wait_until_empty(wait.count() > 0 ? static_cast<int>(wait.count()) : 0);
      left = keeper.kept_unpins().ids();
    }  // stops the retry thread before anything is printed or exit() runs
    if (!left.empty()) {
      std::string ids;
      for (const std::string& id : left) ids += " " + id;
      char after[32];
      std::snprintf(after, sizeof after, "%g s", deadline_ms / 1000.0);
      fail(Error("unavailable", std::to_string(left.size()) + " unpins still kept after " + after + ":" + ids));
    }
    line("no unpin kept");
  } else {
    usage_error("unknown command " + command);
  }

  if (std::fwrite(output.data(), 1, output.size(), stdout) != output.size() || std::fflush(stdout) != 0) {
    fail(Error("internal", "cannot write to stdout"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run(args);
}

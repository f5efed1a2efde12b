// lazyroot-isolator-client: the daemon client library as a command, for
// operators and for the integration tests that drive the real daemon.
// Output is one simple line per result so that shell scripts can use it.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "daemon_client.hpp"
#include "ensure_daemon.hpp"

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
    "--socket defaults to /run/lazyroot/control.sock. --timeout bounds each\n"
    "request (default 5 s, 30 s for prepare); ensure-daemon's own --timeout\n"
    "bounds the whole start (default 30 s).\n"
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

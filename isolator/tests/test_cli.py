#!/usr/bin/env python3
"""Tests of lazyroot-isolator-client (and so of the client library) against
mock_daemon.py: every command, error answers, broken daemons, timeouts, and
ensure-daemon's detached start and lock.

Run by `make -C isolator check`, which sets LAZYROOT_CLIENT (the CLI) and
LAZYROOT_ENSURE_THREADS (tests/ensure_threads.cpp). Every subprocess has a
timeout and every daemon a test starts is killed by pid in tearDown.
"""

import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "mock_daemon.py")
CLIENT = os.environ.get("LAZYROOT_CLIENT", os.path.join(HERE, "..", "build", "lazyroot-isolator-client"))
ENSURE_THREADS = os.environ.get("LAZYROOT_ENSURE_THREADS", os.path.join(HERE, "..", "build", "ensure_threads"))
FQRN = "images.example.org"
LATEST = "a" * 40
ERROR_LINE = re.compile(r"^lazyroot-isolator-client: ([a-z_]+): (.+)\n$")


def expected_id(fqrn, path, root_hash):
    return "sha512-" + hashlib.sha512(f"{fqrn}\0{path}\0{root_hash}".encode()).hexdigest()


def alive(pid):
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def stat_fields(pid):
    """(ppid, session id) of `pid`, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_pid(pid):
    """Stops a daemon a test started (not necessarily our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not alive(pid), 5, f"pid {pid} to exit")
    except AssertionError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="lazyroot-isolator-test-")
        self.dir = self.tmp.name
        self.sock = os.path.join(self.dir, "control.sock")
        self.started_pids = []  # daemons started detached, killed in tearDown
        self.mock = None

    def tearDown(self):
        if self.mock is not None:
            self.mock.terminate()
            try:
                self.mock.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.mock.kill()
                self.mock.wait(timeout=5)
        for pid in self.started_pids:
            kill_pid(pid)
        self.tmp.cleanup()

    # -- helpers -------------------------------------------------------------

    def start_mock(self, *extra):
        """Runs the mock as our own child (the ensure-daemon tests start it
        detached instead) and waits until it accepts connections."""
        self.request_log = os.path.join(self.dir, "requests.jsonl")
        self.mock = subprocess.Popen(
            [sys.executable, MOCK, "--socket", self.sock, "--request-log", self.request_log,
             "--hang-seconds", "20", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.accepts, 10, "the mock daemon to listen")

    def stop_mock(self):
        """Stops the mock we started (SIGTERM: it removes its socket)."""
        self.mock.terminate()
        self.mock.wait(timeout=10)
        self.mock = None
        self.assertFalse(os.path.exists(self.sock))

    def accepts(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def run_client(self, *args, socket_path=None, timeout=20):
        cmd = [CLIENT, "--socket", socket_path or self.sock, *args]
        started = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        p.elapsed = time.monotonic() - started
        return p

    def ok(self, *args, **kw):
        p = self.run_client(*args, **kw)
        self.assertEqual(p.returncode, 0, f"{args}: stderr {p.stderr!r}")
        self.assertEqual(p.stderr, "")
        return p.stdout

    def fails(self, code, *args, message=None, **kw):
        p = self.run_client(*args, **kw)
        self.assertEqual(p.returncode, 1, f"{args}: stdout {p.stdout!r} stderr {p.stderr!r}")
        self.assertEqual(p.stdout, "")
        m = ERROR_LINE.match(p.stderr)
        self.assertIsNotNone(m, f"stderr is not one error line: {p.stderr!r}")
        self.assertEqual(m.group(1), code, p.stderr)
        if message is not None:
            self.assertIn(message, m.group(2))
        return p

    def prepare(self, path, *extra):
        fields = self.ok("prepare", FQRN, path, *extra).rstrip("\n").split(" ")
        self.assertEqual(len(fields), 4, fields)
        return fields

    def requests(self):
        with open(self.request_log) as f:
            return [json.loads(line) for line in f]


class CommandTest(ClientTest):
    def setUp(self):
        super().setUp()
        self.start_mock()

    def test_health(self):
        self.assertEqual(self.ok("health"), "ok images=0 pins=0 mounts=0\n")
        iid = self.prepare("/images/a")[0]
        self.prepare("/images/b")
        self.ok("pin", "c1", iid)
        self.assertEqual(self.ok("health"), "ok images=2 pins=1 mounts=1\n")

    def test_prepare_latest_tag_and_root_hash(self):
        iid, rootfs, root_hash, revision = self.prepare("/images/bookworm")
        self.assertEqual(iid, expected_id(FQRN, "/images/bookworm", LATEST))
        self.assertEqual(rootfs, f"/var/lib/lazyroot/mnt/{FQRN}@{LATEST}/images/bookworm")
        self.assertEqual((root_hash, revision), (LATEST, "7"))

        _, _, root_hash, revision = self.prepare("/images/bookworm", "--tag", "v1")
        self.assertEqual((root_hash, revision), ("b" * 40 + "-tagged", "3"))

        iid, _, root_hash, revision = self.prepare("/images/bookworm", "--root-hash=" + "c" * 40)
        self.assertEqual((iid, root_hash, revision), (expected_id(FQRN, "/images/bookworm", "c" * 40), "c" * 40, "0"))

        bodies = [r["body"] for r in self.requests()]
        self.assertEqual(json.loads(bodies[0]), {"fqrn": FQRN, "path": "/images/bookworm"})
        self.assertEqual(json.loads(bodies[1]), {"fqrn": FQRN, "path": "/images/bookworm", "tag": "v1"})

    def test_prepare_unicode_path_round_trips(self):
        # The mock answers with \u escapes (a surrogate pair for the whale);
        # the client must send UTF-8 and print UTF-8.
        path = "/images/caf\u00e9-\U0001F433"
        iid, rootfs, _, _ = self.prepare(path)
        self.assertEqual(iid, expected_id(FQRN, path, LATEST))
        self.assertTrue(rootfs.endswith(path), rootfs)
        self.assertEqual(json.loads(self.requests()[0]["body"])["path"], path)

    def test_prepare_errors(self):
        self.fails("not_found", "prepare", "other.example.org", "/x", message="repository 'other.example.org' is not configured")
        self.fails("invalid_argument", "prepare", FQRN, "relative", message="must start with '/'")
        self.fails("not_found", "prepare", FQRN, "/x", "--tag", "missing", message="no tag 'missing'")
        self.fails("invalid_argument", "prepare", FQRN, "/x", "--tag", "v1", "--root-hash", "ab", message="not both")
        self.fails("invalid_argument", "prepare", FQRN)
        self.fails("invalid_argument", "prepare", FQRN, "/x", "--bogus", "1")

    def test_pin_unpin(self):
        iid, rootfs, root_hash, _ = self.prepare("/images/a")
        self.assertEqual(self.ok("pin", "parent.child", iid), f"{root_hash} {rootfs}\n")
        self.assertEqual(self.ok("unpin", "parent.child"), "unpinned\n")
        self.assertEqual(self.ok("unpin", "parent.child"), "not pinned\n")
        self.fails("not_ours", "pin", "c1", "sha512-unknown", message="never made or served")
        other = self.prepare("/images/b")[0]
        self.ok("pin", "c1", iid)
        self.fails("already_exists", "pin", "c1", other)
        pin_request = [r for r in self.requests() if r["request_line"][1].endswith("/Pin")][0]
        self.assertEqual(json.loads(pin_request["body"]), {"container_id": "parent.child", "image_id": iid})

    def test_pin_by_name_and_labels(self):
        iid, rootfs, root_hash, _ = self.prepare("/images/a")
        name = FQRN + "/images/a"
        self.assertEqual(self.ok("pin", "c1", "--name", name, "--label", "os=linux", "--label=arch=amd64"),
                         f"{root_hash} {rootfs}\n")
        body = json.loads([r for r in self.requests() if r["request_line"][1].endswith("/Pin")][0]["body"])
        self.assertEqual(body, {"container_id": "c1", "appc_name": name,
                                "appc_labels": [{"key": "os", "value": "linux"}, {"key": "arch", "value": "amd64"}]})
        self.assertIn(f"{iid} {FQRN} /images/a {LATEST} c1", self.ok("list"))
        # An explicit version that resolves to the same image; a value with '='.
        self.ok("pin", "c2", "--name", name, "--label", "version=latest", "--label", "os=linux", "--label", "arch=a=b")
        self.fails("not_found", "pin", "c3", "--name", name, "--label", "version=v1", "--label", "os=linux",
                   "--label", "arch=amd64", message="not served on this agent")
        self.fails("not_ours", "pin", "c3", "--name", "other.example.org/x", "--label", "os=linux",
                   "--label", "arch=amd64", message="none of the daemon's repositories")
        self.fails("unavailable", "pin", "c3", "--name", "down.example.org/x", "--label", "os=linux",
                   "--label", "arch=amd64", message="no server")
        self.fails("invalid_argument", "pin", "c3", "--name", name, "--label", "os=linux", message="'arch'")
        for args in (["c3", "--label", "os=linux", iid], ["c3", "--name", name, "--label", "os"],
                     ["c3", "--name", name, "--label", "=linux"], ["c3", "--name", name, iid], ["c3"],
                     ["c3", "--name", name, "--bogus", "x"]):
            self.fails("invalid_argument", "pin", *args)
        self.fails("invalid_argument", "pin", "c3", "", message="names no image")

    def test_sync(self):
        iid = self.prepare("/images/a")[0]
        for cid in ("c1", "c2", "c3"):
            self.ok("pin", cid, iid)
        self.assertEqual(self.ok("sync", "c2", "unknown"), "c1\nc3\n")
        self.assertEqual(self.ok("sync", "c2"), "")
        self.assertEqual(self.ok("sync"), "c2\n")  # no ids: every pin goes
        sync_bodies = [json.loads(r["body"]) for r in self.requests() if r["request_line"][1].endswith("/SyncPins")]
        self.assertEqual(sync_bodies[-1], {"container_ids": []})

    def test_list(self):
        self.assertEqual(self.ok("list"), "")
        a = self.prepare("/images/a")[0]
        b = self.prepare("/images/b")[0]
        self.ok("pin", "c2", a)
        self.ok("pin", "c1", a)
        lines = sorted(self.ok("list").splitlines())
        expected = sorted([f"{a} {FQRN} /images/a {LATEST} c1,c2", f"{b} {FQRN} /images/b {LATEST} -"])
        self.assertEqual(lines, expected)

    def test_requests_are_well_formed(self):
        self.ok("health")
        self.ok("unpin", "x")
        reqs = self.requests()
        self.assertEqual([r["request_line"] for r in reqs],
                         [["POST", "/lazyroot.v1.Control/Health", "HTTP/1.1"],
                          ["POST", "/lazyroot.v1.Control/Unpin", "HTTP/1.1"]])
        for r in reqs:
            h = r["headers"]
            self.assertEqual(h["host"], "localhost")
            self.assertEqual(h["content-type"], "application/json")
            self.assertEqual(h["connection"], "close")
            self.assertEqual(int(h["content-length"]), len(r["body"].encode()))
        self.assertEqual(reqs[0]["body"], "{}")

    def test_broken_answers(self):
        p = self.fails("unavailable", "pin", "mock-close-mid-answer", "x", message="closed the connection after 20 of 200 body bytes")
        self.assertLess(p.elapsed, 5)
        self.fails("internal", "pin", "mock-garbage", "x", message="invalid JSON at byte 1")
        self.fails("internal", "pin", "mock-500-text", "x", message="the daemon answered HTTP 500: oops!")
        self.fails("internal", "pin", "mock-wrong-type", "x", message="rootfs must be a string, got a number")

    def test_daemon_that_never_answers_times_out(self):
        p = self.fails("unavailable", "--timeout", "1", "pin", "mock-hang", "x", message="no complete answer")
        self.assertGreaterEqual(p.elapsed, 0.9)
        self.assertLess(p.elapsed, 5)
        # The default for Pin is 5 s.
        p = self.fails("unavailable", "pin", "mock-hang", "x", message="within 5 s")
        self.assertGreaterEqual(p.elapsed, 4.9)
        self.assertLess(p.elapsed, 10)

    def test_usage_errors(self):
        for args in ([], ["bogus"], ["pin", "only-one"], ["unpin"], ["unpin", "a", "b"], ["health", "x"],
                     ["list", "x"], ["--timeout", "abc", "health"], ["--timeout", "0", "health"],
                     ["--socket"], ["--nope", "health"], ["ensure-daemon"], ["ensure-daemon", "--"],
                     ["ensure-daemon", "/bin/true"]):
            self.fails("invalid_argument", *args)
        p = subprocess.run([CLIENT, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("ensure-daemon", p.stdout)


class IsolatorPrepareTest(ClientTest):
    """prepare() as the module runs it: what the Pin names, and that only
    not_ours lets the launch go on unpinned."""

    def setUp(self):
        super().setUp()
        self.start_mock()
        self.iid, self.rootfs, self.root_hash, _ = self.prepare("/images/a")
        self.name = FQRN + "/images/a"

    def pin_bodies(self):
        return [json.loads(r["body"]) for r in self.requests() if r["request_line"][1].endswith("/Pin")]

    def test_by_name_and_labels(self):
        out = self.ok("isolator-prepare", "c1", "--name", self.name, "--label", "version=latest",
                      "--label", "os=linux", "--label", "arch=amd64")
        self.assertEqual(out, f"pinned {self.iid} {self.root_hash} {self.rootfs}\n")
        self.assertEqual(self.pin_bodies(), [{
            "container_id": "c1", "appc_name": self.name,
            "appc_labels": [{"key": "version", "value": "latest"}, {"key": "os", "value": "linux"},
                            {"key": "arch", "value": "amd64"}]}])
        self.assertIn(f" c1\n", self.ok("list"))

    def test_by_id_even_with_a_name(self):
        self.assertEqual(self.ok("isolator-prepare", "c2", "--id", self.iid, "--name", self.name,
                                 "--label", "os=linux"),
                         f"pinned {self.iid} {self.root_hash} {self.rootfs}\n")
        self.assertEqual(self.pin_bodies(), [{"container_id": "c2", "image_id": self.iid}])

    def test_not_ours_is_the_only_no_op(self):
        self.assertEqual(self.ok("isolator-prepare", "c3", "--id", "sha512-" + "0" * 128), "not ours\n")
        self.assertEqual(self.ok("isolator-prepare", "c4", "--id", "sha256-other-store"), "not ours\n")
        self.assertEqual(self.ok("isolator-prepare", "c5", "--name", "other.example.org/x", "--label", "os=linux",
                                 "--label", "arch=amd64"), "not ours\n")
        self.assertEqual(self.ok("list"), f"{self.iid} {FQRN} /images/a {LATEST} -\n")  # no pin taken
        # Everything else fails the launch, naming image, container, socket, code and reason.
        labels = ["--label", "version=v1", "--label", "os=linux", "--label", "arch=amd64"]
        self.fails("not_found", "isolator-prepare", "c6", "--name", self.name, *labels,
                   message=f"lazyroot: cannot pin image '{self.name}' with labels version=v1, os=linux, arch=amd64"
                           f" for container c6 (daemon socket {self.sock}): not_found: image {self.name} version v1"
                           " is not served on this agent")
        self.fails("unavailable", "isolator-prepare", "c7", "--name", "down.example.org/x", "--label", "os=linux",
                   "--label", "arch=amd64", message="for container c7 (daemon socket")
        self.fails("invalid_argument", "isolator-prepare", "c8", "--name", self.name,
                   message=f"cannot pin image '{self.name}' with no labels for container c8")
        self.fails("internal", "isolator-prepare", "mock-garbage", "--id", self.iid,
                   message=f"cannot pin image {self.iid} for container mock-garbage")
        absent = os.path.join(self.dir, "absent.sock")
        self.fails("unavailable", "isolator-prepare", "c9", "--id", self.iid, socket_path=absent,
                   message=f"cannot pin image {self.iid} for container c9 (daemon socket {absent}): unavailable:")

    def test_nothing_to_pin(self):
        self.assertEqual(self.ok("isolator-prepare", "c1", "--label", "os=linux"), "nothing to pin\n")
        self.assertEqual(self.pin_bodies(), [])


class UnpinReplayTest(ClientTest):
    """cleanup() as the module runs it: an unpin that fails is kept and
    replayed with backoff until the daemon takes it."""

    def replay(self, *args, deadline="20"):
        return subprocess.Popen([CLIENT, "--socket", self.sock, "--timeout", "2", "unpin-replay", "--deadline", deadline,
                                 "--retry", "0.1", "--max-retry", "0.4", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines_of(self, p):
        """A queue of `p`'s stdout lines, filled by a thread that ends at EOF."""
        q = queue.Queue()

        def pump():
            for line in p.stdout:
                q.put(line)
            q.put(None)

        threading.Thread(target=pump, daemon=True).start()
        return q

    def wait_line(self, q, needle, timeout, seen):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r} within {timeout} s; saw {seen!r}")

    def unpins(self):
        return [json.loads(r["body"])["container_id"] for r in self.requests()
                if r["request_line"][1].endswith("/Unpin")]

    def test_unpin_kept_while_the_daemon_is_away_arrives_when_it_is_back(self):
        state = os.path.join(self.dir, "state.json")
        self.start_mock("--state-file", state)
        iid = self.prepare("/images/a")[0]
        self.ok("pin", "c1", iid)
        self.ok("pin", "c2", iid)
        self.stop_mock()

        p = self.replay("c1", "c2")
        try:
            q, seen = self.lines_of(p), []
            self.assertRegex(self.wait_line(q, "c1", 10, seen), r"^WARNING lazyroot: cannot unpin container c1: "
                             r"unavailable: .*; kept, and retried")
            self.wait_line(q, "cannot unpin container c2", 10, seen)
            # Retries fail while the daemon is away; the command goes on.
            self.wait_line(q, "failed again", 10, seen)
            self.assertIsNone(p.poll())

            self.start_mock("--state-file", state)  # the same pins, as the real daemon keeps them
            back = time.monotonic()
            p.wait(timeout=15)
            # Retries are at most --max-retry (0.4 s) apart: the unpins arrive soon.
            self.assertLess(time.monotonic() - back, 3)
            while (line := q.get(timeout=10)) is not None:
                seen.append(line)
            err = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        self.assertEqual((p.returncode, err), (0, ""))
        rest = "".join(seen)
        self.assertIn("INFO lazyroot: replayed the kept unpin of container c1: its pin is released", rest)
        self.assertIn("INFO lazyroot: replayed the kept unpin of container c2: its pin is released", rest)
        self.assertTrue(rest.endswith("no unpin kept\n"), rest)
        self.assertEqual(sorted(self.unpins()), ["c1", "c2"])  # the restarted daemon's log: each once
        self.assertEqual(self.ok("list"), f"{iid} {FQRN} /images/a {LATEST} -\n")

    def test_refused_unpin_is_dropped_and_a_500_is_replayed(self):
        self.start_mock()
        iid = self.prepare("/images/a")[0]
        self.ok("pin", "mock-flaky-1", iid)
        p = self.replay("mock-flaky-1", "bad/id")
        out, err = p.communicate(timeout=30)
        self.assertEqual((p.returncode, err), (0, ""), out)
        self.assertIn("WARNING lazyroot: cannot unpin container mock-flaky-1: internal: state database is locked", out)
        self.assertIn("ERROR lazyroot: cannot unpin container bad/id: invalid_argument:", out)
        self.assertIn("not retried", out)
        self.assertIn("INFO lazyroot: replayed the kept unpin of container mock-flaky-1: its pin is released", out)
        # The replay before bad/id's own call took mock-flaky-1; bad/id was sent once, never again.
        self.assertEqual(self.unpins(), ["mock-flaky-1", "mock-flaky-1", "bad/id"])
        self.assertEqual(self.ok("list"), f"{iid} {FQRN} /images/a {LATEST} -\n")

    def test_deadline(self):
        p = self.replay("c1", deadline="1")
        started = time.monotonic()
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(err, "lazyroot-isolator-client: unavailable: 1 unpins still kept after 1 s: c1\n")
        self.assertIn("WARNING lazyroot: cannot unpin container c1", out)
        self.assertIn("failed again at container c1", out)

    def test_usage(self):
        for args in (["unpin-replay"], ["unpin-replay", "--retry", "x", "c1"], ["unpin-replay", "--bogus", "c1"],
                     ["isolator-prepare"], ["isolator-prepare", "c1", "--label", "novalue"],
                     ["isolator-prepare", "c1", "c2"]):
            self.fails("invalid_argument", *args)


class NoDaemonTest(ClientTest):
    def test_missing_socket(self):
        p = self.fails("unavailable", "health", message="No such file or directory")
        self.assertLess(p.elapsed, 2)

    def test_stale_socket(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock)
        s.close()  # the file stays, nobody listens
        self.fails("unavailable", "health", message="Connection refused")

    def test_socket_path_too_long(self):
        self.fails("invalid_argument", "health", socket_path="/tmp/" + "x" * 200)


class EnsureDaemonTest(ClientTest):
    def mock_command(self, *extra):
        self.pidfile = os.path.join(self.dir, "daemon.pid")
        self.starts = os.path.join(self.dir, "starts")
        return ["--", sys.executable, MOCK, "--socket", self.sock, "--pidfile", self.pidfile,
                "--starts-file", self.starts, *extra]

    def start_count(self):
        try:
            with open(self.starts) as f:
                return len(f.read().splitlines())
        except FileNotFoundError:
            return 0

    def daemon_pid(self):
        with open(self.pidfile) as f:
            pid = int(f.read())
        self.started_pids.append(pid)
        return pid

    def test_starts_detached_then_finds_it_running(self):
        log = os.path.join(self.dir, "daemon.log")
        cli = subprocess.Popen([CLIENT, "--socket", self.sock, "ensure-daemon", "--timeout", "20", "--log", log,
                                *self.mock_command()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = cli.communicate(timeout=30)
        self.assertEqual((cli.returncode, out, err), (0, "started\n", ""))
        pid = self.daemon_pid()

        # The caller has exited; the daemon runs on, is not the caller's (nor
        # our) child, and left the caller's session.
        self.assertTrue(alive(pid))
        ppid, sid = stat_fields(pid)
        self.assertNotEqual(ppid, cli.pid)
        self.assertNotEqual(ppid, os.getpid())
        self.assertNotEqual(sid, os.getsid(0))
        self.assertNotEqual(sid, cli.pid)
        # stdout/stderr went to the log; other descriptors were closed.
        with open(log) as f:
            self.assertIn("listening on", f.read())
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/0"), "/dev/null")
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/1"), log)
        self.assertNotIn(self.sock + ".lock", [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds
                                               if os.path.exists(f"/proc/{pid}/fd/{fd}")])
        self.assertTrue(os.path.exists(self.sock + ".lock"))

        self.assertEqual(self.ok("health").split(" ")[0], "ok")
        self.assertEqual(self.ok("ensure-daemon", *self.mock_command()), "running\n")
        self.assertEqual(self.start_count(), 1)

    def test_daemon_is_not_the_callers_child_while_the_caller_lives(self):
        # After the caller exits, any orphan is reparented; the double fork
        # must make the daemon a non-child while the caller still runs (a
        # Mesos agent runs on), and leave no zombie behind in the caller.
        caller = subprocess.Popen([ENSURE_THREADS, "--hold", self.sock, "1", "20000", *self.mock_command()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.assertEqual(caller.stdout.readline(), "started\n")
            pid = self.daemon_pid()
            self.assertTrue(alive(caller.pid))
            ppid, sid = stat_fields(pid)
            self.assertNotEqual(ppid, caller.pid)
            self.assertNotEqual(sid, os.getsid(caller.pid))
            children = ""
            for task in os.listdir(f"/proc/{caller.pid}/task"):
                with open(f"/proc/{caller.pid}/task/{task}/children") as f:
                    children += f.read()
            self.assertEqual(children.split(), [], "the caller kept a child (a zombie first fork?)")
        finally:
            caller.stdin.close()
            caller.wait(timeout=10)
            caller.stdout.close()
            caller.stderr.close()
        self.assertEqual(caller.returncode, 0)

    def test_concurrent_callers_start_one_daemon(self):
        # The mock waits 1 s before listening: without the lock, every caller
        # would find no socket and start its own daemon.
        command = self.mock_command("--startup-delay", "1")
        callers = [subprocess.Popen([CLIENT, "--socket", self.sock, "ensure-daemon", "--timeout", "20", *command],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [c.communicate(timeout=30) for c in callers]
        self.daemon_pid()
        self.assertEqual([c.returncode for c in callers], [0] * 4, results)
        self.assertEqual(sorted(out for out, _ in results), ["running\n"] * 3 + ["started\n"])
        self.assertEqual(self.start_count(), 1)

    def test_concurrent_threads_start_one_daemon(self):
        command = self.mock_command("--startup-delay", "1")
        p = subprocess.run([ENSURE_THREADS, self.sock, "4", "20000", *command], capture_output=True, text=True,
                           timeout=30)
        self.daemon_pid()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(sorted(p.stdout.splitlines()), ["running"] * 3 + ["started"])
        self.assertEqual(self.start_count(), 1)

    def test_replaces_stale_socket(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock)
        s.close()
        self.assertEqual(self.ok("ensure-daemon", "--timeout", "20", *self.mock_command()), "started\n")
        self.daemon_pid()

    def test_creates_socket_directory(self):
        self.sock = os.path.join(self.dir, "run", "lazyroot", "control.sock")
        self.assertEqual(self.ok("ensure-daemon", "--timeout", "20", *self.mock_command()), "started\n")
        self.daemon_pid()
        self.assertTrue(os.path.exists(self.sock + ".lock"))

    def test_daemon_that_exits_is_reported_fast(self):
        log = os.path.join(self.dir, "false.log")
        p = self.fails("unavailable", "ensure-daemon", "--timeout", "20", "--log", log, "--", "/bin/false",
                       message="exited before answering")
        self.assertIn("see " + log, p.stderr)
        self.assertLess(p.elapsed, 10)

    def test_daemon_that_never_listens_times_out(self):
        pidfile = os.path.join(self.dir, "sleeper.pid")
        p = self.fails("unavailable", "ensure-daemon", "--timeout", "1", "--", "/bin/sh", "-c",
                       f"echo $$ > {pidfile}; exec /bin/sleep 30", message="did not answer Health within 1 s")
        self.assertLess(p.elapsed, 5)
        # The silent "daemon" is left running (it may just be slow); stop it.
        with open(pidfile) as f:
            pid = int(f.read())
        self.started_pids.append(pid)
        self.assertTrue(alive(pid))

    def test_bad_command_is_refused_before_forking(self):
        self.fails("invalid_argument", "ensure-daemon", "--", "/nonexistent/daemon", message="not an executable file")
        self.fails("invalid_argument", "ensure-daemon", "--", "no-such-daemon-anywhere", message="not on PATH")
        self.fails("invalid_argument", "ensure-daemon", "--log", "/nonexistent/dir/log", "--", "/bin/true",
                   message="cannot open the daemon log")

    def test_stuck_daemon_is_waited_for_not_duplicated(self):
        # A daemon that accepts connections but never answers Health exists:
        # ensure-daemon must not start a second one.
        self.start_mock("--hang-health")
        p = self.fails("unavailable", "ensure-daemon", "--timeout", "1.5", *self.mock_command(),
                       message="did not answer Health")
        self.assertLess(p.elapsed, 6)
        self.assertEqual(self.start_count(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

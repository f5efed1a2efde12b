#!/usr/bin/env python3
"""A stand-in for the lazyroot daemon's control API, for the client's tests.

HTTP/1.1 on a Unix socket, POST /lazyroot.v1.Control/<Method>, JSON bodies
(proto/lazyroot/v1/control.proto), state in memory. Python 3 standard
library only.

Pin names its image by id (an id it never made: code "not_ours") or by appc
name and labels, resolved as the daemon does: a name outside its
repositories is "not_ours"; `version` defaults to "latest" (or a tag, or a
root hash); `os` and `arch` are required; an image never prepared is
"not_found" (not served here); a name in DOWN_FQRN is "unavailable" (its
servers are down). SyncPins keeps operator pins. Unpin refuses a malformed
container id (400), and answers 500 to the first Unpin of a container named
"mock-flaky-...". With --state-file the images and pins outlive a restart,
as the real daemon's do.

Besides the normal answers it misbehaves on request, so the tests can check
the client's handling of broken daemons:
  Pin with container_id "mock-close-mid-answer"  promise 200 bytes, send 20, close
  Pin with container_id "mock-hang"              never answer (until --hang-seconds)
  Pin with container_id "mock-garbage"           200 with a body that is not JSON
  Pin with container_id "mock-500-text"          500 with a plain-text body
  Pin with container_id "mock-wrong-type"        200 with "rootfs": 42
It also checks what the client sends (method, path, Host, Content-Type,
Content-Length, Connection: close, a JSON object body) and answers 400 when
something is off; --request-log records every request as one JSON line.

Other options: --startup-delay (sleep before listening, to widen the window
in which concurrent starters could race), --starts-file (append our pid on
start: tests count daemon starts), --pidfile, --hang-health (accept but never
answer Health: a daemon that exists but is stuck).
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time

STATE_LOCK = threading.Lock()
IMAGES = {}  # id -> image dict
PINS = {}  # container_id -> image id
OPERATOR_PINS = set()  # container ids whose pin an operator made
FLAKY_SEEN = set()  # "mock-flaky-..." containers whose first Unpin failed
OPTIONS = None

KNOWN_FQRN = "images.example.org"
DOWN_FQRN = "down.example.org"  # configured, but its servers do not answer
CONTAINER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,1024}$")
LATEST_HASH = "a" * 40
TAG_HASHES = {"v1": "b" * 40 + "-tagged"}


def image_id(fqrn, path, root_hash):
    digest = hashlib.sha512(f"{fqrn}\0{path}\0{root_hash}".encode()).hexdigest()
    return "sha512-" + digest


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def image_view(image):
    view = dict(image)
    view["pinned_by"] = sorted(c for c, i in PINS.items() if i == image["id"])
    return view


def prepare_image(req):
    fqrn, path = req.get("fqrn", ""), req.get("path", "")
    root_hash, tag = req.get("root_hash", ""), req.get("tag", "")
    if fqrn != KNOWN_FQRN:
        raise ApiError(404, "not_found", f"repository {fqrn!r} is not configured")
    if not path.startswith("/"):
        raise ApiError(400, "invalid_argument", f"path {path!r} must start with '/'")
    if root_hash and tag:
        raise ApiError(400, "invalid_argument", "root_hash and tag are exclusive")
    revision = 0
    if tag:
        if tag not in TAG_HASHES:
            raise ApiError(404, "not_found", f"no tag {tag!r} in {fqrn}")
        root_hash, revision = TAG_HASHES[tag], 3
    elif not root_hash:
        root_hash, revision = LATEST_HASH, 7
    iid = image_id(fqrn, path, root_hash)
    image = {
        "id": iid,
        "fqrn": fqrn,
        "path": path,
        "root_hash": root_hash,
        "revision": revision,
        "rootfs": f"/var/lib/lazyroot/mnt/{fqrn}@{root_hash}{path}",
        "appc_name": fqrn + path,
        "appc_dir": f"/var/lib/lazyroot/appc/images/{iid}",
        "pinned_by": [],
    }
    with STATE_LOCK:
        IMAGES[iid] = image
        save_state()
        return image_view(image)


def save_state():
    """Writes images and pins to --state-file (callers hold STATE_LOCK)."""
    if not OPTIONS.state_file:
        return
    tmp = OPTIONS.state_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"images": IMAGES, "pins": PINS, "operator_pins": sorted(OPERATOR_PINS)}, f)
    os.rename(tmp, OPTIONS.state_file)


def load_state():
    if OPTIONS.state_file and os.path.exists(OPTIONS.state_file):
        with open(OPTIONS.state_file) as f:
            state = json.load(f)
        IMAGES.update(state["images"])
        PINS.update(state["pins"])
        OPERATOR_PINS.update(state["operator_pins"])


def resolve_name(name, labels):
    """The image id an appc name and labels stand for, as the daemon resolves them."""
    if not isinstance(labels, list) or not all(
            isinstance(l, dict) and isinstance(l.get("key"), str) and isinstance(l.get("value", ""), str)
            for l in labels):
        raise ApiError(400, "invalid_argument", "appc_labels must be a list of {key, value} objects")
    fqrn, slash, path = name.partition("/")
    if fqrn not in (KNOWN_FQRN, DOWN_FQRN) or not slash:
        raise ApiError(404, "not_ours", f"{name!r} is none of the daemon's repositories")
    given = {l["key"]: l.get("value", "") for l in labels}
    for required in ("os", "arch"):
        if required not in given:
            raise ApiError(400, "invalid_argument", f"the {required!r} label is required")
    if fqrn == DOWN_FQRN:
        raise ApiError(503, "unavailable", f"no server of {fqrn} answers")
    version = given.get("version", "latest")
    root_hash = LATEST_HASH if version == "latest" else TAG_HASHES.get(version, version)
    iid = image_id(fqrn, "/" + path, root_hash)
    if iid not in IMAGES:
        raise ApiError(404, "not_found", f"image {name} version {version} is not served on this agent")
    return iid


def pin(req):
    cid, iid = req.get("container_id", ""), req.get("image_id", "")
    name, labels = req.get("appc_name", ""), req.get("appc_labels", [])
    if not cid:
        raise ApiError(400, "invalid_argument", "container_id is empty")
    if bool(iid) == bool(name):
        raise ApiError(400, "invalid_argument", "give image_id or appc_name, exactly one")
    with STATE_LOCK:
        if name:
            iid = resolve_name(name, labels)
        elif iid not in IMAGES:
            raise ApiError(404, "not_ours", f"image {iid!r} was never made or served by this daemon")
        if PINS.get(cid, iid) != iid:
            raise ApiError(409, "already_exists", f"container {cid} pins another image")
        PINS[cid] = iid
        operator = bool(req.get("operator_pin", False)) or cid in OPERATOR_PINS
        if operator:
            OPERATOR_PINS.add(cid)
        save_state()
        image = IMAGES[iid]
        return {"container_id": cid, "image_id": iid, "root_hash": image["root_hash"],
                "rootfs": image["rootfs"], "operator_pin": operator}


def unpin(req):
    cid = req.get("container_id", "")
    if not isinstance(cid, str) or not CONTAINER_ID.match(cid):
        raise ApiError(400, "invalid_argument", f"container_id {cid!r} is not a container id")
    with STATE_LOCK:
        if cid.startswith("mock-flaky-") and cid not in FLAKY_SEEN:
            FLAKY_SEEN.add(cid)
            raise ApiError(500, "internal", f"state database is locked (unpin of {cid})")
        OPERATOR_PINS.discard(cid)
        was_pinned = PINS.pop(cid, None) is not None
        save_state()
        return {"was_pinned": was_pinned}


def sync_pins(req):
    with STATE_LOCK:
        keep = set(req.get("container_ids", [])) | OPERATOR_PINS
        removed = sorted(c for c in PINS if c not in keep)
        for c in removed:
            del PINS[c]
        save_state()
    return {"removed": removed}


def list_images(_req):
    with STATE_LOCK:
        return {
            "images": [image_view(i) for i in sorted(IMAGES.values(), key=lambda i: i["id"])],
            "pins": [{"container_id": c, "image_id": i, "root_hash": IMAGES[i]["root_hash"],
                      "rootfs": IMAGES[i]["rootfs"], "operator_pin": c in OPERATOR_PINS}
                     for c, i in sorted(PINS.items())],
        }


def health(_req):
    with STATE_LOCK:
        return {"status": "ok", "version": "mock-1", "images": len(IMAGES), "pins": len(PINS),
                "mounts": len({(i["fqrn"], i["root_hash"]) for i in IMAGES.values()}),
                "pid": os.getpid(),
                # Fields the client does not know must be ignored.
                "future_field": {"nested": [1, {"deep": None}], "text": "x"}}


METHODS = {
    "PrepareImage": prepare_image,
    "Pin": pin,
    "Unpin": unpin,
    "SyncPins": sync_pins,
    "ListImages": list_images,
    "Health": health,
}

PREFIX = "/lazyroot.v1.Control/"


class Handler(socketserver.StreamRequestHandler):
    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def answer(self, status, obj, chunked=False):
        body = json.dumps(obj).encode()  # ensure_ascii: non-ASCII as \u escapes
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Status")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        if chunked:
            # Uneven chunks with an extension, then a trailer: the full grammar.
            out = (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
            pieces = [body[:7], body[7:8], body[8:]]
            for i, piece in enumerate(p for p in pieces if p):
                ext = ";mock=1" if i == 0 else ""
                out += f"{len(piece):X}{ext}\r\n".encode() + piece + b"\r\n"
            out += b"0\r\nX-Mock-Trailer: yes\r\n\r\n"
            self.send(out)
        else:
            self.send((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)

    def error(self, status, code, message):
        self.answer(status, {"error": message, "code": code})

    def read_request(self):
        line = self.rfile.readline(8192)
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        headers = {}
        while True:
            h = self.rfile.readline(8192).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        return parts, headers, body

    def handle(self):
        req = self.read_request()
        if req is None:
            return
        parts, headers, body = req
        if OPTIONS.request_log:
            with open(OPTIONS.request_log, "a") as f:
                f.write(json.dumps({"request_line": parts, "headers": headers,
                                    "body": body.decode("utf-8", "replace")}) + "\n")
        problems = []
        if len(parts) != 3 or parts[0] != "POST" or parts[2] != "HTTP/1.1":
            problems.append(f"request line {' '.join(parts)!r} is not 'POST <path> HTTP/1.1'")
        if headers.get("host") != "localhost":
            problems.append("Host must be localhost")
        if headers.get("content-type") != "application/json":
            problems.append("Content-Type must be application/json")
        if headers.get("connection", "").lower() != "close":
            problems.append("Connection must be close")
        if "content-length" not in headers or len(body) != int(headers["content-length"]):
            problems.append("Content-Length missing or wrong")
        try:
            request = json.loads(body.decode("utf-8"))
            if not isinstance(request, dict):
                problems.append("body is not a JSON object")
        except (UnicodeDecodeError, ValueError) as e:
            problems.append(f"body is not JSON: {e}")
            request = {}
        if problems:
            return self.error(400, "invalid_argument", "; ".join(problems))

        path = parts[1]
        method = path[len(PREFIX):] if path.startswith(PREFIX) else None
        if method not in METHODS:
            return self.error(404, "not_found", f"no route {path}")
        if method == "Health" and OPTIONS.hang_health:
            time.sleep(OPTIONS.hang_seconds)
            return
        if method == "Pin" and self.misbehave(request.get("container_id", "")):
            return
        try:
            result = METHODS[method](request)
        except ApiError as e:
            return self.error(e.status, e.code, e.message)
        self.answer(200, result, chunked=(method == "ListImages"))

    def misbehave(self, cid):
        if cid == "mock-close-mid-answer":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b'{"container_id": "mo')
            return True
        if cid == "mock-hang":
            time.sleep(OPTIONS.hang_seconds)
            return True
        if cid == "mock-garbage":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{bad}")
            return True
        if cid == "mock-500-text":
            self.send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\n\r\noops!\n")
            return True
        if cid == "mock-wrong-type":
            self.answer(200, {"container_id": cid, "rootfs": 42})
            return True
        return False


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    global OPTIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--pidfile")
    parser.add_argument("--starts-file")
    parser.add_argument("--request-log")
    parser.add_argument("--state-file")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--hang-health", action="store_true")
    OPTIONS = parser.parse_args()

    if OPTIONS.starts_file:
        with open(OPTIONS.starts_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(OPTIONS.startup_delay)
    load_state()

    # Like a real daemon: a stale socket file (nobody listening) is replaced.
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(OPTIONS.socket)
        probe.close()
        print(f"mock_daemon: a daemon already listens on {OPTIONS.socket}", file=sys.stderr)
        return 1
    except FileNotFoundError:
        pass
    except ConnectionRefusedError:
        os.unlink(OPTIONS.socket)

    server = Server(OPTIONS.socket, Handler)

    def stop(_signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if OPTIONS.pidfile:
        tmp = OPTIONS.pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(tmp, OPTIONS.pidfile)
    print(f"mock_daemon: listening on {OPTIONS.socket} as pid {os.getpid()}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        try:
            os.unlink(OPTIONS.socket)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drives the module (harness.cpp) against tests/mock_daemon.py, which the
module itself starts detached: recover syncs, prepare pins by name and by
id, not_ours is a no-op, not_found fails the launch, a Docker image or none
is left alone, cleanup unpins only what may hold a pin, an unpin made while
the daemon is away is kept and arrives once it is back, destroy stops the
retry thread. Run by run.sh; usage: drive.py HARNESS."""
import json, os, signal, subprocess, sys, tempfile, time
M = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLIENT = M + "/build/lazyroot-isolator-client"
MOCK = M + "/tests/mock_daemon.py"
d = tempfile.mkdtemp(prefix="lazyroot-module-")
S, F, L, P = (os.path.join(d, n) for n in ("control.sock", "state.json", "requests.jsonl", "daemon.pid"))
cmd = [sys.executable, MOCK, "--socket", S, "--state-file", F, "--request-log", L, "--pidfile", P]
h = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=open(os.path.join(d, "agent.log"), "w"), text=True, env=dict(os.environ, GLOG_logtostderr="1", GLOG_v="1"))
def do(line):
    h.stdin.write(line + "\n"); h.stdin.flush()
    out = h.stdout.readline().strip()
    print(f"> {line}\n  {out}")
    return out
def cli(*a):
    return subprocess.run([CLIENT, "--socket", S, *a], capture_output=True, text=True, timeout=30).stdout.strip()
def reqs(method):
    return [json.loads(r["body"]) for r in map(json.loads, open(L)) if r["request_line"][1].endswith("/" + method)]
def pid():
    return int(open(P).read())
try:
    assert do("create socket=" + S + " daemon_command=" + "+".join(cmd) + " timeout_secs=5") == "created"
    assert do("create bogus=1") == "refused"
    assert do("create socket=" + S + " daemon_command=" + "+".join(cmd) + " timeout_secs=5") == "created"
    assert do("recover r1 orphan:o1 r2.nested") == "ready"
    print("  sync:", reqs("SyncPins"))
    assert sorted(reqs("SyncPins")[0]["container_ids"]) == ["o1", "r1", "r2.nested"]
    iid = cli("prepare", "images.example.org", "/images/a").split()[0]
    assert do("prepare c1 name=images.example.org/images/a label=os=linux label=arch=amd64") == "ready none"
    assert do(f"prepare parent.child id={iid} name=images.example.org/images/a") == "ready none"
    assert do("prepare c2 id=sha512-" + "0" * 128 + " name=other") == "ready none"
    r = do("prepare c3 name=images.example.org/images/a label=version=v1 label=os=linux label=arch=amd64")
    assert r.startswith("failed lazyroot: cannot pin image 'images.example.org/images/a' with labels version=v1, os=linux, arch=amd64 for container c3 (daemon socket " + S + "): not_found:"), r
    assert do("prepare c4 docker") == "ready none"
    assert do("prepare c5 none") == "ready none"
    print("  pins:", reqs("Pin"))
    assert [b["container_id"] for b in reqs("Pin")] == ["c1", "parent.child", "c2", "c3"]
    assert reqs("Pin")[0] == {"container_id": "c1", "appc_name": "images.example.org/images/a", "appc_labels": [{"key": "os", "value": "linux"}, {"key": "arch", "value": "amd64"}]}
    assert reqs("Pin")[1] == {"container_id": "parent.child", "image_id": iid}
    print("  list:", cli("list"))
    assert cli("list").endswith("c1,parent.child")
    assert do("cleanup never-seen") == "ready"
    assert do("cleanup c2") == "ready"  # not ours: no call
    assert reqs("Unpin") == []
    # The daemon goes away; cleanup keeps the unpin.
    os.kill(pid(), signal.SIGTERM)
    for _ in range(500):
        if not os.path.exists(S): break
        time.sleep(0.01)
    assert do("cleanup c1") == "ready"
    time.sleep(1.5)  # a background retry or two fails
    out = cli("ensure-daemon", "--", *cmd)
    print("  restarted:", out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "c1" not in [b["container_id"] for b in reqs("Unpin")]:
        time.sleep(0.1)
    print("  unpins:", reqs("Unpin"), "after restart")
    assert [b["container_id"] for b in reqs("Unpin")] == ["c1"]
    assert cli("list").endswith(" parent.child"), cli("list")
    assert do("cleanup parent.child") == "ready"
    assert do("cleanup r2.nested") == "ready"   # recovered: unpinned (it had no pin)
    assert [b["container_id"] for b in reqs("Unpin")] == ["c1", "parent.child", "r2.nested"]
    assert do("destroy") == "destroyed"
    h.stdin.close(); h.wait(timeout=10)
    print("ALL OK; the agent's log:")
finally:
    if h.poll() is None: h.kill()
    try: os.kill(pid(), signal.SIGTERM)
    except Exception: pass
    print(open(os.path.join(d, "agent.log")).read())

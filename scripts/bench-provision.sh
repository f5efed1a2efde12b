#!/usr/bin/env bash
# Launching tasks from an image: lazyroot's provisioner against pulling the image, over the
# shaped link of bench-lazy.sh (tc htb at RATE on the servers' ports, delay-relay.py for the
# round trip). All in one run, each from a cold cache with the page cache dropped:
#   - baseline: `curl | tar -xz` of the bookworm image, then runc runs `sh -c true` in it;
#   - lazyroot: `lazyroot image prepare` through the daemon (it mounts the image lazily and
#     writes its appc store entry), then runc runs the same task with the image's rootfs as
#     a read-only root, as Mesos's bind backend gives it;
#   - a version switch: the same path published again with python3 added (tag v2), prepared
#     while v1 stays mounted, and `python3 -c 'print(1)'` run in it: what v2 cost on top;
#   - the daemon's peak resident memory.
# total = fetch + task; writing the OCI bundle (runc spec) between them is left out of both.
# Needs the trees scripts/bookworm-trees.sh makes (in BENCH_DIR; made when missing).
# Usage: bash scripts/bench-provision.sh
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-provision: run as root (FUSE, runc, tc)" >&2; exit 1; }
bash scripts/setup.sh curl attr iproute2 python3 runc
cargo build --release --locked -q --bin lazyroot
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lazyroot

BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
RATE=${RATE:-100mbit}
DELAY_MS=${DELAY_MS:-10}
PORT_BASE=${PORT_BASE:-28650} # origin, relay, tarball origin, tarball relay
port_origin=$PORT_BASE port_relay=$((PORT_BASE + 1))
port_tar_origin=$((PORT_BASE + 2)) port_tar_relay=$((PORT_BASE + 3))
eval "$(BENCH_DIR=$BENCH_DIR bash scripts/bookworm-trees.sh)"
deb=$LAZYROOT_BOOKWORM py=$LAZYROOT_BOOKWORM_PYTHON
fqrn=provision.bench.lazyroot
log() { echo "bench-provision: $*" >&2; }
die() { log "$*"; exit 1; }

run=$BENCH_DIR/provision-run-$$
pids=() daemon="" shaped=0
cleanup() {
  set +e
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon"
    for _ in $(seq 100); do [ -e "/proc/$daemon" ] || break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [ "$shaped" = 1 ] && bash scripts/shape-lo.sh down
  grep -o " $run[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run/www"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
wait_for() { # FILE PATTERN: bounded wait for a line
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "no '$2' in $1"
}
# bundle DIR ROOTFS READONLY ARGS...: an OCI bundle running ARGS in ROOTFS.
bundle() {
  mkdir -p "$1"
  (cd "$1" && runc spec)
  python3 - "$1/config.json" "$2" "$3" "${@:4}" <<'PY'
import json, sys
path, root, ro, args = sys.argv[1], sys.argv[2], sys.argv[3] == "ro", sys.argv[4:]
c = json.load(open(path))
c["root"] = {"path": root, "readonly": ro}
c["process"]["terminal"] = False
c["process"]["args"] = args
json.dump(c, open(path, "w"))
PY
}
runc_run() { timeout 120 runc --root "$run/runc" run --bundle "$1" "bench-$$-$2" >/dev/null; }
rx_kib() { getfattr --absolute-names --only-values -n user.rx "$1"; }

log "publishing v1 (bookworm) and v2 (bookworm + python3) at /images/app"
"$bin" mkfs "$fqrn" --repo "$run/repo" --keys "$run/keys" >/dev/null
"$bin" publish "$deb" --repo "$run/repo" --keys "$run/keys" --path /images/app \
  --auto-catalogs 100,1000 --tag v1 >/dev/null
"$bin" publish "$py" --repo "$run/repo" --keys "$run/keys" --path /images/app \
  --auto-catalogs 100,1000 --tag v2 >/dev/null
tar -C "$deb" -czf "$run/www/app.tar.gz" .
tar_mb=$(du -m "$run/www/app.tar.gz" | cut -f1)

log "serving through the shaped link ($RATE, +$DELAY_MS ms each way)"
"$bin" serve --listen "127.0.0.1:$port_origin" --repo "$run/repo" >"$run/serve.out" 2>&1 &
pids+=($!)
wait_for "$run/serve.out" '^serving'
python3 -m http.server "$port_tar_origin" --bind 127.0.0.1 --directory "$run/www" >"$run/http.out" 2>&1 &
pids+=($!)
for pair in "$port_relay:$port_origin" "$port_tar_relay:$port_tar_origin"; do
  python3 scripts/delay-relay.py "${pair%:*}" "${pair#*:}" --delay-ms "$DELAY_MS" >"$run/relay-${pair%:*}.out" 2>&1 &
  pids+=($!)
  wait_for "$run/relay-${pair%:*}.out" '^relay'
done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port_tar_origin/" && break; sleep 0.1; done
bash scripts/shape-lo.sh up "$RATE" "$port_origin" "$port_tar_origin"
shaped=1

log "baseline: pull (curl | tar -xz), then runc runs sh -c true"
mkdir -p "$run/untar"
drop_caches
t0=$EPOCHREALTIME
curl -sf "http://127.0.0.1:$port_tar_relay/app.tar.gz" | tar -xzf - -C "$run/untar"
pull_s=$(since "$t0")
bundle "$run/b-pulled" "$run/untar" ro /bin/sh -c true
t1=$EPOCHREALTIME
runc_run "$run/b-pulled" pulled
base_run_s=$(since "$t1")
base_s=$(awk -v a="$pull_s" -v b="$base_run_s" 'BEGIN { printf "%.3f", a + b }')
rm -rf "$run/untar"

log "lazyroot: daemon, prepare v1, runc runs sh -c true"
cat >"$run/provisioner.json" <<EOF
{
  "repositories": {"$fqrn": {"servers": ["http://127.0.0.1:$port_relay/cvmfs/@fqrn@"],
                             "keys": ["$run/keys/$fqrn.pub"]}},
  "cache": "$run/cache", "mount_root": "$run/images", "appc_store_dir": "$run/appc",
  "state": "$run/state.sqlite", "control_socket": "$run/control.sock", "csi_socket": null
}
EOF
"$bin" provisioner --config "$run/provisioner.json" >"$run/daemon.out" 2>&1 &
daemon=$!
wait_for "$run/daemon.out" '^provisioner ready'
drop_caches
t0=$EPOCHREALTIME
"$bin" image prepare "$fqrn" /images/app --tag v1 --json --socket "$run/control.sock" >"$run/v1.json"
prep1_s=$(since "$t0")
rootfs1=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["appc_dir"])' "$run/v1.json")/rootfs
bundle "$run/b-v1" "$(readlink -f "$rootfs1")" ro /bin/sh -c true
t1=$EPOCHREALTIME
runc_run "$run/b-v1" v1
run1_s=$(since "$t1")
lazy_s=$(awk -v a="$prep1_s" -v b="$run1_s" 'BEGIN { printf "%.3f", a + b }')
kib1=$(rx_kib "$rootfs1")

log "version switch: prepare v2 while v1 stays mounted, run python3 in it"
t0=$EPOCHREALTIME
"$bin" image prepare "$fqrn" /images/app --tag v2 --json --socket "$run/control.sock" >"$run/v2.json"
prep2_s=$(since "$t0")
rootfs2=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["rootfs"])' "$run/v2.json")
bundle "$run/b-v2" "$rootfs2" ro /usr/bin/python3 -c 'print(1)'
t1=$EPOCHREALTIME
runc_run "$run/b-v2" v2
run2_s=$(since "$t1")
switch_s=$(awk -v a="$prep2_s" -v b="$run2_s" 'BEGIN { printf "%.3f", a + b }')
kib2=$(($(rx_kib "$rootfs2") - kib1))
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$daemon/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
echo
echo "lazyroot provisioner benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r)"
echo "link: $RATE (tc htb), relay +$DELAY_MS ms each way; image: debootstrap minbase bookworm, $tar_mb MB as tar.gz"
echo
printf "%-44s %9s %9s %9s %9s\n" "" "fetch s" "task s" "total s" "KiB"
printf "%-44s %9.3f %9.3f %9.3f %9d\n" "pull + unpack, runc sh -c true (baseline)" "$pull_s" "$base_run_s" "$base_s" "$((tar_mb * 1024))"
printf "%-44s %9.3f %9.3f %9.3f %9d\n" "lazyroot prepare v1, runc sh -c true" "$prep1_s" "$run1_s" "$lazy_s" "$kib1"
printf "%-44s %9.3f %9.3f %9.3f %9d\n" "switch: prepare v2, runc python3 -c print(1)" "$prep2_s" "$run2_s" "$switch_s" "$kib2"
echo
echo "first task from a cold cache: $(ratio "$base_s" "$lazy_s")x faster than pulling the image"
echo "provisioner daemon peak RSS: $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB"

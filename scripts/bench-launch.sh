#!/usr/bin/env bash
# Launch latency through appc simple discovery (a task that names its image by name), against
# launching by id and against pulling the image, over the shaped link of bench-lazy.sh (tc htb
# at RATE on the servers' ports, delay-relay.py for the round trip). One run; every cold step
# starts from an empty cache with the page cache dropped:
#   (a) pull: `curl | tar -xz` of the bookworm image's tarball, then runc runs `sh -c true`;
#   (b) by id: `lazyroot image prepare` through a daemon (control socket), then runc runs the
#       task on `<appc_store>/images/<id>/rootfs` read-only, as Mesos's bind backend gives it;
#   (c) by name, cold: a second daemon (its own empty cache) with `discovery_listen`, and what
#       the Mesos 1.11 agent does (tests/it/provision/discovery.rs): one plain GET of
#       `<prefix><fqrn>/images/app-<VERSION>-linux-<arch>.aci` (the daemon prepares the image
#       before it answers), gunzip, image id = sha512- + SHA-512 of the tar, untar into
#       `<store>/staging/XXXXXX`, rename to `<store>/images/<id>`; then the task on that
#       entry's rootfs, the symlink followed. Split into GET / unpack (gunzip, hash, untar,
#       rename) / task;
#   (d) warm, marked as such (page cache not dropped): the entry exists, so the agent reuses
#       it and only the task runs; then the entry removed (as after an agent's store was
#       cleaned, the image still mounted) and fetched again: GET + unpack + task.
# total = fetch + unpack + task; writing the OCI bundle (runc spec) is left out, as in
# bench-provision.sh. Cold: the page cache dropped, then the client's tools (not the image)
# loaded again, see cold() below. KiB: what was downloaded — the tarball's size for (a), the
# image mount's own counter (xattr user.rx) for (b)-(d) — and "link KiB": what the origins
# sent through the shaped link (tc's byte counter of the htb class: packets with headers,
# the repository's manifest, whitelist and certificate included).
# Needs root and the tree scripts/bookworm-trees.sh makes ($BENCH_DIR/bookworm). Loopback only; every
# process started here, the tc qdisc, mounts and the run directory are removed on exit.
# Usage: bash scripts/bench-launch.sh   (about 40 s once built; BENCH_DIR/launch-run-PID meanwhile)
# Knobs (environment): RATE (100mbit), DELAY_MS (10, one way), VERSION (latest; or v1, the tag
# the image is published with), PORT_BASE (28660: four ports), BENCH_DIR.
set -euo pipefail
export LC_ALL=C # '.' as the decimal separator in $EPOCHREALTIME and awk
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-launch: run as root (FUSE, runc, tc, drop_caches)" >&2; exit 1; }
bash scripts/setup.sh curl attr iproute2 python3 runc
cargo build --release --locked -q --bin lazyroot
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lazyroot

BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
RATE=${RATE:-100mbit}
DELAY_MS=${DELAY_MS:-10}
VERSION=${VERSION:-latest}
PORT_BASE=${PORT_BASE:-28660} # origin, relay, tarball origin, tarball relay
port_origin=$PORT_BASE port_relay=$((PORT_BASE + 1))
port_tar_origin=$((PORT_BASE + 2)) port_tar_relay=$((PORT_BASE + 3))
eval "$(BENCH_DIR=$BENCH_DIR bash scripts/bookworm-trees.sh)"
deb=$LAZYROOT_BOOKWORM
fqrn=launch.bench.lazyroot
name=$fqrn/images/app
arch=$(uname -m)
[ "$arch" = x86_64 ] && arch=amd64 # the agent's (and the daemon's) name for it
log() { echo "bench-launch: $*" >&2; }
die() {
  log "$*"
  exit 1
}
case $VERSION in
latest) tag_args=() ;;
*) tag_args=(--tag "$VERSION") ;;
esac

run=$BENCH_DIR/launch-run-$$
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh # pids (stopped by bench_cleanup), wait_line, drop
daemons=() shaped=0
alive() { [ -e "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
# stop_daemon PID: SIGTERM (the daemon unmounts its images), at most 10 s, then SIGKILL.
stop_daemon() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do alive "$1" || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  for d in "${daemons[@]}"; do stop_daemon "$d"; done
  for c in $(runc --root "$run/runc" list -q 2>/dev/null); do runc --root "$run/runc" delete -f "$c"; done
  bench_cleanup
  [ "$shaped" = 1 ] && bash scripts/shape-lo.sh down
  grep -o " $run[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run/www"

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
sum() { awk -v a="$1" -v b="${2:-0}" -v c="${3:-0}" 'BEGIN { printf "%.3f", a + b + c }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
# bundle DIR ROOTFS ARGS...: an OCI bundle running ARGS in ROOTFS, a read-only root.
bundle() {
  mkdir -p "$1"
  (cd "$1" && runc spec)
  python3 - "$1/config.json" "$2" "${@:3}" <<'PY'
import json, sys
path, root, args = sys.argv[1], sys.argv[2], sys.argv[3:]
c = json.load(open(path))
c["root"] = {"path": root, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = args
json.dump(c, open(path, "w"))
PY
}
runc_run() { timeout 120 runc --root "$run/runc" run --bundle "$1" "bench-launch-$$-$2" >/dev/null; }
rx_kib() { getfattr --absolute-names --only-values -n user.rx "$1"; }
# link_bytes: what the origins have sent through the shaped link so far (the htb class's counter).
link_bytes() { tc -s class show dev lo classid 1:1 | awk '$1 == "Sent" { print $2; exit }'; }
link_kib() { echo $((($(link_bytes) - $1) / 1024)); }
# cold: writes back and drops the page cache, then runs once each tool a client runs (curl,
# gzip, sha512sum, tar, mktemp, mv, the lazyroot CLI, runc) so that their own binaries and
# libraries are resident, as on an agent that has been up for a while: the image is cold,
# the tools are not. (Left cold, curl's start from disk alone cost 0.07-0.12 s here.)
cold() {
  drop
  {
    curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$port_tar_origin/"
    gzip -c </dev/null | gzip -dc
    sha512sum /dev/null
    tar -cf - -T /dev/null | tar -tf -
    mktemp -u
    mv --version
    "$bin" --version
    runc --version
  } >/dev/null
}
# start_daemon DIR DISCOVERY: a provisioner daemon with its own cache, mounts, appc store and
# state under DIR; DISCOVERY is a JSON value for discovery_listen. Sets `daemon`.
start_daemon() {
  mkdir -p "$1"
  cat >"$1/provisioner.json" <<EOF
{
  "repositories": {"$fqrn": {"servers": ["http://127.0.0.1:$port_relay/cvmfs/@fqrn@"],
                             "keys": ["$run/keys/$fqrn.pub"]}},
  "cache": "$1/cache", "mount_root": "$1/images", "appc_store_dir": "$1/appc",
  "state": "$1/state.sqlite", "control_socket": "$1/control.sock", "csi_socket": null,
  "discovery_listen": $2
}
EOF
  "$bin" provisioner --config "$1/provisioner.json" >"$1/daemon.out" 2>&1 &
  daemon=$!
  daemons+=("$daemon")
  wait_line "$1/daemon.out" '^provisioner ready'
}

log "publishing bookworm at /images/app (tag v1) and its tarball"
"$bin" mkfs "$fqrn" --repo "$run/repo" --keys "$run/keys" >/dev/null
"$bin" publish "$deb" --repo "$run/repo" --keys "$run/keys" --path /images/app \
  --auto-catalogs 100,1000 --tag v1 >/dev/null
tar -C "$deb" -czf "$run/www/app.tar.gz" .
tar_kib=$(($(stat -c %s "$run/www/app.tar.gz") / 1024))

log "serving through the shaped link ($RATE, +$DELAY_MS ms each way)"
"$bin" serve --listen "127.0.0.1:$port_origin" --repo "$run/repo" >"$run/serve.out" 2>&1 &
pids+=($!)
wait_line "$run/serve.out" '^serving'
python3 -m http.server "$port_tar_origin" --bind 127.0.0.1 --directory "$run/www" >"$run/http.out" 2>&1 &
pids+=($!)
for pair in "$port_relay:$port_origin" "$port_tar_relay:$port_tar_origin"; do
  python3 scripts/delay-relay.py "${pair%:*}" "${pair#*:}" --delay-ms "$DELAY_MS" >"$run/relay-${pair%:*}.out" 2>&1 &
  pids+=($!)
  wait_line "$run/relay-${pair%:*}.out" '^relay'
done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port_tar_origin/" && break; sleep 0.1; done
bash scripts/shape-lo.sh up "$RATE" "$port_origin" "$port_tar_origin"
shaped=1

log "(a) pull: curl | tar -xz, then runc runs sh -c true"
mkdir -p "$run/untar"
cold
l0=$(link_bytes) t0=$EPOCHREALTIME
timeout 600 curl -sf --max-time 600 "http://127.0.0.1:$port_tar_relay/app.tar.gz" |
  timeout 600 tar -xzf - -C "$run/untar"
pull_s=$(since "$t0") pull_link=$(link_kib "$l0")
bundle "$run/b-pull" "$run/untar" /bin/sh -c true
t0=$EPOCHREALTIME
runc_run "$run/b-pull" pull
pull_task_s=$(since "$t0")
rm -rf "$run/untar"

log "(b) by id: a daemon, image prepare, runc runs sh -c true on the entry's rootfs"
start_daemon "$run/by-id" null
cold
l0=$(link_bytes) t0=$EPOCHREALTIME
timeout 120 "$bin" image prepare "$fqrn" /images/app "${tag_args[@]}" --json \
  --socket "$run/by-id/control.sock" >"$run/by-id/image.json"
id_prep_s=$(since "$t0") id_link=$(link_kib "$l0")
entry=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["appc_dir"])' "$run/by-id/image.json")
bundle "$run/b-id" "$(readlink -f "$entry/rootfs")" /bin/sh -c true
l0=$(link_bytes) t0=$EPOCHREALTIME
runc_run "$run/b-id" by-id
id_task_s=$(since "$t0") id_link=$((id_link + $(link_kib "$l0")))
id_kib=$(rx_kib "$entry/rootfs")
stop_daemon "$daemon"

log "(c) by name, cold: a second daemon (empty cache) with discovery; the agent's fetch; the task"
start_daemon "$run/by-name" '"127.0.0.1:0"'
prefix=$(grep -o 'discovery http://[^ ]*/' "$run/by-name/daemon.out" | head -n1 | cut -d' ' -f2)
[ -n "$prefix" ] || die "the daemon names no discovery address: $(cat "$run/by-name/daemon.out")"
store=$run/by-name/appc
url="$prefix$name-$VERSION-linux-$arch.aci"
# agent_fetch: what the Mesos 1.11 appc store does with a discovered image. Sets `id`,
# `get_s` (the GET: the daemon prepares the image before it answers) and `unpack_s`.
agent_fetch() {
  local t0 staging
  t0=$EPOCHREALTIME
  timeout 120 curl -sf --max-time 120 -o "$run/image.aci" "$url" || die "GET $url failed"
  get_s=$(since "$t0")
  t0=$EPOCHREALTIME
  gzip -dc "$run/image.aci" >"$run/image.tar"
  id=sha512-$(sha512sum "$run/image.tar" | cut -d' ' -f1)
  mkdir -p "$store/staging" "$store/images"
  staging=$(mktemp -d "$store/staging/XXXXXX")
  timeout 60 tar -xf "$run/image.tar" -C "$staging"
  mv "$staging" "$store/images/$id"
  unpack_s=$(since "$t0")
}
cold
l0=$(link_bytes)
agent_fetch
name_get_s=$get_s name_unpack_s=$unpack_s
aci_bytes=$(stat -c %s "$run/image.aci") tar_bytes=$(stat -c %s "$run/image.tar")
grep -qF -- "-> $id" "$run/by-name/daemon.out" ||
  log "warning: the daemon logged no answer with the id the agent computed ($id)"
rootfs=$(readlink -f "$store/images/$id/rootfs")
bundle "$run/b-name" "$rootfs" /bin/sh -c true
t0=$EPOCHREALTIME
runc_run "$run/b-name" by-name
name_task_s=$(since "$t0") name_link=$(link_kib "$l0")
name_kib=$(rx_kib "$rootfs")

log "(d) warm: the entry reused (task only); then the entry removed and fetched again"
[ -d "$store/images/$id" ] || die "the entry $store/images/$id went away"
l0=$(link_bytes) k0=$(rx_kib "$rootfs") t0=$EPOCHREALTIME
runc_run "$run/b-name" reused
reuse_task_s=$(since "$t0") reuse_link=$(link_kib "$l0") reuse_kib=$(($(rx_kib "$rootfs") - k0))
first_id=$id
rm -rf "${store:?}/images/$id" # manifest and the rootfs symlink; the mount stays
l0=$(link_bytes) k0=$(rx_kib "$rootfs")
agent_fetch
[ "$id" = "$first_id" ] || log "warning: the second GET gave another id ($id, first $first_id)"
refetch_get_s=$get_s refetch_unpack_s=$unpack_s
t0=$EPOCHREALTIME
runc_run "$run/b-name" refetched
refetch_task_s=$(since "$t0") refetch_link=$(link_kib "$l0") refetch_kib=$(($(rx_kib "$rootfs") - k0))
stop_daemon "$daemon"

pull_total=$(sum "$pull_s" "$pull_task_s")
id_total=$(sum "$id_prep_s" "$id_task_s")
name_total=$(sum "$name_get_s" "$name_unpack_s" "$name_task_s")
reuse_total=$reuse_task_s
refetch_total=$(sum "$refetch_get_s" "$refetch_unpack_s" "$refetch_task_s")
row() { printf "%-46s %8s %8s %8s %8s %8s %9s\n" "$@"; }
echo
echo "lazyroot launch benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r)"
echo "link: $RATE (tc htb), relay +$DELAY_MS ms each way; image: debootstrap minbase bookworm, $tar_kib KiB as tar.gz"
echo "by name: GET $name-$VERSION-linux-$arch.aci ($aci_bytes bytes gzip'ed, $tar_bytes as tar)"
echo
row "" "fetch s" "unpack s" "task s" "total s" "KiB" "link KiB"
row "(a) pull: curl | tar -xz, runc sh -c true" "$pull_s" "-" "$pull_task_s" "$pull_total" "$tar_kib" "$pull_link"
row "(b) by id: image prepare, runc sh -c true" "$id_prep_s" "-" "$id_task_s" "$id_total" "$id_kib" "$id_link"
row "(c) by name, cold: GET, untar, runc" "$name_get_s" "$name_unpack_s" "$name_task_s" "$name_total" "$name_kib" "$name_link"
row "(d) WARM by name: entry reused, runc only" "-" "-" "$reuse_task_s" "$reuse_total" "$reuse_kib" "$reuse_link"
row "(d) WARM by name: entry gone, GET again, runc" "$refetch_get_s" "$refetch_unpack_s" "$refetch_task_s" "$refetch_total" "$refetch_kib" "$refetch_link"
echo
echo "by id, cold:      $(ratio "$pull_total" "$id_total")x faster than pulling"
echo "through discovery, cold: $(ratio "$pull_total" "$name_total")x faster than pulling;" \
  "$(sum "$name_total" "-$id_total") s over by id ($(ratio "$name_total" "$id_total")x its time)"
echo "fetch: the streamed download and untar (a), image prepare (b), the GET with the daemon's prepare inside it (c, d)"
echo "unpack: gunzip, sha512sum, untar into staging, rename into images/<id>"
echo "cold: page cache dropped, then the client tools (curl, tar, gzip, sha512sum, lazyroot, runc) loaded; WARM rows: nothing dropped"

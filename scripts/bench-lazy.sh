#!/usr/bin/env bash
# Lazy-start benchmark: containers started from images that are never pulled.
#
# A debootstrap minbase bookworm rootfs and a copy of it with python3-minimal (both made once
# by scripts/bookworm-trees.sh, kept in $BENCH_DIR) are published into one repository (/images/bookworm, /images/python, and
# a 1 GiB random file at /images/big) and
# served by `lazyroot serve` through a shaped link: tc htb limits the server's port on `lo` to
# $RATE, and scripts/delay-relay.py adds $DELAY_MS each way (netem is not in this kernel).
# Measured, each against a yardstick from the same run:
#   - cold start of `sh -c true`, `ls /`, `python3 -c 'print(1)'`, `apt-get --version` (empty
#     cache, page cache dropped): KiB downloaded, requests, mount time, command time; against
#     downloading and unpacking the image's tar.gz over the same link. Once per catalog layout
#     in $LAYOUTS (`none` = no --auto-catalogs); the last layout is used for everything below;
#   - the second image after the first (what the shared cache saves);
#   - warm metadata (`find -xdev | wc -l`, `ls -lR`) against the same tree on local disk;
#   - a 1 GiB file read cold (through the link), from a warm cache, and hot, also on a mount
#     pinned with --root-hash (BIG=0 skips it: it costs ~90 s at 100 Mbit/s);
#   - the mount process's peak RSS (VmHWM, read just before each unmount).
# Prints a table. Needs root (chroot, FUSE, tc, drop_caches). Loopback only; every process it
# starts and the tc qdisc are removed on exit; every step runs under `timeout`.
# Knobs (environment): RATE, DELAY_MS, LAYOUTS, BIG, PORT_BASE, BENCH_DIR, KEEP (see below).
set -euo pipefail
export LC_ALL=C # '.' as the decimal separator in $EPOCHREALTIME and awk
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-lazy: run as root (chroot, FUSE, tc, drop_caches)" >&2; exit 1; }
bash scripts/setup.sh time curl attr iproute2 python3
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lazyroot
relay_py=$PWD/scripts/delay-relay.py

BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
RATE=${RATE:-100mbit}               # link bandwidth (tc htb)
DELAY_MS=${DELAY_MS:-10}            # one-way delay of the relay: round trip = 2 x DELAY_MS
LAYOUTS=${LAYOUTS:-"none 100,1000"} # catalog layouts (--auto-catalogs); the last is used for the rest
BIG=${BIG:-1}                       # 1: publish and read a 1 GiB file (~90 s through the link)
PORT_BASE=${PORT_BASE:-28640}       # four ports: origin, relay, tarball origin, tarball relay
KEEP=${KEEP:-0}                     # 1: keep the run directory (repositories, caches)
port_origin=$PORT_BASE port_relay=$((PORT_BASE + 1))
port_tar_origin=$((PORT_BASE + 2)) port_tar_relay=$((PORT_BASE + 3))
final_layout=${LAYOUTS##* }
# Workloads run as a container would start them: an empty environment (no LANG: C locale).
run_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)
# name | image | command (run as `chroot MNT/images/IMAGE /bin/sh -c COMMAND`)
workloads=(
  "sh -c true|bookworm|true"
  "ls /|bookworm|ls /"
  "python3 -c 'print(1)'|python|python3 -c 'print(1)'"
  "apt-get --version|bookworm|apt-get --version"
)
declare -A kib req mnt_s cmd_s mount_kib mount_req catalogs base_s base_mb rss_kib
rss_order=()

log() { echo "bench-lazy: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup on every exit: the mount, every process started here, the tc qdisc, the run directory.
run=$BENCH_DIR/lazy-run-$$
mnt=$run/mnt
pids=() # servers and relays
mount_pid=""
shaped=0
alive() { [ -e "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
cleanup() {
  set +e
  if [ -n "$mount_pid" ]; then
    kill -TERM "$mount_pid" 2>/dev/null
    for _ in $(seq 50); do alive "$mount_pid" || break; sleep 0.1; done
    kill -KILL "$mount_pid" 2>/dev/null
  fi
  mountpoint -q "$mnt" 2>/dev/null && umount -l "$mnt"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [ "$shaped" = 1 ] && bash scripts/shape-lo.sh down
  if [ "$KEEP" = 1 ]; then log "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Source trees, made once and kept in $BENCH_DIR by scripts/bookworm-trees.sh; this script
# only reads them.
eval "$(BENCH_DIR=$BENCH_DIR bash scripts/bookworm-trees.sh)"
deb=$LAZYROOT_BOOKWORM
py=$LAZYROOT_BOOKWORM_PYTHON
mkdir -p "$run" "$mnt" "$run/www"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
# timed VAR CMD...: runs CMD bounded by `timeout`, its stdout discarded; VAR := wall seconds.
# $EPOCHREALTIME rather than /usr/bin/time's %e: warm figures are tens of milliseconds.
timed() {
  local var=$1 t0
  shift
  t0=$EPOCHREALTIME
  timeout 900 "$@" >/dev/null 2>"$run/cmd.err" || { cat "$run/cmd.err" >&2; die "failed: $*"; }
  printf -v "$var" '%s' "$(since "$t0")"
}
# wait_for FILE PATTERN PID: until a started process has printed its ready line.
wait_for() {
  local deadline=$((SECONDS + 60))
  until grep -q "$2" "$1" 2>/dev/null; do
    alive "$3" || { cat "$1" >&2; die "process $3 exited before printing '$2'"; }
    ((SECONDS < deadline)) || die "no '$2' from process $3 within 60 s"
    sleep 0.005
  done
}
layout_fqrn() { echo "lazy-${1/,/-}.bench.test"; }
repo_of() { echo "$run/repo-${1/,/-}"; }
cold_cache() { echo "$run/cache-${1/,/-}-$2"; } # LAYOUT WORKLOAD-INDEX; kept for the diagnostic

for p in $port_origin $port_relay $port_tar_origin $port_tar_relay; do
  ! ss -Htln "sport = :$p" | grep -q . || die "port $p is in use: set PORT_BASE"
done

# ---------------------------------------------------------------------------------------------
# Repositories: one per catalog layout, each holding both images (the big file in the last).
if [ "$BIG" = 1 ]; then
  log "generating a 1 GiB file of random bytes"
  mkdir -p "$run/big"
  head -c 1G /dev/urandom >"$run/big/big.bin"
fi
for layout in $LAYOUTS; do
  fqrn=$(layout_fqrn "$layout") repo=$(repo_of "$layout")
  opts=()
  [ "$layout" = none ] || opts=(--auto-catalogs "$layout")
  log "publishing both images, layout $layout"
  "$bin" mkfs "$fqrn" --repo "$repo" --keys "$run/keys" >/dev/null
  counts=""
  for img in bookworm python; do
    tree=$deb
    [ "$img" = python ] && tree=$py
    timeout 900 "$bin" publish "$tree" --repo "$repo" --keys "$run/keys" --path "/images/$img" \
      "${opts[@]}" >"$run/publish.out"
    # "..., N catalogs written, ...": the image's catalogs plus the root catalog on the way.
    counts+="${counts:+/}$(grep -o '[0-9]* catalogs written' "$run/publish.out" | cut -d' ' -f1)"
  done
  catalogs[$layout]=$counts
  if [ "$BIG" = 1 ] && [ "$layout" = "$final_layout" ]; then
    timeout 900 "$bin" publish "$run/big" --repo "$repo" --keys "$run/keys" --path /images/big >/dev/null
  fi
done

# The yardstick: each image as one tar.gz, downloaded and unpacked over the same link.
log "making the image tarballs"
for img in bookworm python; do
  tree=$deb
  [ "$img" = python ] && tree=$py
  tar -C "$tree" -cf - . | gzip -1 >"$run/www/$img.tar.gz"
  base_mb[$img]=$(stat -c %s "$run/www/$img.tar.gz" | awk '{ printf "%.1f", $1 / 1e6 }')
done

# ---------------------------------------------------------------------------------------------
# The link: servers on loopback, their egress shaped by tc, latency added by the relays.
repo_args=()
for layout in $LAYOUTS; do repo_args+=(--repo "$(repo_of "$layout")"); done
"$bin" serve --listen "127.0.0.1:$port_origin" "${repo_args[@]}" >"$run/serve.out" 2>&1 &
pids+=($!)
wait_for "$run/serve.out" '^serving' $!
python3 -m http.server "$port_tar_origin" --bind 127.0.0.1 --directory "$run/www" >"$run/http.out" 2>&1 &
pids+=($!)
for pair in "$port_relay:$port_origin" "$port_tar_relay:$port_tar_origin"; do
  python3 "$relay_py" "${pair%:*}" "${pair#*:}" --delay-ms "$DELAY_MS" >"$run/relay-${pair%:*}.out" 2>&1 &
  pids+=($!)
  wait_for "$run/relay-${pair%:*}.out" '^relay' $!
done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port_tar_origin/" && break; sleep 0.1; done

# Shape only what the two origins send.
bash scripts/shape-lo.sh up "$RATE" "$port_origin" "$port_tar_origin" || die "cannot shape lo"
shaped=1
# Time to first byte on a new connection: handshake + request = two round trips.
ttfb_ms=$(curl -sf -o /dev/null -w '%{time_starttransfer}' \
  "http://127.0.0.1:$port_relay/cvmfs/$(layout_fqrn "$final_layout")/.cvmfspublished" |
  awk '{ printf "%.0f", $1 * 1000 }')

log "baseline: download and unpack each tarball"
for img in bookworm python; do
  rm -rf "$run/untar"
  mkdir "$run/untar"
  drop_caches
  timed "base_s[$img]" bash -o pipefail -c \
    "curl -sf http://127.0.0.1:$port_tar_relay/$img.tar.gz | tar -xzf - -C '$run/untar'"
done
rm -rf "$run/untar"

# ---------------------------------------------------------------------------------------------
# Mounting. mount_repo LAYOUT CACHE [OPTION...]: background mount; mount_s := seconds until
# it is ready.
mount_repo() {
  local fqrn t0
  fqrn=$(layout_fqrn "$1")
  t0=$EPOCHREALTIME
  "$bin" mount "$fqrn" "$mnt" --server "http://127.0.0.1:$port_relay/cvmfs/$fqrn" \
    --key "$run/keys/$fqrn.pub" --cache "$2" --allow-other "${@:3}" >"$run/mount.out" 2>"$run/mount.err" &
  mount_pid=$!
  wait_for "$run/mount.out" '^mounted' "$mount_pid"
  mount_s=$(since "$t0")
}
# unmount_repo LABEL: records the mount process's peak RSS, then SIGTERM (it unmounts itself).
unmount_repo() {
  rss_kib[$1]=$(awk '/^VmHWM/ { print $2 }' "/proc/$mount_pid/status")
  rss_order+=("$1")
  kill -TERM "$mount_pid"
  local deadline=$((SECONDS + 30))
  while alive "$mount_pid"; do
    ((SECONDS < deadline)) || die "the mount did not exit within 30 s of SIGTERM"
    sleep 0.05
  done
  wait "$mount_pid" || log "the mount exited with status $?"
  mount_pid=""
}
# counters: "KiB requests" downloaded by the mount so far (magic xattrs).
counters() {
  local x=(getfattr --absolute-names --only-values -n)
  echo "$("${x[@]}" user.rx "$mnt") $("${x[@]}" user.ndownload "$mnt")"
}
# in_image IMAGE COMMAND: cmd_time := seconds; rx, nreq := counters afterwards.
in_image() {
  timed cmd_time "${run_env[@]}" chroot "$mnt/images/$1" /bin/sh -c "$2"
  read -r rx nreq < <(counters)
}

# Cold start: a new empty cache and dropped page cache for every workload.
for layout in $LAYOUTS; do
  for i in "${!workloads[@]}"; do
    IFS='|' read -r name img cmd <<<"${workloads[$i]}"
    log "cold: $name (layout $layout)"
    k="$layout|$name"
    drop_caches
    mount_repo "$layout" "$(cold_cache "$layout" "$i")"
    read -r rx0 n0 < <(counters)
    in_image "$img" "$cmd"
    kib[$k]=$rx req[$k]=$nreq mnt_s[$k]=$mount_s cmd_s[$k]=$cmd_time mount_kib[$k]=$rx0 mount_req[$k]=$n0
    unmount_repo "cold $name ($layout)"
  done
done

# Second image, warm metadata and the big file, in one mount of the final layout.
f=$final_layout
log "second image after the first (layout $f)"
drop_caches
mount_repo "$f" "$run/cache-shared"
in_image python "python3 -c 'print(1)'"
rx_py=$rx req_py=$nreq
in_image bookworm true
second_kib=$((rx - rx_py)) second_req=$((nreq - req_py))

log "warm metadata"
declare -A meta_local meta_mount count_local count_mount
for pass in 1 2; do # the second pass is the one reported: caches warm on both sides
  for side in local mount; do
    dir=$deb
    [ $side = mount ] && dir=$mnt/images/bookworm
    timed t_find bash -c "find '$dir' -xdev | wc -l >'$run/count'"
    timed t_ls bash -c "ls -lR '$dir' >/dev/null"
    if [ $side = local ]; then
      meta_local[find]=$t_find meta_local[ls]=$t_ls count_local=$(cat "$run/count")
    else
      meta_mount[find]=$t_find meta_mount[ls]=$t_ls count_mount=$(cat "$run/count")
    fi
  done
done

if [ "$BIG" = 1 ]; then
  log "1 GiB file: through the link, from the warm cache, local"
  local_file=$run/big/big.bin mount_file=$mnt/images/big/big.bin
  drop_caches
  read -r rx0 _ < <(counters)
  timed big_mount_cold cat "$mount_file"
  read -r rx1 _ < <(counters)
  big_rx_mib=$(((rx1 - rx0) / 1024))
  timed big_mount_hot cat "$mount_file"
  # "Page cache dropped" reads: this VM's disk is cached on the host side once a file has
  # been read (a first read after writing runs ~4x slower), so each file is read once
  # before its timed read, lazyroot's cache files and the local file alike.
  drop_caches
  cat "$mount_file" >/dev/null
  drop_caches
  timed big_mount_warm cat "$mount_file" # from lazyroot's cache on disk
  drop_caches
  cat "$local_file" >/dev/null
  drop_caches
  timed big_local_cold cat "$local_file"
  timed big_local_hot cat "$local_file"
  cmp -s "$local_file" "$mount_file" || die "the big file read through the mount differs"
fi
root_hash=$(getfattr --absolute-names --only-values -n user.root_hash "$mnt")
unmount_repo "second image, metadata, 1 GiB file ($f)"

# A mount pinned to a root hash (as a container runtime mounts an image): the kernel may cache
# listings, symlinks and file pages for good. Warm metadata again, and the hot read again.
log "pinned mount: warm metadata$([ "$BIG" = 1 ] && echo ", 1 GiB file hot")"
mount_repo "$f" "$run/cache-shared" --root-hash "$root_hash"
for pass in 1 2; do
  timed pinned_find bash -c "find '$mnt/images/bookworm' -xdev | wc -l >/dev/null"
  timed pinned_ls bash -c "ls -lR '$mnt/images/bookworm' >/dev/null"
done
if [ "$BIG" = 1 ]; then
  cat "$mount_file" >/dev/null
  timed big_pinned_hot cat "$mount_file"
fi
unmount_repo "pinned: metadata$([ "$BIG" = 1 ] && echo ", 1 GiB file hot") ($f)"

# ---------------------------------------------------------------------------------------------
# Report.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? v <= t : (op == ">=") ? v >= t : v < t; print ok ? "met" : "MISSED" }'; }

echo
echo "lazyroot lazy-start benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r)"
echo "link: $RATE (tc htb on the server port), relay +$DELAY_MS ms each way (RTT $((2 * DELAY_MS)) ms);" \
  "first byte on a new connection ${ttfb_ms} ms"
echo
echo "Baseline: download + unpack the whole image (curl | tar -xz, same link)"
printf "%-10s %10s %9s %9s\n" image "tar.gz MB" seconds "Mbit/s"
for img in bookworm python; do
  printf "%-10s %10s %9.2f %9.1f\n" "$img" "${base_mb[$img]}" "${base_s[$img]}" \
    "$(awk -v m="${base_mb[$img]}" -v s="${base_s[$img]}" 'BEGIN { print m * 8 / s }')"
done
echo
echo "Cold start (empty cache, page cache dropped); KiB and requests include the mount's own"
echo "(manifest, whitelist, certificate, root catalog: 'mount KiB/req'); speed-up = baseline / (mount + cmd)"
printf "%-12s %-24s %8s %5s %13s | %8s %7s %7s | %8s %8s\n" \
  layout workload KiB req "mount KiB/req" "mount s" "cmd s" "total s" speed-up "cmd only"
for layout in $LAYOUTS; do
  for w in "${workloads[@]}"; do
    IFS='|' read -r name img _ <<<"$w"
    k="$layout|$name"
    total=$(awk -v a="${mnt_s[$k]}" -v b="${cmd_s[$k]}" 'BEGIN { printf "%.3f", a + b }')
    printf "%-12s %-24s %8d %5d %9d/%-3d | %8.3f %7.3f %7.3f | %7.0fx %7.0fx\n" \
      "$layout" "$name" "${kib[$k]}" "${req[$k]}" "${mount_kib[$k]}" "${mount_req[$k]}" "${mnt_s[$k]}" "${cmd_s[$k]}" \
      "$total" "$(ratio "${base_s[$img]}" "$total")" "$(ratio "${base_s[$img]}" "${cmd_s[$k]}")"
  done
done
echo "catalogs written per publish (bookworm/python, root included): $(for l in $LAYOUTS; do printf '%s: %s  ' "$l" "${catalogs[$l]}"; done)"
echo
k="$f|sh -c true"
echo "Second image: sh -c true in /images/bookworm after python3 -c 'print(1)' in /images/python ($f)"
printf "  cold %d KiB in %d requests; after the other image %d KiB in %d requests: %d KiB saved (%.0f %%)\n" \
  "${kib[$k]}" "${req[$k]}" "$second_kib" "$second_req" "$((kib[$k] - second_kib))" \
  "$(awk -v a="$second_kib" -v b="${kib[$k]}" 'BEGIN { print 100 * (1 - a / b) }')"
echo
echo "Warm metadata (second run of each; mount up, cache warm), /images/bookworm vs the local tree"
printf "  %-26s %9s %11s %7s\n" command "local s" "lazyroot s" ratio
printf "  %-26s %9.3f %11.3f %6.2fx\n" "find -xdev | wc -l" "${meta_local[find]}" "${meta_mount[find]}" \
  "$(ratio "${meta_mount[find]}" "${meta_local[find]}")"
printf "  %-26s %9.3f %11.3f %6.2fx\n" "ls -lR >/dev/null" "${meta_local[ls]}" "${meta_mount[ls]}" \
  "$(ratio "${meta_mount[ls]}" "${meta_local[ls]}")"
printf "  %-26s %9.3f %11.3f %6.2fx\n" "find, pinned mount" "${meta_local[find]}" "$pinned_find" \
  "$(ratio "$pinned_find" "${meta_local[find]}")"
printf "  %-26s %9.3f %11.3f %6.2fx\n" "ls -lR, pinned mount" "${meta_local[ls]}" "$pinned_ls" \
  "$(ratio "$pinned_ls" "${meta_local[ls]}")"
echo "  entries: local $count_local, lazyroot $count_mount"
if [ "$BIG" = 1 ]; then
  echo
  echo "1 GiB file (random bytes, chunked): cat > /dev/null; speed = local s / lazyroot s"
  printf "  %-52s %9s %11s %7s\n" read "local s" "lazyroot s" speed
  printf "  %-52s %9.2f %11.2f %6.2fx\n" "cold (page cache dropped; lazyroot: via the link)" \
    "$big_local_cold" "$big_mount_cold" "$(ratio "$big_local_cold" "$big_mount_cold")"
  printf "  %-52s %9.2f %11.2f %6.2fx\n" "warm cache (lazyroot cache full, page cache dropped)" \
    "$big_local_cold" "$big_mount_warm" "$(ratio "$big_local_cold" "$big_mount_warm")"
  printf "  %-52s %9.2f %11.2f %6.2fx\n" "hot (second read)" \
    "$big_local_hot" "$big_mount_hot" "$(ratio "$big_local_hot" "$big_mount_hot")"
  printf "  %-52s %9.2f %11.2f %6.2fx\n" "hot (second read), mount pinned (--root-hash)" \
    "$big_local_hot" "$big_pinned_hot" "$(ratio "$big_local_hot" "$big_pinned_hot")"
  echo "  downloaded $big_rx_mib MiB through the link ($(awk -v m="$big_rx_mib" -v s="$big_mount_cold" 'BEGIN { printf "%.1f", m * 8.388608 / s }') Mbit/s)"
fi
echo
echo "Mount process peak RSS (VmHWM before unmount)"
peak=0
for label in "${rss_order[@]}"; do
  printf "  %-50s %6.1f MiB\n" "$label" "$(awk -v k="${rss_kib[$label]}" 'BEGIN { print k / 1024 }')"
  ((rss_kib[$label] > peak)) && peak=${rss_kib[$label]}
done
peak_mib=$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')

echo
echo "Targets"
k="$f|sh -c true"
for layout in $LAYOUTS; do
  v=$(awk -v k="${kib[$layout|sh -c true]}" 'BEGIN { printf "%.2f", k / 1024 }')
  echo "  sh -c true fetches <= 1.3 MiB ($layout): $v MiB  $(verdict "$v" "<=" 1.3)"
done
for w in "${workloads[@]}"; do
  IFS='|' read -r name img _ <<<"$w"
  s=$(ratio "${base_s[$img]}" "$(awk -v a="${mnt_s[$f|$name]}" -v b="${cmd_s[$f|$name]}" 'BEGIN { print a + b }')")
  printf "  cold start >= 30x faster than the full download (%s, mount + cmd): %-22s %6sx  %s\n" \
    "$f" "$name" "$s" "$(verdict "$s" ">=" 30)"
done
for c in find ls; do
  r=$(ratio "${meta_mount[$c]}" "${meta_local[$c]}")
  echo "  warm metadata <= 1.3x local disk ($c): ${r}x  $(verdict "$r" "<=" 1.3)"
done
r=$(ratio "$pinned_find" "${meta_local[find]}")
echo "  warm metadata <= 1.3x local disk (find, pinned mount): ${r}x  $(verdict "$r" "<=" 1.3)"
r=$(ratio "$pinned_ls" "${meta_local[ls]}")
echo "  warm metadata <= 1.3x local disk (ls -lR, pinned mount): ${r}x  $(verdict "$r" "<=" 1.3)"
if [ "$BIG" = 1 ]; then
  r=$(ratio "$big_local_cold" "$big_mount_warm")
  echo "  warm reads >= 0.9x local disk (warm cache, page cache dropped): ${r}x  $(verdict "$r" ">=" 0.9)"
  r=$(ratio "$big_local_hot" "$big_mount_hot")
  echo "  warm reads >= 0.9x local disk (hot, second read): ${r}x  $(verdict "$r" ">=" 0.9)"
  r=$(ratio "$big_local_hot" "$big_pinned_hot")
  echo "  warm reads >= 0.9x local disk (hot, second read, pinned mount): ${r}x  $(verdict "$r" ">=" 0.9)"
fi
echo "  mount process < 32 MiB resident (peak over all mounts): $peak_mib MiB  $(verdict "$peak_mib" "<" 32)"

# Diagnostic: what `sh -c true` (workload 0) fetched, per layout, from its cold cache. Paths
# come from the catalogs in that cache; sizes on the wire from the repository's objects.
echo
echo "What sh -c true fetched, per layout (from its cold cache; zlib KiB = bytes on the wire)"
for layout in $LAYOUTS; do
  echo "  layout $layout:"
  python3 - "$(cold_cache "$layout" 0)" "$(repo_of "$layout")" <<'PY' || log "diagnostic failed"
import glob, os, sqlite3, sys

cache, repo = sys.argv[1:3]
ro = lambda path: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
objects = ro(f"{cache}/cachedb.sqlite").execute("SELECT hash, mountpoint FROM objects").fetchall()
KINDS = {"C": "catalog", "X": "certificate", "H": "history", "P": "chunk", "": "file"}
rows, parent, where = [], {}, {}
for h, mountpoint in objects:
    stored = glob.glob(f"{repo}/data/{h[:2]}/{h[2:]}*")
    suffix = stored[0][len(f"{repo}/data/{h[:2]}/{h[2:]}"):] if stored else "?"
    local = f"{cache}/objects/{h[:2]}/{h[2:]}"
    rows.append([h, KINDS.get(suffix, suffix), os.path.getsize(stored[0]) if stored else 0,
                 os.path.getsize(local) if os.path.exists(local) else 0])
    if suffix == "C":  # a catalog: learn every entry's name, parent and content hash
        db = ro(local)
        db.text_factory = lambda b: b.decode("utf-8", "replace")
        for m1, m2, p1, p2, name, hb in db.execute(
                "SELECT md5path_1, md5path_2, parent_1, parent_2, name, hash FROM catalog"):
            parent[(m1, m2)] = ((p1, p2), name)
            if hb:
                where.setdefault(bytes(hb).hex(), (m1, m2))
        for m1, m2, hb in db.execute("SELECT md5path_1, md5path_2, hash FROM chunks"):
            where.setdefault(bytes(hb).hex(), (m1, m2))
        rows[-1].append(bytes(mountpoint).decode("utf-8", "replace") if mountpoint else "/ (root catalog)")

def path(key):
    parts = []
    for _ in range(256):
        if key not in parent or not parent[key][1]:
            break
        key, name = parent[key][0], parent[key][1]
        parts.append(name)
    return "/" + "/".join(reversed(parts))

for r in rows:
    if len(r) == 4:
        r.append(path(where[r[0]]) if r[0] in where else "")
rows.sort(key=lambda r: -r[2])
print(f"    {'kind':<12} {'zlib KiB':>9} {'KiB':>9}  path")
for h, kind, wire, size, p in rows:
    print(f"    {kind:<12} {wire / 1024:9.1f} {size / 1024:9.1f}  {p}")
print(f"    {'total':<12} {sum(r[2] for r in rows) / 1024:9.1f} {sum(r[3] for r in rows) / 1024:9.1f}"
      f"  ({len(rows)} objects; the manifest and whitelist come on top)")
PY
done

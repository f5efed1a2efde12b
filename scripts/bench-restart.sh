#!/usr/bin/env bash
# Restart benchmark (issue 13): what a task reading through a `lazyroot mount` notices when
# the daemon is SIGKILLed and restarted, or upgraded in place with SIGUSR2.
#
# A repository with a 64 MiB file (chunked, 4-16 MiB chunks) and a tree of 8 x 16 small
# files is served by `lazyroot serve` on 127.0.0.1 and mounted with a keeper. The task
# (scripts/restart-reader.sh) reads the whole time: a kept descriptor, the file opened anew,
# a directory walked and every file read and checked. Measured in one run:
#   - yardstick: the task's operations with nothing restarted (median and max, ms);
#   - KILLS (50) SIGKILLs, each followed at once by a new daemon: the longest operation
#     around each restart (median and max), and its ratio to the yardstick's median; the
#     time from the kill to the new daemon's "took over" line;
#   - UPGRADES (10) SIGUSR2 upgrades: the same.
# Every read is checked; any failure fails the benchmark. Needs root (FUSE). Loopback only;
# every process is stopped on exit and every wait is bounded.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-restart: run as root (FUSE)" >&2; exit 1; }
KILLS=${KILLS:-50}
UPGRADES=${UPGRADES:-10}
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lazyroot
reader=$PWD/scripts/restart-reader.sh
work=$(mktemp -d /tmp/lazyroot-bench-restart.XXXXXX)
mnt=$work/mnt
source scripts/bench-lib.sh
trap 'touch "$work/stop"; bench_cleanup; rm -rf "$work"' EXIT

export BIG=$((64 << 20)) DIRS=8 FILES=16
mkdir -p "$work/src/tree" "$mnt"
head -c "$BIG" /dev/urandom >"$work/src/big"
for d in $(seq 0 $((DIRS - 1))); do
  mkdir -p "$work/src/tree/d$d"
  for f in $(seq 0 $((FILES - 1))); do echo "file $d/$f" >"$work/src/tree/d$d/f$f"; done
done
"$bin" mkfs --repo "$work/repo" --keys "$work/keys" bench.restart >/dev/null
"$bin" publish --repo "$work/repo" --keys "$work/keys" "$work/src" >/dev/null
serve_repo "$work/repo" "$work/serve.log"
"$bin" keeper --socket "$work/keeper.sock" >"$work/keeper.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/keeper.sock" ] && break; sleep 0.05; done
args=(mount bench.restart "$mnt" --server "$url" --key "$work/keys/bench.restart.pub"
  --cache "$work/cache" --keeper "$work/keeper.sock")

# daemon LOG: starts a daemon; waits (bounded) for its "mounted" line; sets `daemon`.
daemon() {
  "$bin" "${args[@]}" >"$1" 2>>"$work/daemons.log" &
  daemon=$!
  wait_line "$1" '^mounted'
}
# longest FROM TO: the longest operation of the task overlapping [FROM, TO], in ms.
longest() {
  awk -v a="$1" -v b="$2" '$1 == "op" && $3 >= a && $2 <= b { d = ($3 - $2) * 1000; if (d > m) m = d }
    END { printf "%.1f\n", m }' "$work/reader.out"
}
# stats: median and max of the numbers on standard input.
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", v[int((NR + 1) / 2)], v[NR] }'; }

daemon "$work/m0.out"
bash "$reader" "$mnt" "$work/src" "$work/stop" >"$work/reader.out" &
reader_pid=$!
sleep 5 # the yardstick: nothing restarted
read -r base_med base_max < <(awk '$1 == "op" { printf "%.1f\n", ($3 - $2) * 1000 }' "$work/reader.out" | stats)

: >"$work/kill.stalls"; : >"$work/kill.back"
for i in $(seq "$KILLS"); do
  sleep "0.$((RANDOM % 3 + 1))"
  t=$EPOCHREALTIME
  kill -KILL "$daemon"; wait "$daemon" 2>/dev/null || true
  daemon "$work/m$i.out"
  grep -q 'took over' "$work/m$i.out" || { echo "restart $i did not take over" >&2; exit 1; }
  back=$EPOCHREALTIME
  echo "($back - $t) * 1000" | bc >>"$work/kill.back"
  sleep 0.3
  longest "$t" "$EPOCHREALTIME" >>"$work/kill.stalls"
done

: >"$work/upgrade.stalls"
for i in $(seq "$UPGRADES"); do
  sleep 0.3
  t=$EPOCHREALTIME
  old=$daemon
  kill -USR2 "$old"
  for _ in $(seq 600); do kill -0 "$old" 2>/dev/null || break; sleep 0.01; done
  kill -0 "$old" 2>/dev/null && { echo "upgrade $i: the old daemon is still there" >&2; exit 1; }
  daemon=$(pgrep -n -f "lazyroot mount bench.restart $mnt ")
  sleep 0.3
  longest "$t" "$EPOCHREALTIME" >>"$work/upgrade.stalls"
done
pids+=("$daemon")

touch "$work/stop"
wait "$reader_pid" || true
if grep -q '^FAIL' "$work/reader.out"; then
  grep '^FAIL' "$work/reader.out" | head >&2
  echo "bench-restart: the task saw failures" >&2
  exit 1
fi
rounds=$(awk '/^rounds/ {print $2}' "$work/reader.out")
read -r kill_med kill_max < <(stats <"$work/kill.stalls")
read -r back_med back_max < <(stats <"$work/kill.back")
read -r up_med up_max < <(stats <"$work/upgrade.stalls")
ratio() { echo "scale=1; $1 / $base_med" | bc; }
echo "task: $rounds rounds, every read checked, none failed ($(nproc) cores, $(uname -r))"
printf '%-34s %10s %10s %12s\n' "what the task saw" "median ms" "max ms" "median/yard"
printf '%-34s %10s %10s %12s\n' "operation, nothing restarted" "$base_med" "$base_max" "1.0"
printf '%-34s %10s %10s %12s\n' "longest op per SIGKILL ($KILLS)" "$kill_med" "$kill_max" "$(ratio "$kill_med")"
printf '%-34s %10s %10s %12s\n' "kill to 'took over' line" "$back_med" "$back_max" "-"
printf '%-34s %10s %10s %12s\n' "longest op per upgrade ($UPGRADES)" "$up_med" "$up_max" "$(ratio "$up_med")"

# Shared by the benchmarks (sourced): background processes stopped on exit, bounded waits,
# timings. The caller sets `bin` (the lazyroot binary) and `mnt` (a mount point to clean up).
pids=()
bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${mnt:-}" ] && mountpoint -q "$mnt" 2>/dev/null; then umount -l "$mnt" || true; fi
}
trap bench_cleanup EXIT
# wait_line FILE PATTERN: waits (at most 30 s) for a line matching PATTERN in FILE.
wait_line() {
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): no '$2' in $1" >&2
  exit 1
}
# secs CMD...: wall seconds of CMD (output discarded).
secs() { local t0=$EPOCHREALTIME; "$@" >/dev/null; echo "$EPOCHREALTIME - $t0" | bc; }
# drop: writes back and drops the page cache.
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# serve_repo REPO LOG: lazyroot serve on 127.0.0.1:0 in the background; sets `url`.
serve_repo() {
  "$bin" serve --listen 127.0.0.1:0 --repo "$1" >"$2" 2>&1 &
  pids+=($!)
  wait_line "$2" '^serving'
  url=$(awk '/^serving/ {print $NF}' "$2")
}
# root_hash REPO KEYS: the current root hash of the repository at REPO.
root_hash() {
  "$bin" info --repo "$1" --keys "$2" --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["root_hash"])'
}

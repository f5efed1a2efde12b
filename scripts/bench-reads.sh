#!/usr/bin/env bash
# Warm read paths, without a shaped link (the cache is full, so the network plays no part):
# a 1 GiB file stored chunked and stored whole, read through a mount pinned to a root hash,
# with and without FUSE passthrough, against the same file on local disk in the same run.
#   - warm: lazyroot's cache full, page cache dropped (each file read once before, because
#     this VM's disk is cached on the host side after a first read);
#   - hot: the second read, pages cached.
# Usage: bash scripts/bench-reads.sh   (root; ~2 minutes; work in /var/tmp/lazyroot-bench/reads)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-reads: needs root (FUSE, drop_caches)" >&2; exit 1; }
bash scripts/setup.sh bc
cargo build --release --locked -q
bin=$PWD/target/release/lazyroot
w=/var/tmp/lazyroot-bench/reads
fqrn=reads.bench.lazyroot
ROUNDS=${ROUNDS:-3}
mkdir -p "$w"
if [ ! -f "$w/ready" ]; then
  rm -rf "${w:?}"/*
  mkdir -p "$w/tree"
  head -c $((1 << 30)) /dev/urandom >"$w/tree/big.bin"
  "$bin" mkfs "$fqrn" --repo "$w/repo" --keys "$w/keys" >/dev/null
  "$bin" publish "$w/tree" --repo "$w/repo" --keys "$w/keys" --path /chunked >/dev/null
  "$bin" publish "$w/tree" --repo "$w/repo" --keys "$w/keys" --path /whole --no-chunking >/dev/null
  touch "$w/ready"
fi
mnt=$w/mnt
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
root=$(root_hash "$w/repo" "$w/keys")
serve_repo "$w/repo" "$w/serve.log"
mkdir -p "$mnt"

# mean of ROUNDS timings of "$@" after SETUP (a command string run before each timing)
mean() {
  local setup=$1 sum=0 t
  shift
  for _ in $(seq "$ROUNDS"); do
    eval "$setup"
    t=$(secs "$@")
    sum=$(echo "$sum + $t" | bc)
  done
  echo "scale=3; $sum / $ROUNDS" | bc
}

local_file=$w/tree/big.bin
cat "$local_file" >/dev/null
local_warm=$(mean 'drop; cat "$local_file" >/dev/null; drop' cat "$local_file")
local_hot=$(mean 'cat "$local_file" >/dev/null' cat "$local_file")

declare -A warm hot
for variant in chunked whole whole+passthrough; do
  layout=${variant%%+*}
  extra=()
  [ "$variant" = whole+passthrough ] && extra=(--passthrough)
  "$bin" mount "$fqrn" "$mnt" --server "$url" --key "$w/keys/$fqrn.pub" --cache "$w/cache" \
    --root-hash "$root" "${extra[@]}" >"$w/mount.log" 2>&1 &
  mpid=$!
  pids+=($mpid)
  wait_line "$w/mount.log" '^mounted'
  f=$mnt/$layout/big.bin
  cat "$f" >/dev/null # fills lazyroot's cache (loopback, unshaped)
  warm[$variant]=$(mean 'drop; cat "$f" >/dev/null; drop' cat "$f")
  hot[$variant]=$(mean 'cat "$f" >/dev/null' cat "$f")
  cmp -s "$f" "$local_file" || { echo "bench-reads: $f differs from the local file" >&2; exit 1; }
  kill -TERM "$mpid"
  wait "$mpid" || true
done

ratio() { echo "scale=2; $1 / $2" | bc; }
echo
echo "lazyroot warm reads, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r); 1 GiB random file,"
echo "mount pinned to a root hash, mean of $ROUNDS reads each; speed = local s / lazyroot s"
printf "%-22s %10s %10s %8s | %10s %10s %8s\n" variant "warm loc s" "warm lzr s" speed "hot loc s" "hot lzr s" speed
for variant in chunked whole whole+passthrough; do
  printf "%-22s %10.3f %10.3f %7.2fx | %10.3f %10.3f %7.2fx\n" "$variant" \
    "$local_warm" "${warm[$variant]}" "$(ratio "$local_warm" "${warm[$variant]}")" \
    "$local_hot" "${hot[$variant]}" "$(ratio "$local_hot" "${hot[$variant]}")"
done

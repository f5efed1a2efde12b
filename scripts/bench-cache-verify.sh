#!/usr/bin/env bash
# What the cache's checks cost (README "The cache"): a 256 MiB file stored in chunks and
# 2,000 files of 4 KiB, read through a pinned mount over loopback (no shaped link):
#   - cold: every object downloaded, inflated, hashed (SHA-256) and synced before its rename;
#   - first use: a new mount process over the full cache, page cache dropped: every object's
#     size checked and its bytes hashed against the recorded digest (once per process);
#   - steady: the same process again, page cache dropped: the size check (fstat) only;
#   - local: the same tree on local disk, page cache dropped.
# first use / steady is the price of the content check; cold shows the sync before rename.
# Usage: bash scripts/bench-cache-verify.sh   (root; ~1 minute; work in /var/tmp/lazyroot-bench/verify)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-cache-verify: needs root (FUSE, drop_caches)" >&2; exit 1; }
bash scripts/setup.sh bc
cargo build --release --locked -q
bin=$PWD/target/release/lazyroot
w=/var/tmp/lazyroot-bench/verify
fqrn=verify.bench.lazyroot
mkdir -p "$w"
if [ ! -f "$w/ready" ]; then
  rm -rf "${w:?}"/*
  mkdir -p "$w/tree/small"
  head -c $((256 << 20)) /dev/urandom >"$w/tree/big.bin"
  for i in $(seq 2000); do head -c 4096 /dev/urandom >"$w/tree/small/$i"; done
  "$bin" mkfs "$fqrn" --repo "$w/repo" --keys "$w/keys" >/dev/null
  "$bin" publish "$w/tree" --repo "$w/repo" --keys "$w/keys" >/dev/null
  touch "$w/ready"
fi
mnt=$w/mnt
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
root=$(root_hash "$w/repo" "$w/keys")
serve_repo "$w/repo" "$w/serve.log"
mkdir -p "$mnt"
read_all() { cat "$1/big.bin" >/dev/null; cat "$1"/small/* >/dev/null; }
mount_it() {
  "$bin" mount "$fqrn" "$mnt" --server "$url" --key "$w/keys/$fqrn.pub" --cache "$w/cache" \
    --root-hash "$root" >"$w/mount.log" 2>&1 &
  mpid=$!
  pids+=($mpid)
  wait_line "$w/mount.log" '^mounted'
}
unmount_it() { kill -TERM "$mpid"; wait "$mpid" || true; }

drop
local_s=$(secs read_all "$w/tree")

rm -rf "$w/cache"
mount_it
drop
cold=$(secs read_all "$mnt")
unmount_it

mount_it
drop
first=$(secs read_all "$mnt")
drop
steady=$(secs read_all "$mnt")
cmp -s "$mnt/big.bin" "$w/tree/big.bin" || { echo "bench-cache-verify: big.bin differs" >&2; exit 1; }
unmount_it

ratio() { echo "scale=2; $1 / $2" | bc; }
echo
echo "cache checks, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r); 256 MiB in chunks + 2,000 x 4 KiB,"
echo "pinned mount over loopback, page cache dropped before each read"
printf "%-40s %8s %10s\n" read seconds "x local"
printf "%-40s %8.3f %10s\n" "local disk" "$local_s" 1.00
printf "%-40s %8.3f %9.2fx\n" "cold (download, hash, sync, rename)" "$cold" "$(ratio "$cold" "$local_s")"
printf "%-40s %8.3f %9.2fx\n" "first use in a process (size + SHA-256)" "$first" "$(ratio "$first" "$local_s")"
printf "%-40s %8.3f %9.2fx\n" "steady (size only)" "$steady" "$(ratio "$steady" "$local_s")"
echo "content check on first use: $(ratio "$first" "$steady")x the steady read"

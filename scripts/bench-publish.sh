#!/usr/bin/env bash
# Publish benchmark: full publish and a 1 % republish of (a) a generated ~300 MB tree of
# mixed small and large files and (b) a debootstrap minbase bookworm tree, each against
# `tar -cf - SOURCE | gzip -1 > /dev/null` on the same tree in the same run; then a file
# larger than the machine's memory, to show memory stays bounded. Prints a table.
# Sources are read warm (page cache filled first) for both lazyroot and the yardstick.
# Bounded: fixed trees, one pass each. Work stays in $BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh time python3
cargo build --release --locked -q
bin=$PWD/target/release/lazyroot
BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
BIG_GIB=${BIG_GIB:-$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1048576 + 2 ))}
mkdir -p "$BENCH_DIR"

gen=$BENCH_DIR/generated
if [ ! -f "$gen/.done" ]; then
  rm -rf "$gen"
  python3 - "$gen" <<'PY'
import os, random, sys
root = sys.argv[1]; rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
    return bytes(out[:n])
total = 0
for i in range(4000):           # small files: source-like text and some binary, 1-64 KiB
    d = os.path.join(root, "usr/lib/pkg%03d" % (i % 150)); os.makedirs(d, exist_ok=True)
    n = rnd.randint(1024, 65536)
    data = text(n) if i % 3 else os.urandom(n // 2) + text(n - n // 2)
    open(os.path.join(d, "f%04d" % i), "wb").write(data); total += n
for i in range(8):              # large files: libraries/archives, half compressible
    d = os.path.join(root, "opt/big"); os.makedirs(d, exist_ok=True)
    n = 20 << 20
    with open(os.path.join(d, "blob%d" % i), "wb") as f:
        for _ in range(n // (1 << 20)):
            f.write(os.urandom(1 << 19) + text(1 << 19))
    total += n
print("generated %.0f MB" % (total / 1e6), file=sys.stderr)
PY
  touch "$gen/.done"
fi

eval "$(BENCH_DIR=$BENCH_DIR bash scripts/bookworm-trees.sh)"
deb=$LAZYROOT_BOOKWORM

secs() { /usr/bin/time -f "%e %M" -o "$BENCH_DIR/time.out" "$@" >/dev/null 2>"$BENCH_DIR/cmd.err" || { cat "$BENCH_DIR/cmd.err" >&2; return 1; }; cat "$BENCH_DIR/time.out"; }
mb() { du -sb --exclude=.done "$1" | awk '{printf "%.0f", $1/1e6}'; }

# Fresh directories per run: ext4 skips recently deleted inodes when allocating, which
# makes publishing right after an `rm -rf` of a large repository look slower than it is.
run=$BENCH_DIR/run-$$; mkdir -p "$run"; trap 'rm -rf "$run"' EXIT

printf "%-10s %5s %6s | %8s %6s | %9s %6s %7s %8s | %9s %6s %6s | %9s %7s\n" \
  tree MB files "tar|gz s" "MB/s" "publish s" "MB/s" "vs tar" "peak MiB" "level-1 s" "MB/s" "size+" "1% repub" "vs full"
for tree in "$gen" "$deb"; do
  name=$(basename "$tree")
  size=$(mb "$tree"); files=$(find "$tree" -type f | wc -l)
  tar -cf - -C "$tree" . >/dev/null                          # warm the page cache
  read -r tar_s _ < <(secs bash -c "tar -cf - -C '$tree' . | gzip -1 > /dev/null")
  for lvl in 6 1; do
    "$bin" mkfs "bench.$name.org" --repo "$run/repo-$name-$lvl" --keys "$run/keys-$name-$lvl" >/dev/null
  done
  read -r pub_s pub_kb < <(secs "$bin" publish "$tree" --repo "$run/repo-$name-6" --keys "$run/keys-$name-6")
  read -r l1_s _ < <(secs "$bin" publish "$tree" --repo "$run/repo-$name-1" --keys "$run/keys-$name-1" --compression-level 1)
  bytes6=$(du -sb "$run/repo-$name-6/data" | cut -f1); bytes1=$(du -sb "$run/repo-$name-1/data" | cut -f1)
  # Change 1 % of the files (every 100th): append one line.
  find "$tree" -type f ! -name .done | sort | awk 'NR % 100 == 0' | while read -r f; do echo "changed $RANDOM" >> "$f"; done
  read -r re_s _ < <(secs "$bin" publish "$tree" --repo "$run/repo-$name-6" --keys "$run/keys-$name-6")
  "$bin" check --repo "$run/repo-$name-6" --keys "$run/keys-$name-6" >/dev/null
  awk -v n="$name" -v mb="$size" -v f="$files" -v t="$tar_s" -v p="$pub_s" -v k="$pub_kb" -v l="$l1_s" \
      -v b6="$bytes6" -v b1="$bytes1" -v r="$re_s" 'BEGIN {
    printf "%-10s %5d %6d | %8.2f %6.0f | %9.2f %6.0f %6.2fx %8.0f | %9.2f %6.0f %5.0f%% | %9.2f %6.1f%%\n",
      n, mb, f, t, mb/t, p, mb/p, t/p, k/1024, l, mb/l, 100*(b1/b6-1), r, 100*r/p }'
done

# A file larger than RAM: memory use must not grow with file size. Sparse, so it costs no disk.
free_gib=$(df --output=avail -BG "$BENCH_DIR" | tail -1 | tr -dc 0-9)
if [ "$free_gib" -gt 4 ]; then
  big=$run/bigfile; mkdir -p "$big"
  truncate -s "${BIG_GIB}G" "$big/huge.img"
  "$bin" mkfs bench.big.org --repo "$run/repo-big" --keys "$run/keys-big" >/dev/null
  read -r big_s big_kb < <(secs "$bin" publish "$big" --repo "$run/repo-big" --keys "$run/keys-big")
  awk -v g="$BIG_GIB" -v s="$big_s" -v k="$big_kb" 'BEGIN { printf "file of %d GiB (sparse, > RAM): published in %.1f s (%.0f MB/s), peak RSS %.0f MiB\n", g, s, g*1073.741824/s, k/1024 }'
fi

#!/usr/bin/env bash
# Ingesting images from a registry (issue 12): `lazyroot ingest` against what a user does
# today (skopeo copy to an OCI layout, umoci unpack, lazyroot publish of the rootfs).
# Two images are built offline with umoci from the trees scripts/bookworm-trees.sh makes: A = one layer
# (debootstrap minbase bookworm), B = A's layer plus a second one with what python3 adds
# (removed files become whiteouts). Both are pushed with skopeo into Debian's
# docker-registry on 127.0.0.1 (a config of our own, storage in a temp dir). All in one run,
# the page cache dropped before each measured step:
#   (a) baseline into a fresh repository: skopeo copy docker:// -> oci:, umoci unpack,
#       lazyroot publish BUNDLE/rootfs --path /images/a (each step and the total);
#   (b) lazyroot ingest of tag a into another fresh repository: time, MB/s over the
#       uncompressed layer, peak RSS (/usr/bin/time -v), the figures it prints;
#   (c) ingest of tag b into the same repository after a (its first layer is reused);
#   (d) re-ingest of tag a unchanged ("nothing changed");
#   (e) memory whatever the layer size: one image of a single $BIG_GIB GiB layer (default 2;
#       0 skips), a few large files of random bytes (chunked) and 5000 small ones, built
#       with umoci as an `oci:` layout and ingested with `lazyroot ingest oci:DIR:big` into
#       a fresh repository: time, MB/s over the uncompressed layer, peak RSS;
# then a check: `lazyroot ls -R` of the ingested rootfs (through its name link) against the
# baseline's /images/a, entry counts and differing lines.
# Network: loopback only. Every step has a timeout; the trap stops the registry and
# removes the run directory. Usage: bash scripts/bench-ingest.sh
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-ingest: run as root (umoci unpack keeps owners)" >&2; exit 1; }
bash scripts/setup.sh docker-registry umoci skopeo rsync time curl python3 bc
cargo build --release --locked -q --bin lazyroot
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lazyroot

BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
STEP_TIMEOUT=${STEP_TIMEOUT:-900} # seconds, each step
BIG_GIB=${BIG_GIB:-2}             # (e): the single layer's size; 0 skips (e)
# KEEP=1 keeps the run directory (registry storage, repositories, outputs) for a look.
log() { echo "bench-ingest: $*" >&2; }
die() { log "$*"; exit 1; }
eval "$(BENCH_DIR=$BENCH_DIR bash scripts/bookworm-trees.sh)"
deb=$LAZYROOT_BOOKWORM py=$LAZYROOT_BOOKWORM_PYTHON

run=$BENCH_DIR/ingest-run-$$
registry=""
cleanup() {
  set +e
  if [ -n "$registry" ]; then
    kill -TERM "$registry" 2>/dev/null
    for _ in $(seq 50); do [ -e "/proc/$registry" ] || break; sleep 0.1; done
    kill -KILL "$registry" 2>/dev/null
  fi
  if [ "${KEEP:-0}" = 1 ]; then log "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$run"

t() { timeout "$STEP_TIMEOUT" "$@"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
# timed OUT CMD...: runs CMD under /usr/bin/time -v (stdout to OUT, the -v report to
# OUT.time); prints wall seconds.
timed() {
  local out=$1 t0
  shift
  t0=$EPOCHREALTIME
  t /usr/bin/time -v -o "$out.time" "$@" >"$out" 2>"$out.err" || {
    log "failed: $* (exit $?)"
    cat "$out" "$out.err" >&2
    exit 1
  }
  since "$t0"
}
rss_mib() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1.time"; }
# figure OUT FIELD: a number from ingest's summary line.
figure() {
  sed -nE 's/^layers fetched ([0-9]+), reused ([0-9]+); ([0-9]+) bytes downloaded; objects written ([0-9]+), reused ([0-9]+); .*/\1 \2 \3 \4 \5/p' "$1" |
    awk -v f="$2" '{ print $f }'
}
skopeo_() { t skopeo --insecure-policy copy --quiet --src-tls-verify=false --dest-tls-verify=false "$@"; }

log "building image A (bookworm) and B (A + python3) with umoci"
lay=$run/layout
t umoci init --layout "$lay"
t umoci new --image "$lay:a"
t umoci unpack --image "$lay:a" "$run/bundle-a" >/dev/null
cp -a "$deb/." "$run/bundle-a/rootfs/"
t umoci repack --image "$lay:a" "$run/bundle-a"
rm -rf "$run/bundle-a"
t umoci unpack --image "$lay:a" "$run/bundle-b" >/dev/null
rsync -aHAX --numeric-ids --delete "$py/" "$run/bundle-b/rootfs/"
t umoci repack --image "$lay:b" "$run/bundle-b"
rm -rf "$run/bundle-b"
for tag in a b; do
  t umoci config --image "$lay:$tag" --os linux --architecture "$(dpkg --print-architecture)" \
    --config.entrypoint /bin/sh
done
# Layer sizes: compressed blobs and uncompressed streams, from the manifests.
layer_sizes() { # LAYOUT TAG: one line per layer, "compressed_bytes uncompressed_bytes"
  python3 - "$1" "$2" <<'PY'
import gzip, json, sys, os
lay, tag = sys.argv[1], sys.argv[2]
def blob(d): return os.path.join(lay, "blobs", *d.split(":"))
idx = json.load(open(os.path.join(lay, "index.json")))
m = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
man = json.load(open(blob(m["digest"])))
for l in man["layers"]:
    n = 0
    with gzip.open(blob(l["digest"])) as f:
        while True:
            b = f.read(1 << 20)
            if not b: break
            n += len(b)
    print(l["size"], n)
PY
}
layer_sizes "$lay" a >"$run/sizes-a"
layer_sizes "$lay" b >"$run/sizes-b"
[ "$(wc -l <"$run/sizes-a")" = 1 ] && [ "$(wc -l <"$run/sizes-b")" = 2 ] || die "unexpected layer counts"
a_gz=$(awk '{ print $1 }' "$run/sizes-a") a_raw=$(awk '{ print $2 }' "$run/sizes-a")
b2_gz=$(awk 'NR == 2 { print $1 }' "$run/sizes-b") b2_raw=$(awk 'NR == 2 { print $2 }' "$run/sizes-b")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

log "starting docker-registry on 127.0.0.1"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
cat >"$run/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $run/registry
http:
  addr: $addr
EOF
docker-registry serve "$run/registry.yml" >"$run/registry.log" 2>&1 &
registry=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://$addr/v2/" && break; sleep 0.1; done
curl -sf -o /dev/null "http://$addr/v2/" || { cat "$run/registry.log" >&2; die "registry did not start"; }
for tag in a b; do skopeo_ "oci:$lay:$tag" "docker://$addr/bench/app:$tag"; done
rm -rf "$lay"

log "(a) baseline: skopeo copy, umoci unpack, lazyroot publish"
R=$run/repo-base K=$run/keys-base
t "$bin" mkfs base.bench.lazyroot --repo "$R" --keys "$K" >/dev/null
drop_caches
base_copy_s=$(timed "$run/base-copy.out" skopeo --insecure-policy copy --quiet --src-tls-verify=false \
  "docker://$addr/bench/app:a" "oci:$run/pulled:a")
base_unpack_s=$(timed "$run/base-unpack.out" umoci unpack --image "$run/pulled:a" "$run/bundle")
base_publish_s=$(timed "$run/base-publish.out" "$bin" publish "$run/bundle/rootfs" --repo "$R" --keys "$K" --path /images/a)
base_s=$(awk -v a="$base_copy_s" -v b="$base_unpack_s" -v c="$base_publish_s" 'BEGIN { printf "%.3f", a + b + c }')
base_rss=$(rss_mib "$run/base-publish.out")
rm -rf "$run/bundle" "$run/pulled"

log "(b) lazyroot ingest of tag a into a fresh repository"
R2=$run/repo-ingest K2=$run/keys-ingest
t "$bin" mkfs ingest.bench.lazyroot --repo "$R2" --keys "$K2" >/dev/null
ingest_=("$bin" ingest --insecure-registry "$addr" --repo "$R2" --keys "$K2")
drop_caches
ing_a_s=$(timed "$run/ing-a.out" "${ingest_[@]}" "$addr/bench/app:a")
drop_caches
log "(c) ingest of tag b after a"
ing_b_s=$(timed "$run/ing-b.out" "${ingest_[@]}" "$addr/bench/app:b")
drop_caches
log "(d) re-ingest of tag a unchanged"
ing_a2_s=$(timed "$run/ing-a2.out" "${ingest_[@]}" "$addr/bench/app:a")
grep -q '^nothing changed' "$run/ing-a2.out" || { cat "$run/ing-a2.out" >&2; die "(d): the re-ingest published something"; }

if [ "$BIG_GIB" != 0 ]; then
  log "(e) one $BIG_GIB GiB layer: generating its files"
  big=$run/big
  t umoci init --layout "$big/layout"
  t umoci new --image "$big/layout:big"
  t umoci unpack --image "$big/layout:big" "$big/bundle" >/dev/null
  # 5000 small files (512 B to 16 KiB, half text, half random: about 40 MB), then four
  # large ones of random bytes filling the rest: gzip cannot shrink them, and each is cut
  # into ~8 MiB chunks, the path whose buffers bound ingest's memory.
  python3 - "$big/bundle/rootfs" <<'PY'
import os, random, sys
root, rnd = sys.argv[1], random.Random(12)
words = b" ".join(bytes(rnd.choice(b"abcdefghij") for _ in range(rnd.randint(2, 9))) for _ in range(200000))
for i in range(5000):
    d = os.path.join(root, "usr/share/small/d%02d" % (i % 50))
    os.makedirs(d, exist_ok=True)
    n = rnd.randint(512, 16384)
    at = rnd.randrange(len(words) - n)
    data = os.urandom(n) if i % 2 else words[at:at + n]
    open(os.path.join(d, "f%04d" % i), "wb").write(data)
PY
  small_mib=$(du -sm "$big/bundle/rootfs" | cut -f1)
  mkdir -p "$big/bundle/rootfs/opt/large"
  for i in 1 2 3 4; do
    head -c "$(((BIG_GIB * 1024 - small_mib) / 4))M" /dev/urandom >"$big/bundle/rootfs/opt/large/blob$i"
  done
  log "(e) packing it with umoci repack (gzip)"
  big_pack_s=$(timed "$run/big-pack.out" umoci repack --image "$big/layout:big" "$big/bundle")
  rm -rf "$big/bundle"
  t umoci config --image "$big/layout:big" --os linux --architecture "$(dpkg --print-architecture)" \
    --config.entrypoint /bin/sh
  layer_sizes "$big/layout" big >"$run/sizes-big"
  [ "$(wc -l <"$run/sizes-big")" = 1 ] || die "(e): the big image has $(wc -l <"$run/sizes-big") layers"
  read -r big_gz big_raw <"$run/sizes-big"
  log "(e) lazyroot ingest oci:$big/layout:big into a fresh repository"
  R3=$run/repo-big K3=$run/keys-big
  t "$bin" mkfs big.bench.lazyroot --repo "$R3" --keys "$K3" >/dev/null
  drop_caches
  ing_big_s=$(timed "$run/ing-big.out" "$bin" ingest "oci:$big/layout:big" --repo "$R3" --keys "$K3")
  rm -rf "$big" # 2 x BIG_GIB on disk otherwise until the end
fi

log "checking: ls -R of the ingested rootfs against the baseline's /images/a"
link=/$addr/bench/app:a
t "$bin" ls -l --repo "$R2" --keys "$K2" "$link" >"$run/link.ls" ||
  { cat "$run/ing-a.out" >&2; die "no $link"; }
target=$(awk '/^l .* app:a -> / { print $NF }' "$run/link.ls")
[ -n "$target" ] || { cat "$run/link.ls" >&2; die "$link is not a link"; }
rootfs=$(python3 -c 'import os, sys; print(os.path.normpath(os.path.join(os.path.dirname(sys.argv[1]), sys.argv[2])))' "$link" "$target")
hex=$(sed -nE 's/.* -> sha256:([0-9a-f]{64})$/\1/p' "$run/ing-a.out" | head -1)
[ "$rootfs" = "/.flat/${hex:0:2}/$hex/rootfs" ] || die "link $target resolves to $rootfs, not the manifest digest's /.flat/${hex:0:2}/$hex/rootfs"
# Listings with the tree's own path cut off each line's first field, .cvmfscatalog apart.
t "$bin" ls -R --repo "$R" --keys "$K" /images/a >"$run/base.lsR"
t "$bin" ls -R --repo "$R2" --keys "$K2" "$rootfs" >"$run/ing.lsR"
rel() { awk -F'\t' -v OFS='\t' -v p="$2" '$1 !~ /\/\.cvmfscatalog$/ { $1 = substr($1, length(p) + 1); print }' "$1"; }
rel "$run/base.lsR" /images/a >"$run/base.rel"
rel "$run/ing.lsR" "$rootfs" >"$run/ing.rel"
n_base=$(wc -l <"$run/base.lsR") n_ing=$(wc -l <"$run/ing.lsR")
n_base_nm=$(wc -l <"$run/base.rel") n_ing_nm=$(wc -l <"$run/ing.rel")
diff_lines=$(diff "$run/base.rel" "$run/ing.rel" | grep -c '^[<>]' || true)

echo
echo "lazyroot ingest benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r)"
echo "registry: Debian docker-registry on $addr (loopback, plain HTTP)"
echo "image a: debootstrap minbase bookworm, 1 layer, $(mb "$a_gz") MB gzip, $(mb "$a_raw") MB uncompressed"
echo "image b: a + python3, 2nd layer $(mb "$b2_gz") MB gzip, $(mb "$b2_raw") MB uncompressed"
echo
printf "%-46s %9s %9s %9s\n" "" "s" "MB/s" "peak RSS"
printf "%-46s %9.3f\n" "(a) skopeo copy docker:// -> oci:" "$base_copy_s"
printf "%-46s %9.3f\n" "(a) umoci unpack" "$base_unpack_s"
printf "%-46s %9.3f %9s %8s M\n" "(a) lazyroot publish rootfs --path /images/a" "$base_publish_s" "" "$base_rss"
printf "%-46s %9.3f %9.1f\n" "(a) baseline total" "$base_s" "$(awk -v b="$a_raw" -v s="$base_s" 'BEGIN { print b / 1e6 / s }')"
for row in "a:(b) ingest a, fresh repository:$ing_a_s:$a_raw" "b:(c) ingest b after a:$ing_b_s:$b2_raw" "a2:(d) re-ingest a, unchanged:$ing_a2_s:0"; do
  IFS=: read -r k name s raw <<<"$row"
  rate=$(awk -v b="$raw" -v s="$s" 'BEGIN { if (b > 0) printf "%.1f", b / 1e6 / s; else print "-" }')
  printf "%-46s %9.3f %9s %8s M\n" "$name" "$s" "$rate" "$(rss_mib "$run/ing-$k.out")"
done
echo "  (MB/s: over the uncompressed size of the layers that step had to read: a's layer, b's 2nd layer)"
echo
printf "%-34s %8s %8s %14s %9s %9s %8s\n" "" "layers" "reused" "bytes fetched" "obj new" "obj reuse" "ingest s"
for k in a b a2; do
  case $k in a) name="(b) ingest a" ;; b) name="(c) ingest b after a" ;; a2) name="(d) re-ingest a" ;; esac
  printf "%-34s %8s %8s %14s %9s %9s %8s\n" "$name" "$(figure "$run/ing-$k.out" 1)" "$(figure "$run/ing-$k.out" 2)" \
    "$(figure "$run/ing-$k.out" 3)" "$(figure "$run/ing-$k.out" 4)" "$(figure "$run/ing-$k.out" 5)" \
    "$(sed -nE 's/.*; ([0-9.]+) s$/\1/p' "$run/ing-$k.out")"
done
echo
echo "what lazyroot ingest printed:"
for k in a b a2; do sed 's/^/  /' "$run/ing-$k.out"; done
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
echo "ingest a vs baseline total: $(ratio "$base_s" "$ing_a_s")x faster ($base_s s vs $ing_a_s s)"
echo "ingest b after a vs baseline total for a: $(ratio "$base_s" "$ing_b_s")x faster"
echo "peak RSS: ingest a $(rss_mib "$run/ing-a.out") MiB, ingest b $(rss_mib "$run/ing-b.out") MiB, publish (baseline) $base_rss MiB"
echo
echo "check: name link $link -> $target"
echo "check: ls -R entries: baseline /images/a $n_base ($n_base_nm without .cvmfscatalog), ingested $rootfs $n_ing ($n_ing_nm without .cvmfscatalog)"
echo "check: differing ls -R lines (without .cvmfscatalog): $diff_lines; counts $([ "$n_base_nm" = "$n_ing_nm" ] && echo equal || echo DIFFER)"
if [ "$diff_lines" != 0 ]; then
  echo "first differences (< baseline, > ingest):"
  diff "$run/base.rel" "$run/ing.rel" | grep '^[<>]' | head -10 | cut -c1-200
fi
if [ "$BIG_GIB" != 0 ]; then
  echo
  echo "(e) one layer of $(mb "$big_raw") MB uncompressed ($(mb "$big_gz") MB gzip): 4 random files, 5000 small ones"
  echo "  umoci repack (building the layer, gzip): $big_pack_s s"
  printf "  lazyroot ingest oci:DIR:big, fresh repository: %.3f s, %.1f MB/s, peak RSS %s MiB\n" "$ing_big_s" \
    "$(awk -v b="$big_raw" -v s="$ing_big_s" 'BEGIN { print b / 1e6 / s }')" "$(rss_mib "$run/ing-big.out")"
  sed 's/^/  /' "$run/ing-big.out"
fi

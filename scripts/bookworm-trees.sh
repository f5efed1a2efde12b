#!/usr/bin/env bash
# The two Debian trees the real-image test and the benchmarks read, made once and kept outside
# the clone in $BENCH_DIR (default /var/tmp/lazyroot-bench) so that later runs, and CI after
# its first, do not debootstrap again:
#   $BENCH_DIR/bookworm          debootstrap --variant=minbase bookworm (about 2 minutes);
#   $BENCH_DIR/bookworm-python   a copy with python3-minimal installed by apt in a chroot
#                                (about 20 s).
# Idempotent: a tree that exists is left alone (bench-publish.sh appends lines to files of the
# first; the second is never modified by anyone, so run python from it). Each tree is built
# under a .tmp name and renamed when whole, so an interrupted run leaves no half tree behind.
# Prints the paths as shell assignments for `eval "$(bash scripts/bookworm-trees.sh)"`:
#   export LAZYROOT_BOOKWORM=... LAZYROOT_BOOKWORM_PYTHON=...
# Needs root (debootstrap, chroot, mount) and, the first time, deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/var/tmp/lazyroot-bench}
deb=$BENCH_DIR/bookworm
py=$BENCH_DIR/bookworm-python
log() { echo "bookworm-trees: $*" >&2; }
die() { log "$*"; exit 1; }
# Workloads' environment: what a container starts with (no LANG, no host variables).
run_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)

if [ ! -d "$deb" ] || [ ! -d "$py" ]; then
  [ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mount)"
  bash scripts/setup.sh debootstrap
  mkdir -p "$BENCH_DIR"
  proc_mounted=""
  trap '[ -z "$proc_mounted" ] || umount "$proc_mounted"' EXIT
  trap 'exit 130' INT TERM

  debootstrap_into() {
    timeout 1200 debootstrap --variant=minbase bookworm "$1" http://deb.debian.org/debian \
      >"$BENCH_DIR/debootstrap.log" 2>&1 || die "debootstrap failed (or took over 20 minutes), see $BENCH_DIR/debootstrap.log"
  }
  # install_python ROOT: apt-get install python3-minimal inside ROOT; fails if apt or dpkg do.
  install_python() {
    local apt=(timeout 600 "${run_env[@]}" DEBIAN_FRONTEND=noninteractive chroot "$1" apt-get -q -y)
    mount -t proc proc "$1/proc" # maintainer scripts may want /proc
    proc_mounted=$1/proc
    # The package lists debootstrap left may be stale (a superseded version 404s): update once.
    local ok=0
    { "${apt[@]}" install python3-minimal || { "${apt[@]}" update && "${apt[@]}" install python3-minimal; }; } \
      >>"$BENCH_DIR/python-tree.log" 2>&1 && "${apt[@]}" clean >>"$BENCH_DIR/python-tree.log" 2>&1 || ok=1
    umount "$proc_mounted"
    proc_mounted=""
    return $ok
  }

  if [ ! -d "$deb" ]; then
    log "debootstrap bookworm into $deb (about 2 minutes)"
    rm -rf "$deb.tmp"
    debootstrap_into "$deb.tmp"
    mv "$deb.tmp" "$deb"
  fi
  if [ ! -d "$py" ]; then
    log "making $py: bookworm + python3-minimal (about 20 s)"
    rm -rf "$py.tmp"
    : >"$BENCH_DIR/python-tree.log"
    cp -a "$deb" "$py.tmp"
    if ! install_python "$py.tmp"; then
      # bench-publish appends a line to every 100th file of $deb on each run; some are perl
      # modules and dpkg state, which breaks dpkg in a copy. Start from a fresh base then.
      log "dpkg fails in a copy of $deb (see $BENCH_DIR/python-tree.log): using a fresh debootstrap (about 2 minutes)"
      rm -rf "$py.tmp"
      debootstrap_into "$py.tmp"
      install_python "$py.tmp" || die "installing python3-minimal failed, see $BENCH_DIR/python-tree.log"
    fi
    mv "$py.tmp" "$py"
  fi
fi
printf 'export LAZYROOT_BOOKWORM=%q LAZYROOT_BOOKWORM_PYTHON=%q\n' "$deb" "$py"

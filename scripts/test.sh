#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests. Runs as root (the
# tests create device nodes, change owners, mount a small tmpfs and drop privileges).
set -euo pipefail
cd "$(dirname "$0")/.."
# attr: getfattr, an independent reader of xattrs; nginx and squid: real servers and proxies
# in front of the client; runc and busybox-static: containers run from a lazy mount; g++,
# make and python3: the Mesos module's daemon client and its tests (isolator/);
# docker-registry, umoci, skopeo, openssl and apache2-utils (htpasswd): a real registry,
# images built offline and pushed to it, a test CA, Basic-auth users (image sources); umoci's
# unpack is also the oracle of the layer tests; rsync: the real image's second layer.
bash scripts/setup.sh attr util-linux tar nginx squid runc busybox-static g++ make python3 \
  docker-registry umoci skopeo openssl apache2-utils rsync
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the tests need root (device nodes, chown, tmpfs mounts)" >&2
  exit 1
fi
# The real-image test (tests/it/provision/bookworm.rs) builds its image from a debootstrap
# bookworm tree and a copy with python3: made once (about 2.5 minutes) and kept outside the
# clone, in /var/tmp/lazyroot-bench, so later runs start at once.
eval "$(bash scripts/bookworm-trees.sh)"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The module's daemon client alone (unit tests, a mock daemon); the Rust tests then drive
# it against the real daemon.
make -C isolator clean check
cargo test --locked -- --test-threads=2

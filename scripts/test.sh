#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests. Runs as root (the
# tests create device nodes, change owners, mount a small tmpfs and drop privileges).
set -euo pipefail
cd "$(dirname "$0")/.."
# attr: getfattr, an independent reader of xattrs in the round-trip test.
bash scripts/setup.sh attr util-linux tar
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the tests need root (device nodes, chown, tmpfs mounts)" >&2
  exit 1
fi
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked -- --test-threads=2

#!/usr/bin/env bash
# Installs what building, testing and benchmarking need on a fresh Debian machine of this
# kind (root, a Rust toolchain present). Idempotent: installs only what is missing.
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2; exit 1; }

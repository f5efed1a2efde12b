#!/usr/bin/env bash
# The cache-pressure soak for long runs (issue 10): 64 readers through a real mount read
# 5.4 MB of files against a 1 MiB quota from a healthy local server, checking every byte;
# the test fails on any error or wrong byte. CI runs the same test for 8 s.
# Usage: bash scripts/soak-cache.sh [SECONDS]   (root, FUSE; default 300 s)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
LAZYROOT_SOAK_SECS=$secs cargo test --locked --test it faults::soak -- --nocapture 2>&1 |
  grep -E '^soak:|test result|panicked|failed'

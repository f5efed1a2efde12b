#!/usr/bin/env bash
# A long run of the fuzzing properties (tests/it/fuzz): each property runs fresh, randomly
# seeded batches for SECONDS (default 60), two properties at a time, and the whole run is
# killed if it outlasts that schedule by 5 minutes (a hang). Prints per area: cases tried,
# inputs refused with an error (caught), inputs accepted, and failed (1: the property broke;
# proptest's minimal failing input is in the log).
# Usage: bash scripts/fuzz-long.sh [SECONDS]   (debug test build; log in $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo test --locked --no-run --test it -q 2>/dev/null
n=$(cargo test --locked --test it -q -- fuzz:: --list 2>/dev/null | grep -c ': test$')
bound=$(((n + 1) / 2 * secs + 300))
log=$(mktemp "${TMPDIR:-/tmp}/fuzz-long.XXXXXX.log")
echo "fuzz-long: $n tests (properties and their regression tests), ${secs}s per property, 2 at a time; at most ${bound}s; log $log"
start=$(date +%s)
set +e
LAZYROOT_FUZZ_SECONDS=$secs timeout "$bound" \
  cargo test --locked --test it -- fuzz:: --test-threads=2 --nocapture >"$log" 2>&1
rc=$?
set -e
echo "wall time: $(($(date +%s) - start))s, exit status $rc"
[ "$rc" = 124 ] && echo "fuzz-long: TIMED OUT: a property hung (see which have no tally below)"
printf '%-26s %10s %10s %10s %7s\n' area tried caught accepted failed
grep -o 'fuzz-tally .*' "$log" | sort | while read -r _ area tried caught accepted failed _; do
  printf '%-26s %10s %10s %10s %7s\n' "${area#area=}" "${tried#tried=}" "${caught#caught=}" \
    "${accepted#accepted=}" "${failed#failed=}"
done
grep -o 'fuzz-tally .*' "$log" | awk '{ for (i = 3; i <= 6; i++) { split($i, kv, "="); t[i] += kv[2] } }
  END { printf "%-26s %10d %10d %10d %7d\n", "total", t[3], t[4], t[5], t[6] }'
grep -E '^test fuzz::.*(FAILED|ok)$' "$log" | grep -c ' ok$' | xargs echo "tests passed:"
if grep -q '^fuzz .*: Test failed' "$log" || [ "$rc" != 0 ]; then
  grep -E 'panicked at|^fuzz .*: ' "$log" || true
  exit 1
fi

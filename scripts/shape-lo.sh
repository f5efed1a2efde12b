#!/usr/bin/env bash
# Shapes what servers on loopback send, for benchmarks: tc htb at RATE on the given source
# ports; all other loopback traffic is unclassified and bypasses htb.
#   shape-lo.sh up RATE PORT...     (fails if lo already has a root qdisc)
#   shape-lo.sh down
# burst >= 256kb: lo's MTU is 64 KiB (and the one class's quantum is set to that, which also
# keeps tc from warning that rate/r2q is too big). Latency comes from delay-relay.py.
set -euo pipefail
case "${1:-}" in
up)
  rate=$2
  shift 2
  tc qdisc add dev lo root handle 1: htb ||
    { echo "shape-lo: cannot add a root qdisc on lo (is something else shaping it?)" >&2; exit 1; }
  tc class add dev lo parent 1: classid 1:1 htb rate "$rate" ceil "$rate" burst 256kb cburst 256kb quantum 65536
  for p in "$@"; do
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$p" 0xffff flowid 1:1
  done
  ;;
down) tc qdisc del dev lo root ;;
*) echo "usage: shape-lo.sh up RATE PORT... | down" >&2; exit 2 ;;
esac

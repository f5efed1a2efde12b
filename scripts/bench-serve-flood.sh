#!/usr/bin/env bash
# New clients under a bounded flood (issue 10): SLOW slow-loris clients (part of a request
# head, then nothing) and IDLE keep-alive clients (one answer, then nothing), from
# 127.0.0.2-250, then PROBES new clients from 127.0.0.1, each timed for a full manifest GET
# (scripts/flood-client.py). Against `lazyroot serve` with its defaults and, as the
# yardstick, nginx (one worker, 4096 connections: lazyroot's default cap) in the same run.
# Usage: bash scripts/bench-serve-flood.sh   (root for nginx's packages; ~2 minutes;
#        work in /var/tmp/lazyroot-bench/flood; SLOW=1100 IDLE=10000 PROBES=20;
#        BIN=path/to/lazyroot to measure another build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh nginx
cargo build --release --locked -q
bin=${BIN:-$PWD/target/release/lazyroot}
w=/var/tmp/lazyroot-bench/flood
fqrn=flood.bench.lazyroot
SLOW=${SLOW:-1100} IDLE=${IDLE:-10000} PROBES=${PROBES:-20}
# The flood holds a descriptor per client; both servers raise their own limits.
ulimit -n "$(ulimit -Hn)"
rm -rf "${w:?}" && mkdir -p "$w/tree"
echo "NAME=flood" >"$w/tree/os-release"
"$bin" mkfs "$fqrn" --repo "$w/repo" --keys "$w/keys" >/dev/null
"$bin" publish "$w/tree" --repo "$w/repo" --keys "$w/keys" >/dev/null
chmod -R a+rX "$w"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
flood() { python3 scripts/flood-client.py "$1" "/cvmfs/$fqrn/.cvmfspublished" "$SLOW" "$IDLE" "$PROBES"; }

echo "== lazyroot serve (defaults)"
serve_repo "$w/repo" "$w/serve.log"
port=${url#http://127.0.0.1:}
port=${port%%/*}
flood "$port"
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true

echo "== nginx (1 worker, worker_connections 4096)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$w/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; worker_rlimit_nofile 20000;
pid $w/nginx.pid; error_log $w/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $w; proxy_temp_path $w;
  fastcgi_temp_path $w; uwsgi_temp_path $w; scgi_temp_path $w;
  server { listen 127.0.0.1:$port; location /cvmfs/$fqrn/ { alias $w/repo/; } } }
EOF
nginx -c "$w/nginx.conf" -e "$w/nginx-error.log" &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
flood "$port"

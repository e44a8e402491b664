#!/usr/bin/env bash
# Instructions per request in Tether's own process, for one or more builds, the same way each:
# plain HTTP GET /rr over two kept-alive fixed-response backends, `--workers 1`, wrk -t1 -c1 for
# 10 s after a 2 s warm-up, counted by callgrind from a dump taken after the warm-up. Counts
# instructions, not time, so the figure repeats on a busy or drifting VM (to about 0.05%).
#
#   bench/callgrind.sh target/release/tether /tmp/old/tether     # one line per binary
#   bench/callgrind.sh --rate-limit target/release/tether        # the route behind a rate limit
#                                                                 # that never triggers
#
# Needs valgrind and wrk (installed when missing) and target/release/tether-bench-backend
# (built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in valgrind wrk; do
  command -v "$t" >/dev/null || { apt-get update -q >&2 && apt-get install -y -q "$t" >&2; }
done
[ -x target/release/tether-bench-backend ] || cargo build --release -q -p tether-bench
route_extra=""
if [ "${1:-}" = "--rate-limit" ]; then
  shift
  # 100,000 a second per client, as many at once: wrk -c1 under callgrind never reaches it.
  route_extra=$'middlewares = ["rl"]\n[middlewares.rl.rate_limit]\naverage = 100000\nburst = 100000'
fi
(( $# )) || set -- target/release/tether
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
target/release/tether-bench-backend 127.0.0.1:19301 a & target/release/tether-bench-backend 127.0.0.1:19302 b &
cat >"$work/tether.toml" <<TOML
[entrypoints]
web = "127.0.0.1:19300"
[affinity]
key = "bench-affinity-key-0123456789abcdef0123456789"
[routes.rr]
rule = "PathPrefix(\`/\`)"
service = "rr"
$route_extra
[services.rr]
servers = [{ name = "a", url = "http://127.0.0.1:19301" }, { name = "b", url = "http://127.0.0.1:19302" }]
TOML
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
wait_port 19301; wait_port 19302
for bin in "$@"; do
  out="$work/cg.out"
  rm -f "$out"*
  valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no --collect-atstart=yes \
    "$bin" --workers 1 --log warn run --config "$work/tether.toml" --state-dir "$work" 2>"$work/vg.log" &
  vg=$!
  wait_port 19300
  wrk -t1 -c1 -d2s http://127.0.0.1:19300/rr >/dev/null        # warm-up
  callgrind_control -z "$vg" >/dev/null 2>&1                         # count from here
  reqs="$(wrk -t1 -c1 -d10s http://127.0.0.1:19300/rr | awk '/requests in/ {print $1}')"
  callgrind_control -d "$vg" >/dev/null 2>&1
  kill "$vg"; wait "$vg" 2>/dev/null || true
  dump="$(ls -t "$out".* 2>/dev/null | head -1)"
  ir="$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')"
  echo "$bin: $reqs requests, $((ir / reqs)) instructions per request"
done

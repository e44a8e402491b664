#!/usr/bin/env bash
# System calls per request at saturation, per proxy: how often each one waits for events
# (`epoll_wait`/`epoll_pwait`), how often it is switched out, and its reads and writes.
#
# Each proxy runs one worker (--workers N: N; HAProxy's nbthread, NGINX's worker_processes with
# reuseport) pinned to core 0 inside a cgroup (v1) held to QUOTA of a core
# (default 0.25, a 10 ms period, as bench/saturated.py does), so that the proxy, not wrk, is the
# bottleneck; wrk (-c50, kept-alive GET /rr) and the two fixed-response backends run on core 1.
# `perf stat` counts the system call tracepoints of the proxy's processes while wrk runs.
#
#   bench/wakeups.sh                         # tether, haproxy, nginx; 10 s each
#   bench/wakeups.sh --quota 0.5 --duration 5 tether
#   TETHER=/tmp/old/tether bench/wakeups.sh tether   # another build
#
# Needs root (the cgroup), perf with tracepoints, wrk, haproxy, nginx and a release build
# (target/release/tether and tether-bench-backend).
set -euo pipefail
ulimit -n 65536 2>/dev/null || true
cd "$(dirname "$0")/.."
quota=0.25
duration=10
workers=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quota) quota="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    *) break ;;
  esac
done
(( $# )) || set -- tether haproxy nginx
tether="${TETHER:-target/release/tether}"
backend=target/release/tether-bench-backend
for t in perf wrk; do command -v "$t" >/dev/null || { echo "wakeups.sh: needs $t" >&2; exit 1; }; done
[ -x "$tether" ] && [ -x "$backend" ] || { echo "wakeups.sh: build first: cargo build --release -p tether -p tether-bench" >&2; exit 1; }

work="$(mktemp -d)"
group=/sys/fs/cgroup/cpu/tether-wakeups
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  [ -d "$group" ] && { for p in $(cat "$group/tasks" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; sleep 0.2; rmdir "$group" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$group"
echo 10000 > "$group/cpu.cfs_period_us"
echo "$(python3 -c "print(int($quota * 10000))")" > "$group/cpu.cfs_quota_us"

taskset -c 1 "$backend" 127.0.0.1:19101 a & taskset -c 1 "$backend" 127.0.0.1:19102 b &

cat >"$work/tether.toml" <<'TOML'
[entrypoints]
web = "127.0.0.1:18080"
[affinity]
key = "bench-affinity-key-0123456789abcdef0123456789"
[routes.rr]
rule = "PathPrefix(`/`)"
service = "rr"
[services.rr]
servers = [{ name = "a", url = "http://127.0.0.1:19101" }, { name = "b", url = "http://127.0.0.1:19102" }]
TOML
cat >"$work/haproxy.cfg" <<CFG
global
    nbthread $workers
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend web
    bind 127.0.0.1:18080
    default_backend rr
backend rr
    balance roundrobin
    server a 127.0.0.1:19101
    server b 127.0.0.1:19102
CFG
cat >"$work/nginx.conf" <<CFG
worker_processes $workers;
daemon off;
pid $work/nginx.pid;
error_log /dev/null crit;
events { worker_connections 10000; }
http {
    access_log off;
    upstream rr { server 127.0.0.1:19101; server 127.0.0.1:19102; keepalive 100; }
    server {
        listen 127.0.0.1:18080 reuseport;
        location / { proxy_pass http://rr; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CFG

printf '%-8s %9s %10s %12s %10s %10s %10s\n' proxy "req/s" epoll_wait "ctx switches" reads writes syscalls
for proxy in "$@"; do
  case "$proxy" in
    tether) cmd=("$tether" --log error --workers "$workers" run --config "$work/tether.toml" --state-dir "$work/state") ;;
    haproxy) cmd=(haproxy -db -f "$work/haproxy.cfg") ;;
    nginx) cmd=(nginx -c "$work/nginx.conf" -e /dev/null) ;;
    *) echo "wakeups.sh: unknown proxy $proxy" >&2; exit 1 ;;
  esac
  taskset -c 0 "${cmd[@]}" &
  pid=$!
  for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18080/rr && break; sleep 0.1; done
  pids="$(pgrep -d, -P "$pid" || true)"
  pids="$pid${pids:+,$pids}"
  for p in ${pids//,/ }; do echo "$p" > "$group/tasks"; for t in /proc/"$p"/task/*; do echo "${t##*/}" > "$group/tasks"; done; done
  taskset -c 1 wrk -t1 -c50 -d1s http://127.0.0.1:18080/rr >/dev/null
  perf stat -x, -o "$work/perf" -p "$pids" \
    -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,context-switches \
    -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv \
    -e syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,raw_syscalls:sys_enter \
    -- sleep "$((duration + 1))" &
  perfpid=$!
  sleep 0.5
  out="$(taskset -c 1 wrk -t1 -c50 -d"${duration}s" http://127.0.0.1:18080/rr)"
  wait "$perfpid"
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  count() { awk -F, -v e="$1" '$3 ~ e {s += $1} END {print s + 0}' "$work/perf"; }
  per() { python3 -c "print(f'{$1 / $requests:.3f}')"; }
  epoll=$(( $(count 'epoll_wait$') + $(count 'epoll_pwait$') ))
  printf '%-8s %9.0f %10s %12s %10s %10s %10s\n' "$proxy" "$rps" "$(per "$epoll")" \
    "$(per "$(count context-switches)")" \
    "$(per $(( $(count recvfrom) + $(count 'sys_enter_read$') + $(count readv) )))" \
    "$(per $(( $(count sendto) + $(count 'sys_enter_write$') + $(count writev) )))" \
    "$(per "$(count raw_syscalls)")"
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  sleep 0.5
done
echo "(per request, over the $duration s wrk run; proxy at $quota of core 0, $workers worker(s))"

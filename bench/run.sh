#!/usr/bin/env bash
# Tether beside HAProxy and NGINX, interleaved, on this machine. Installs what is missing
# (haproxy, nginx, wrk, matplotlib), builds Tether and the fixed-response backend in release mode,
# then runs bench/run.py (plain and HTTPS scenarios, one ECDSA P-256 certificate for all) with the arguments given (see `bench/run.sh --help`), or with `--scale`
# bench/scale.py (10,000-route swaps under load, idle connections, startup, binary size).
# Results: bench/out/results.{md,json}, bench/out/chart.png, bench/out/scale.json.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for t in haproxy nginx wrk taskset openssl; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
  pkgs=()
  for t in "${missing[@]}"; do
    case $t in nginx) pkgs+=(nginx-light) ;; taskset) pkgs+=(util-linux) ;; *) pkgs+=("$t") ;; esac
  done
  echo "bench: installing ${pkgs[*]}" >&2
  apt-get update -q >&2 && apt-get install -y -q "${pkgs[@]}" >&2
fi
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib >&2 || echo "bench: no matplotlib, no chart" >&2
echo "bench: building release binaries" >&2
cargo build --release -q -p tether -p tether-bench
if [[ ${1:-} == --scale ]]; then
  shift
  exec python3 bench/scale.py "$@"
fi
exec python3 bench/run.py "$@"

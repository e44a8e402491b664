#!/usr/bin/env python3
"""Scale figures, beside HAProxy and NGINX where they compare:

- swap: Tether serving a table of 10,000 routes under keep-alive load while the file is rewritten
  (each version drops one route and adds one); reports the control plane's time to merge,
  validate, compile and swap (from its log), the time from the write to the new route answering
  (which includes the file watcher's 50 ms settle and parsing), and the requests that failed;
- idle: memory of each proxy holding ~10,000 idle keep-alive client connections;
- startup: time from exec to the first proxied 200 (and for Tether with 10,000 routes), and the
  size of the Tether binary.

Run it through `bench/run.sh --scale`, which installs the tools and builds Tether first.
"""

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the same proxies, ports, backends and helpers)

ROUTES = 10_000
SERVICES = 1_000


def big_config(version, port):
    """A tether.toml of ROUTES routes over SERVICES services, plus a stable route under load and
    a marker route that only this version has."""
    out = [f'[entrypoints]\nweb = "127.0.0.1:{port}"\n',
           '[affinity]\nkey = "bench-affinity-key-0123456789abcdef0123456789"\n',
           '[routes.stable]\nrule = "PathPrefix(`/stable`)"\nservice = "stable"\n',
           f'[routes.marker]\nrule = "Host(`marker-{version}.example.com`)"\nservice = "stable"\n']
    a, b = bench.BACKENDS
    servers = (f'servers = [{{ name = "a", url = "http://127.0.0.1:{a}" }}, '
               f'{{ name = "b", url = "http://127.0.0.1:{b}" }}]\n')
    out.append("[services.stable]\n" + servers)
    for i in range(version, version + ROUTES):
        out.append(f'[routes.r{i}]\nrule = "Host(`svc-{i % SERVICES}.example.com`) && '
                   f'PathPrefix(`/api/v{i}`)"\nservice = "s{i % SERVICES}"\n')
    for s in range(SERVICES):
        out.append(f"[services.s{s}]\n" + servers)
    return "\n".join(out)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def status(port, host, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def wait_status(port, host, want, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if status(port, host) == want:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{host} never answered {want}")


def swap(args, tmp):
    port = bench.PORTS["tether"]
    cfg = os.path.join(tmp, "big.toml")
    write(cfg, big_config(0, port))
    logf = open(os.path.join(tmp, "tether.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", args.proxy_core, args.tether, "--log", "info",
                          "--workers", "1", "run", "--config", cfg, "--state-dir", tmp],
                         stdout=subprocess.DEVNULL, stderr=logf)
    try:
        bench.wait_port(port, 30)
        bench.wait_http(port, "/stable", 30)
        startup = time.monotonic() - t0
        load = subprocess.Popen(["taskset", "-c", args.load_core, "wrk", "--latency", "-t1",
                                 "-c50", f"-d{args.swaps + 3}s",
                                 f"http://127.0.0.1:{port}/stable"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        e2e = []
        for v in range(1, args.swaps + 1):
            text = big_config(v, port)
            w = time.monotonic()
            write(cfg, text)
            e2e.append((wait_status(port, f"marker-{v}.example.com", 200) - w) * 1e3)
            if status(port, f"marker-{v - 1}.example.com") != 404:
                raise RuntimeError(f"version {v}: the previous marker route is still served")
            time.sleep(0.5)
        out, _ = load.communicate()
        r = bench.parse_wrk(out)
    finally:
        p.terminate()
        p.wait()
        logf.close()
    with open(os.path.join(tmp, "tether.log")) as f:
        took = [float(m) for m in re.findall(r"took_ms=([\d.]+)", f.read())]
    return dict(routes=ROUTES + 2, services=SERVICES + 1, swaps=args.swaps,
                startup_ms=startup * 1e3, compile_swap_ms=took[1:],
                write_to_served_ms=e2e, load=r)


def idle(name, conns, args, tmp):
    p = bench.Proxy(name, 1, args.proxy_core, {"tether": args.tether}, tmp)
    p.start("/rr")
    try:
        port = bench.PORTS[name]
        p.pids = bench.proc_tree(p.proc.pid)
        base = bench.memory_kib(p.pids, "VmRSS")
        socks = []
        req = b"GET /rr HTTP/1.1\r\nHost: bench\r\n\r\n"
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf or not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError(f"{name} closed a connection")
                buf += chunk
            socks.append(s)
        time.sleep(1)
        held = bench.memory_kib(p.pids, "VmRSS")
        alive = sum(1 for s in socks if alive_socket(s))
        for s in socks:
            s.close()
        return dict(connections=conns, alive=alive, rss_before_kib=base, rss_kib=held,
                    per_connection_bytes=(held - base) * 1024 / conns)
    finally:
        p.stop()


def alive_socket(s):
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def startup(name, args, tmp, rounds=5):
    times = []
    for _ in range(rounds):
        p = bench.Proxy(name, 1, args.proxy_core, {"tether": args.tether}, tmp)
        t0 = time.monotonic()
        p.start("/rr")
        times.append((time.monotonic() - t0 - 0.2) * 1e3)  # start() waits 0.2 s for NGINX
        p.stop()
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--idle", type=int, default=9_900,
                    help="idle connections (HAProxy's maxconn is 9,990 under this machine's "
                         "20,000 open-file limit)")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "bench", "out"))
    ap.add_argument("--tether", default=os.path.join(bench.ROOT, "target", "release", "tether"))
    ap.add_argument("--backend", default=os.path.join(bench.ROOT, "target", "release",
                                                      "tether-bench-backend"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="tether-scale-")
    backends = [subprocess.Popen(["taskset", "-c", args.load_core, args.backend,
                                  f"127.0.0.1:{port}", n]) for port, n in zip(bench.BACKENDS, "ab")]
    try:
        for port in bench.BACKENDS:
            bench.wait_port(port)
        result = {"swap": swap(args, tmp)}
        result["idle"] = {n: idle(n, args.idle, args, tmp) for n in bench.PROXIES}
        result["startup_ms"] = {n: startup(n, args, tmp) for n in bench.PROXIES}
        size = os.path.getsize(args.tether)
        stripped = os.path.join(tmp, "tether-stripped")
        subprocess.run(["strip", "-o", stripped, args.tether], check=True)
        result["binary_bytes"] = dict(as_built=size, stripped=os.path.getsize(stripped))
    finally:
        for b in backends:
            b.terminate()
    with open(os.path.join(args.out, "scale.json"), "w") as f:
        json.dump(result, f, indent=1)
    s = result["swap"]
    cs, e2e = s["compile_swap_ms"], s["write_to_served_ms"]
    print(f"swap: {s['routes']:,} routes, {s['swaps']} rewrites under load; "
          f"merge+validate+compile+swap median {statistics.median(cs):.1f} ms, max {max(cs):.1f} ms; "
          f"write to new route served median {statistics.median(e2e):.1f} ms, max {max(e2e):.1f} ms "
          f"(50 ms of it the watcher's settle); {s['load']['requests']:,} requests, "
          f"{s['load']['errors']} failed, p99 {s['load']['p99_ms']:.2f} ms; "
          f"startup with the table {s['startup_ms']:.0f} ms")
    for n, i in result["idle"].items():
        print(f"idle: {n:8} {i['alive']:,}/{i['connections']:,} connections held, RSS "
              f"{i['rss_before_kib']:,} -> {i['rss_kib']:,} KiB "
              f"({i['per_connection_bytes']:,.0f} bytes per connection)")
    for n, ms in result["startup_ms"].items():
        print(f"startup: {n:8} {ms:.0f} ms to the first proxied 200")
    b = result["binary_bytes"]
    print(f"binary: {b['as_built'] / 1e6:.1f} MB as built (line tables), "
          f"{b['stripped'] / 1e6:.1f} MB stripped")
    print(f"JSON: {os.path.join(args.out, 'scale.json')}")


if __name__ == "__main__":
    main()

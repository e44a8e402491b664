#!/usr/bin/env python3
"""TCP routing: Tether beside HAProxy (`mode tcp`) and NGINX (`stream`), interleaved rounds.

Two figures per proxy and round (configs: bench/configs/tcp-*):
  bulk      one connection sends --bytes (1 GiB) through the proxy to a sink; the proxy's own CPU
            seconds (utime + stime from /proc) per GiB, and the throughput. The proxy runs on its
            core, the sender and the sink on the other.
  connect   new connections per second, each sending 4 bytes and reading them back, from
            --concurrency loops for --seconds, the proxy held to --quota of a core by a cgroup
            (cgroup v1 cpu controller, as bench/saturated.py), so that the proxy is the
            bottleneck at an equal CPU budget.
Each round also measures the machine: the same bulk transfer and connect loop straight to the
sink, without a proxy. Medians, their spread, and paired ratios (Tether over the other proxy in
the same round) are printed; JSON goes to bench/out/tcp.json.

  bench/run.sh builds the release binaries; then: python3 bench/tcp.py --rounds 3
"""

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (proc_tree, cpu_seconds, wait_port, log)

ROOT = run.ROOT
PORTS = {"tether": 17080, "haproxy": 17081, "nginx": 17082}
SINK = 19201
CGROUP = "/sys/fs/cgroup/cpu"
PROXIES = ["tether", "haproxy", "nginx"]


def render(name, tmp, port):
    with open(os.path.join(run.CONFIGS, name)) as f:
        text = f.read()
    for k, v in dict(port=port, backend=SINK, dir=tmp).items():
        text = text.replace("{" + k + "}", str(v))
    out = os.path.join(tmp, name)
    with open(out, "w") as f:
        f.write(text)
    return out


class Proxy:
    def __init__(self, name, bins, tmp, core):
        self.name, self.bins, self.core = name, bins, core
        self.tmp = tempfile.mkdtemp(prefix=f"tcp-{name}-", dir=tmp)
        self.port = PORTS[name]
        self.proc = None
        self.group = None

    def command(self):
        if self.name == "tether":
            cfg = render("tcp-tether.toml", self.tmp, self.port)
            return [self.bins["tether"], "--log", "warn", "--workers", "1", "run", "--config",
                    cfg, "--state-dir", self.tmp]
        if self.name == "haproxy":
            return ["haproxy", "-db", "-f", render("tcp-haproxy.cfg", self.tmp, self.port)]
        return ["nginx", "-p", self.tmp, "-c", render("tcp-nginx.conf", self.tmp, self.port)]

    def start(self, quota=None):
        self.proc = subprocess.Popen(["taskset", "-c", self.core] + self.command(),
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.tmp, "stderr"), "w"),
                                     start_new_session=True)
        run.wait_port(self.port)
        time.sleep(0.3)  # NGINX's worker starts after the master binds
        self.pids = run.proc_tree(self.proc.pid)
        if quota:
            self.group = os.path.join(CGROUP, f"tether-bench-tcp-{self.name}")
            os.makedirs(self.group, exist_ok=True)
            with open(os.path.join(self.group, "cpu.cfs_period_us"), "w") as f:
                f.write("10000")
            with open(os.path.join(self.group, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(int(quota * 10000)))
            for pid in self.pids:
                with open(os.path.join(self.group, "cgroup.procs"), "w") as f:
                    f.write(str(pid))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def tool(bins, core, *args):
    out = subprocess.run(["taskset", "-c", core, bins["tcp"], *map(str, args)], check=True,
                         capture_output=True, text=True)
    return out.stdout.split()


def bulk(bins, port, args):
    return float(tool(bins, args.load_core, "send", f"127.0.0.1:{port}", args.bytes)[0])


def connect(bins, port, args):
    rate, errors = tool(bins, args.load_core, "connect", f"127.0.0.1:{port}", args.seconds,
                        args.concurrency)
    return float(rate), int(errors)


def one(name, bins, tmp, args):
    r = {}
    p = Proxy(name, bins, tmp, args.proxy_core)
    p.start()
    try:
        bulk(bins, p.port, argparse.Namespace(**{**vars(args), "bytes": 64 << 20}))  # warm-up
        before = run.cpu_seconds(p.pids)
        secs = bulk(bins, p.port, args)
        after = run.cpu_seconds(p.pids)
        gib = args.bytes / (1 << 30)
        r["bulk_cpu_s_per_gib"] = (after[1] - before[1]) / gib
        r["bulk_user_s_per_gib"] = (after[0] - before[0]) / gib
        r["bulk_gib_per_s"] = gib / secs
        r["rss_kib"] = run.memory_kib(p.pids)
    finally:
        p.stop()
    p = Proxy(name, bins, tmp, args.proxy_core)
    p.start(quota=args.quota)
    try:
        connect(bins, p.port, argparse.Namespace(**{**vars(args), "seconds": 1}))  # warm-up
        r["conn_per_s"], r["conn_errors"] = connect(bins, p.port, args)
    finally:
        p.stop()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--quota", type=float, default=0.25, help="of a core, for the connect test")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "tcp.json"))
    args = ap.parse_args()
    if not os.path.isdir(CGROUP):
        sys.exit(f"no {CGROUP}: the connect test needs the cgroup v1 cpu controller (and root)")
    target = os.path.join(ROOT, "target", "release")
    bins = dict(tether=os.path.join(target, "tether"), tcp=os.path.join(target, "tether-bench-tcp"))
    proxies = args.proxies.split(",")
    tmp = tempfile.mkdtemp(prefix="tether-bench-tcp-")
    sink = subprocess.Popen(["taskset", "-c", args.load_core, bins["tcp"], "sink",
                             f"127.0.0.1:{SINK}"], start_new_session=True)
    runs = {p: [] for p in proxies}
    machine = []
    try:
        run.wait_port(SINK)
        for rnd in range(args.rounds):
            base = dict(bulk_gib_per_s=(args.bytes / (1 << 30)) / bulk(bins, SINK, args),
                        conn_per_s=connect(bins, SINK, args)[0])
            machine.append(base)
            run.log(f"round {rnd + 1}: machine {base['bulk_gib_per_s']:.2f} GiB/s, "
                    f"{base['conn_per_s']:,.0f} conn/s without a proxy")
            order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
            for name in order:
                r = one(name, bins, tmp, args)
                runs[name].append(r)
                run.log(f"  {name}: {r['bulk_cpu_s_per_gib']:.3f} CPU s/GiB "
                        f"({r['bulk_gib_per_s']:.2f} GiB/s), {r['conn_per_s']:,.0f} conn/s at "
                        f"{args.quota} core ({r['conn_errors']} errors)")
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait()
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    summary = {p: {k: med([r[k] for r in rs]) for k in rs[0]} for p, rs in runs.items() if rs}
    paired = {}
    for other in proxies:
        if other == "tether" or "tether" not in runs:
            continue
        for k in ("bulk_cpu_s_per_gib", "conn_per_s"):
            paired[f"{k} tether/{other}"] = med([a[k] / b[k] for a, b in zip(runs["tether"], runs[other]) if b[k]])
    lines = [f"TCP bench {datetime.date.today()}, {args.rounds} rounds; {args.bytes / (1 << 30):g} GiB "
             f"bulk, connect at {args.quota} core, {args.concurrency} loops, {args.seconds} s",
             "machine (no proxy): " + ", ".join(
                 f"{k} median {med([m[k] for m in machine]):,.2f} "
                 f"({min(m[k] for m in machine):,.2f}–{max(m[k] for m in machine):,.2f})"
                 for k in machine[0]),
             "| proxy | CPU s/GiB | user s/GiB | GiB/s | conn/s | RSS MiB |", "|---|---|---|---|---|---|"]
    for p, s in summary.items():
        lines.append(f"| {p} | {s['bulk_cpu_s_per_gib']:.3f} | {s['bulk_user_s_per_gib']:.3f} | "
                     f"{s['bulk_gib_per_s']:.2f} | {s['conn_per_s']:,.0f} | {s['rss_kib'] / 1024:.1f} |")
    lines += [f"{k}: {v:.3f}" for k, v in paired.items()]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(args=vars(args), machine=machine, runs=runs, summary=summary,
                       paired=paired), f, indent=1)


if __name__ == "__main__":
    main()

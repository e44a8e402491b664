#!/usr/bin/env python3
"""The saturated scenario: each proxy held to the same CPU quota by a cgroup, so that the proxy,
not the load generator, is the bottleneck; the figure is requests per second at that quota.

On this machine (cgroup v1, no systemd) each proxy's processes are moved into a group of their
own under /sys/fs/cgroup/cpu/ with cpu.cfs_period_us = 10 ms and cpu.cfs_quota_us = the quota
(half a core by default): a short period keeps the throttling fine-grained. wrk and the backends
run unthrottled on the other core.

Variants of Tether, all with the same routes as bench/configs/tether.toml:
  tether      this build, its counters on, /metrics scraped every second
  tether-log  this build, as above, plus JSON access logs to a file
  tether-base another build (--base PATH: the commit before the counters), no scrape
  tether-quiet this build, no admin listener and no scrape (what the counters alone cost)
beside HAProxy and NGINX. Rounds interleave the proxies (the order turns each round), and the
paired ratios (one proxy over another in the same round) are what to go by on a VM whose speed
drifts.

With --together, the Tether variants of a round run at the same time instead, each in its own
group with the same quota, on its own ports, each under its own wrk: the VM's drift then hits
them alike, which sequential rounds cannot promise (the speed of this VM moves by 10% within a
minute). The proxy core must hold all of their quotas (two variants at 0.45 of a core each, say).

  bench/saturated.py --base /path/to/old/tether --rounds 5
Results: bench/out/saturated.{md,json}.
"""

import argparse
import datetime
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the interleaved harness: proxies, wrk, backends)

CGROUP = "/sys/fs/cgroup/cpu"
ADMIN_PORT = 18091


class Limited(run.Proxy):
    """A proxy whose processes live in a CPU-limited cgroup of their own."""

    def __init__(self, variant, quota_us, period_us, bins, tmp, cores, slot=0):
        base = "tether" if variant.startswith("tether") else variant
        super().__init__(base, 1, cores, bins, tmp)
        self.variant = variant
        # Variants that run together each take ports of their own.
        self.port = run.PORTS[base] + 100 * slot
        self.admin_port = ADMIN_PORT + slot
        self.group = os.path.join(CGROUP, f"tether-bench-{variant}")
        os.makedirs(self.group, exist_ok=True)
        with open(os.path.join(self.group, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period_us))
        with open(os.path.join(self.group, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(quota_us))
        self.scraper = None
        self.stop_scrape = threading.Event()
        self.scrapes = 0

    def command(self):
        if self.name != "tether":
            return super().command()
        cfg = run.render("tether.toml", 1, self.tmp)
        binary = self.bins["tether-base"] if self.variant == "tether-base" else self.bins["tether"]
        if self.port != run.PORTS["tether"]:
            with open(cfg) as f:
                text = f.read().replace(f"127.0.0.1:{run.PORTS['tether']}", f"127.0.0.1:{self.port}")
            with open(cfg, "w") as f:
                f.write(text)
        if self.variant in ("tether", "tether-log"):
            with open(cfg, "a") as f:
                f.write(f'\n[admin]\naddress = "127.0.0.1:{self.admin_port}"\n')
        cmd = [binary, "--log", "warn", "--workers", "1", "run", "--config", cfg,
               "--state-dir", self.tmp]
        if self.variant == "tether-log":
            cmd += ["--access-log", "json", "--access-log-file", os.path.join(self.tmp, "access.log")]
        return cmd

    def start(self, path):
        if self.port == run.PORTS[self.name]:
            super().start(path)
        else:
            saved = run.PORTS[self.name]
            run.PORTS[self.name] = self.port
            try:
                super().start(path)
            finally:
                run.PORTS[self.name] = saved
        for pid in self.pids:
            with open(os.path.join(self.group, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        if self.variant in ("tether", "tether-log"):
            self.scraper = threading.Thread(target=self.scrape, daemon=True)
            self.scraper.start()

    def scrape(self):
        """GET /metrics once a second, as Prometheus would."""
        while not self.stop_scrape.wait(1.0):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
                c.request("GET", "/metrics")
                body = c.getresponse().read()
                c.close()
                if b"tether_service_requests_total" in body:
                    self.scrapes += 1
            except OSError:
                pass

    def stop(self):
        self.stop_scrape.set()
        if self.scraper:
            self.scraper.join(3)
        super().stop()
        throttled = None
        try:
            with open(os.path.join(self.group, "cpu.stat")) as f:
                stat = dict(line.split() for line in f)
                throttled = int(stat.get("nr_throttled", 0))
        except OSError:
            pass
        self.throttled = throttled


def one(variant, sc, args, bins, tmp):
    p = Limited(variant, args.quota_us, args.period_us, bins, tmp, args.proxy_core)
    p.start(sc["path"])
    try:
        port = run.PORTS[p.name]
        run.wrk(port, sc, args.warmup, args.load_core)
        r = run.wrk(port, sc, args.duration, args.load_core)
        if p.proc.poll() is not None:
            raise RuntimeError(f"{variant} exited")
        r["scrapes"] = p.scrapes
    finally:
        p.stop()
    r["throttled_periods"] = p.throttled
    return r


def together(variants, sc, args, bins, tmp):
    """One round of `variants` at the same time: each started in its group, then one wrk each,
    all at once; the results in the order of `variants`."""
    ps = [Limited(v, args.quota_us, args.period_us, bins, tmp, args.proxy_core, slot=i)
          for i, v in enumerate(variants)]
    started = []
    try:
        for p in ps:
            p.start(sc["path"])
            started.append(p)
        results = [None] * len(ps)

        def load(i, p):
            run.wrk(p.port, sc, args.warmup, args.load_core)
            results[i] = run.wrk(p.port, sc, args.duration, args.load_core)

        threads = [threading.Thread(target=load, args=(i, p)) for i, p in enumerate(ps)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p, r in zip(ps, results):
            if p.proc.poll() is not None or r is None:
                raise RuntimeError(f"{p.variant} exited or its load failed")
            r["scrapes"] = p.scrapes
    finally:
        for p in started:
            p.stop()
    for p, r in zip(ps, results):
        r["throttled_periods"] = p.throttled
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quota-us", type=int, default=5000, help="CPU time per period (5000 of 10000: half a core)")
    ap.add_argument("--period-us", type=int, default=10000)
    ap.add_argument("--proxies", default="tether,tether-log,tether-base,haproxy,nginx")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--tether", default=os.path.join(run.ROOT, "target", "release", "tether"))
    ap.add_argument("--base", help="the Tether build to compare with (the commit before the counters)")
    ap.add_argument("--backend", default=os.path.join(run.ROOT, "target", "release", "tether-bench-backend"))
    ap.add_argument("--out", default=os.path.join(run.ROOT, "bench", "out"))
    ap.add_argument("--together", action="store_true",
                    help="run the Tether variants of a round at the same time (see above)")
    args = ap.parse_args()
    if not os.path.isdir(CGROUP):
        sys.exit(f"no {CGROUP}: this scenario needs the cgroup v1 cpu controller (and root)")
    proxies = args.proxies.split(",")
    if "tether-base" in proxies and not args.base:
        proxies.remove("tether-base")
        run.log("no --base: tether-base left out")
    bins = {"tether": args.tether, "tether-base": args.base}
    sc = dict(path="/rr", threads=1, conns=args.conns)
    tmp = tempfile.mkdtemp(prefix="tether-saturated-")
    os.makedirs(args.out, exist_ok=True)
    backends = [run.subprocess.Popen(["taskset", "-c", args.load_core, args.backend,
                                      f"127.0.0.1:{port}", name])
                for port, name in zip(run.BACKENDS, "ab")]
    runs = {p: [] for p in proxies}
    base = []
    try:
        for port in run.BACKENDS:
            run.wait_port(port)
        for rnd in range(args.rounds):
            base.append(run.wrk(run.BACKENDS[0], dict(path="/", threads=1, conns=50), 2, args.proxy_core)["rps"])
            run.log(f"round {rnd + 1}/{args.rounds} baseline {base[-1]:>9,.0f} req/s")
            turn = rnd % len(proxies)
            order = proxies[turn:] + proxies[:turn]
            if args.together:
                jointly = [p for p in order if p.startswith("tether")]
                done = dict(zip(jointly, together(jointly, sc, args, bins, tmp)))
                order = jointly + [p for p in order if p not in jointly]
            for p in order:
                r = done[p] if args.together and p in done else one(p, sc, args, bins, tmp)
                runs[p].append(r)
                run.log(f"round {rnd + 1}/{args.rounds} {p:12} {r['rps']:>9,.0f} req/s "
                        f"p99 {r['p99_ms']:.2f} ms errors {r['errors']} scrapes {r['scrapes']}")
    finally:
        for b in backends:
            b.terminate()
        run.shutil.rmtree(tmp, ignore_errors=True)
        for p in proxies:
            try:
                os.rmdir(os.path.join(CGROUP, f"tether-bench-{p}"))
            except OSError:
                pass
    med = {p: statistics.median(r["rps"] for r in runs[p]) for p in proxies}

    def pair(a, b):
        rs = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b]) if y["rps"]]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    quota = args.quota_us / args.period_us
    lines = [f"Saturated: each proxy held to {quota:.2f} of a core (cfs quota {args.quota_us} µs per "
             f"{args.period_us} µs), 1 worker, wrk -c{args.conns} on another core, /rr (round robin, "
             f"keep-alive), {args.rounds} rounds of {args.duration} s"
             + (", the Tether variants of each round at the same time." if args.together else "."),
             run.baseline_note(base), "",
             "| proxy | req/s at the quota, median (min–max) |", "|---|---|"]
    for p in proxies:
        v = [r["rps"] for r in runs[p]]
        lines.append(f"| {p} | {med[p]:,.0f} ({min(v):,.0f}–{max(v):,.0f}) |")
    lines += ["", "Paired ratios (same round), median (min–max):", "", "| ratio | value |", "|---|---|"]
    for a, b in [("tether", "tether-base"), ("tether-log", "tether-base"), ("tether", "haproxy"),
                 ("tether", "nginx"), ("tether-log", "tether")]:
        if a in runs and b in runs:
            pr = pair(a, b)
            if pr:
                lines.append(f"| {a} / {b} | {pr[0]:.3f} ({pr[1]:.3f}–{pr[2]:.3f}) |")
    md = "\n".join(lines)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, "saturated.json"), "w") as f:
        json.dump(dict(when=stamp, quota_us=args.quota_us, period_us=args.period_us, runs=runs,
                       together=args.together,
                       baseline_rps=base), f, indent=1)
    with open(os.path.join(args.out, "saturated.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()

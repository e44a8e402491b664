#!/usr/bin/env python3
"""Tether beside HAProxy and NGINX on this machine: one interleaved session (A B C B C A C A B ...).

Each proxy gets the same routes (bench/configs/), upstream keep-alive, no logging, and N workers
pinned to the proxy's cores; wrk and the two fixed-response backends run on the other core(s).
For every run it records requests/s, p50/p99 latency (wrk --latency), the proxy's own CPU time per
request (utime + stime of its processes from /proc/PID/stat, not whole-core busy time; the user
part, time spent in its own code, also apart) and its peak RSS (VmHWM). It prints medians with
their spread and ratios Tether/HAProxy and Tether/NGINX, and writes a JSON file and a PNG chart.
Before each round it measures the machine itself (wrk straight to a backend) and says when that
baseline drifted by more than 15% during the run: on a shared VM the paired ratios then remain
the figures to go by.

With --quota Q each proxy's processes are held to Q of a core by a cgroup (v1, a 10 ms period, as
bench/saturated.py does), so that the proxy, not wrk, is the bottleneck, in every scenario: the
proxy runs on the proxy core (its workers too), wrk and the backends on the load core. Then
rr-2-workers is two workers under the same quota, and rr-2-workers-2q two workers at twice the
quota: over rr-keepalive (one worker at the quota) in the same round, that is each proxy's
scaling ratio, which the results report. rr-100-conns is one worker under the two-worker
scenarios' load (100 connections, two wrk threads), to tell the second worker's cost from the
doubled load's. Each run also records how busy the load core was (load_busy).

With --together (and --quota) Tether and each other proxy run at the same time, each under its
own quota and its own wrk, and the paired ratios come from those simultaneous runs: the VM's
drift from one minute to the next then falls on both alike. HAProxy's nbthread and NGINX's worker_processes (with
reuseport) follow the scenario's worker count.

Run it through bench/run.sh, which installs the tools and builds Tether first.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "bench", "configs")
TICK = os.sysconf("SC_CLK_TCK")
PROXIES = ["tether", "haproxy", "nginx"]
PORTS = {"tether": 18080, "haproxy": 18081, "nginx": 18082}
# Each proxy's TLS listener: the same ECDSA P-256 certificate, made by openssl for the run.
TLS_PORTS = {"tether": 18443, "haproxy": 18444, "nginx": 18445}
CERT = {}
BACKENDS = (19101, 19102)

# name -> (path, wrk extra args, workers, connections, wrk threads, needs a cookie)
SCENARIOS = {
    "rr-keepalive": dict(path="/rr", workers=1, conns=50, threads=1),
    "sticky-cookie": dict(path="/sticky", workers=1, conns=50, threads=1, cookie=True),
    "sticky-no-cookie": dict(path="/sticky", workers=1, conns=50, threads=1),
    "new-connection": dict(path="/rr", workers=1, conns=50, threads=1, close=True),
    # One worker under the two-worker scenarios' load (100 connections, two wrk threads): beside
    # rr-2-workers it tells what the second worker costs apart from what the doubled load costs.
    "rr-100-conns": dict(path="/rr", workers=1, conns=100, threads=2),
    "rr-2-workers": dict(path="/rr", workers=2, conns=100, threads=2),
    # With --quota: two workers at twice the quota (the scaling ratio's numerator); without, as
    # rr-2-workers.
    "rr-2-workers-2q": dict(path="/rr", workers=2, conns=100, threads=2, quota_x=2),
    # HTTPS (TLS 1.3, X25519, the cipher the client prefers: AES-256-GCM from wrk's OpenSSL):
    # kept-alive connections, and a new connection with a full handshake per request.
    "https-keepalive": dict(path="/rr", workers=1, conns=50, threads=1, tls=True),
    "https-new-connection": dict(path="/rr", workers=1, conns=50, threads=1, close=True, tls=True),
    # The middleware chain (basic auth with a {SHA} user, two request fields set, one response
    # field, the prefix stripped), configured alike in each proxy.
    "chain": dict(path="/chain/rr", workers=1, conns=50, threads=1, auth="YmVuY2g6YmVuY2g="),
    # Tether only (--proxies tether): bcrypt, remembered once checked, and a wrong password,
    # which pays bcrypt on every request.
    "chain-bcrypt": dict(path="/bcrypt/rr", workers=1, conns=50, threads=1, auth="YmVuY2g6YmVuY2g="),
    "chain-bcrypt-wrong": dict(path="/bcrypt/rr", workers=1, conns=50, threads=1,
                               auth="YmVuY2g6d3Jvbmc=", status=401),
    # Compression: a 20 KB HTML page gzipped on the way (level 7 in Tether and NGINX; HAProxy's
    # own gzip), for a client that asks for gzip. The compressed size is recorded too.
    "gzip": dict(path="/gz/page.html", workers=1, conns=50, threads=1, encoding="gzip"),
}


def make_certificate(tmp):
    """One ECDSA P-256 certificate for 127.0.0.1 and bench.test, for every proxy."""
    cert, key, pem = (os.path.join(tmp, n) for n in ("bench.crt", "bench.key", "bench.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    with open(pem, "w") as out:
        for part in (cert, key):
            with open(part) as f:
                out.write(f.read())
    CERT.update(cert=cert, key=key, pem=pem)


def make_htpasswd(tmp):
    """NGINX's users file for the chain: bench:bench as {SHA}."""
    path = os.path.join(tmp, "htpasswd")
    with open(path, "w") as f:
        f.write("bench:{SHA}5cicUp3MubQnFvTZEY1hB5yIPZ4=\n")
    # NGINX's workers (another user) read it at each request.
    os.chmod(tmp, 0o755)
    os.chmod(path, 0o644)
    CERT["htpasswd"] = path


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_port(port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {deadline}s")


def wait_http(port, path, deadline=10.0):
    """Wait until the proxy answers 200 on `path` (it may listen before its table is loaded)."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
            last = r.status
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"127.0.0.1:{port}{path} never answered 200 (last: {last})")


def fetch_cookie(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    sc = r.getheader("Set-Cookie")
    if not sc:
        raise RuntimeError(f"127.0.0.1:{port}{path} set no cookie")
    return sc.split(";", 1)[0]


def render(name, workers, tmp):
    with open(os.path.join(CONFIGS, name)) as f:
        text = f.read()
    values = dict(
        port=PORTS[name.split(".")[0]],
        backend_a=BACKENDS[0],
        backend_b=BACKENDS[1],
        workers=workers,
        dir=tmp,
        tls_port=TLS_PORTS[name.split(".")[0]],
        cert=CERT.get("cert", ""),
        key=CERT.get("key", ""),
        pem=CERT.get("pem", ""),
        htpasswd=CERT.get("htpasswd", ""),
    )
    # Only the known placeholders: the configs also contain literal braces.
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    out = os.path.join(tmp, name)
    with open(out, "w") as f:
        f.write(text)
    return out


def proc_tree(pid):
    """pid and its descendants (NGINX's master and workers)."""
    pids = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        for k in kids.split():
            pids += proc_tree(int(k))
    except OSError:
        pass
    return pids


def cpu_seconds(pids):
    """(user, user + system) CPU seconds of `pids` so far."""
    user = system = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime (field 14)
            system += int(fields[12])  # stime (field 15)
        except (OSError, IndexError):
            pass
    return user / TICK, (user + system) / TICK


def core_ticks(cores):
    """(busy, total) clock ticks of the CPUs listed in `cores` ("1" or "0,1") so far, from
    /proc/stat. Busy is everything but idle and iowait."""
    want = {f"cpu{c}" for c in cores.split(",")}
    busy = total = 0
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in want:
                ticks = list(map(int, fields[1:9]))
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def busy_share(before, after):
    """The share of the time the cores of core_ticks() were busy between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else None


def memory_kib(pids, field="VmHWM"):
    """A /proc/PID/status memory field (VmHWM: peak RSS, VmRSS: current) summed over `pids`."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Proxy:
    def __init__(self, name, workers, cores, bins, tmp):
        self.name, self.workers, self.cores, self.bins = name, workers, cores, bins
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)
        self.proc = None

    def command(self):
        if self.name == "tether":
            cfg = render("tether.toml", self.workers, self.tmp)
            return [self.bins["tether"], "--log", "warn", "--workers", str(self.workers),
                    "run", "--config", cfg, "--state-dir", self.tmp]
        if self.name == "haproxy":
            cfg = render("haproxy.cfg", self.workers, self.tmp)
            return ["haproxy", "-db", "-f", cfg]
        cfg = render("nginx.conf", self.workers, self.tmp)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        return ["nginx", "-p", self.tmp, "-c", cfg]

    def start(self, path):
        cmd = ["taskset", "-c", self.cores] + self.command()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(
            os.path.join(self.tmp, "stderr"), "w"), start_new_session=True)
        try:
            wait_port(PORTS[self.name])
            wait_http(PORTS[self.name], path)
        except RuntimeError:
            with open(os.path.join(self.tmp, "stderr")) as f:
                log(f"{self.name}: {f.read()}")
            self.stop()
            raise
        time.sleep(0.2)  # NGINX's workers start after the master binds
        self.pids = proc_tree(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, val, unit in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(val) * UNITS[unit]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return dict(rps=rps, p50_ms=lat.get("50"), p99_ms=lat.get("99"), requests=total, errors=errors)


def wrk(port, sc, duration, load_cores, cookie=None):
    cmd = wrk_command(port, sc, duration, load_cores, cookie)
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def wrk_at_once(ports, sc, duration, load_cores, cookies):
    """One wrk per port, all started together: their results, in the order of `ports`."""
    procs = [subprocess.Popen(wrk_command(port, sc, duration, load_cores, cookie),
                              stdout=subprocess.PIPE, text=True)
             for port, cookie in zip(ports, cookies)]
    outs = [p.communicate()[0] for p in procs]
    for p in procs:
        if p.returncode:
            raise RuntimeError(f"wrk exited with {p.returncode}")
    return [parse_wrk(out) for out in outs]


def wrk_command(port, sc, duration, load_cores, cookie=None):
    cmd = ["taskset", "-c", load_cores, "wrk", "--latency", f"-t{sc['threads']}",
           f"-c{sc['conns']}", f"-d{duration}s"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    if sc.get("auth"):
        cmd += ["-H", f"Authorization: Basic {sc['auth']}"]
    if sc.get("close"):
        cmd += ["-H", "Connection: close"]
    if sc.get("encoding"):
        cmd += ["-H", f"Accept-Encoding: {sc['encoding']}"]
    scheme = "https" if sc.get("tls") else "http"
    cmd.append(f"{scheme}://127.0.0.1:{port}{sc['path']}")
    return cmd


def baseline(args):
    """The machine's own speed this round: wrk (on the proxy's core) straight to backend a (on the
    load core), the proxies' usual load without a proxy. Its spread across the rounds tells how
    much the VM itself drifted during the run."""
    sc = dict(path="/", threads=1, conns=50)
    return wrk(BACKENDS[0], sc, args.baseline, args.proxy_core)["rps"]


NOISY = 1.15

CGROUP = "/sys/fs/cgroup/cpu"
PERIOD_US = 10_000


def limit(name, pids, quota):
    """Hold the processes `pids` (every thread of each) to `quota` of a core: a cgroup (v1) of
    their own with a 10 ms period, short enough that throttling stays fine-grained. Returns it."""
    group = os.path.join(CGROUP, f"tether-bench-{name}")
    os.makedirs(group, exist_ok=True)
    with open(os.path.join(group, "cpu.cfs_period_us"), "w") as f:
        f.write(str(PERIOD_US))
    with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as f:
        f.write(str(int(quota * PERIOD_US)))
    for pid in pids:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    return group


def throttled(group):
    """Periods in which the group was throttled so far."""
    try:
        with open(os.path.join(group, "cpu.stat")) as f:
            return int(dict(line.split() for line in f).get("nr_throttled", 0))
    except OSError:
        return None


def baseline_note(rps):
    """A line on the machine's drift during the run, from the baseline of each round."""
    if not rps:
        return ""
    lo, hi, med = min(rps), max(rps), statistics.median(rps)
    spread = hi / lo if lo else float("inf")
    line = (f"Machine baseline (wrk straight to a backend, each round): median {med:,.0f} req/s "
            f"({lo:,.0f}–{hi:,.0f}), spread {spread:.2f}×.")
    if spread > NOISY:
        line += (f" Over {NOISY:.2f}×: the machine itself drifted during this run; compare the"
                 " paired ratios, and not these figures with another run's.")
    return line


def encoded_size(port, path, encoding):
    """The size of the body the proxy sends for `path` to a client that accepts `encoding`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    c.request("GET", path, headers={"Accept-Encoding": encoding})
    r = c.getresponse()
    body = r.read()
    c.close()
    got = r.getheader("Content-Encoding")
    if got != encoding:
        raise RuntimeError(f"127.0.0.1:{port}{path} answered Content-Encoding {got!r}")
    return len(body)


def one_run(name, scen, sc, args, bins, tmp):
    return side_by_side([name], scen, sc, args, bins, tmp)[0]


def side_by_side(names, scen, sc, args, bins, tmp):
    """Run the proxies `names` at the same time (one, or two with --together), each under its own
    wrk and, with --quota, its own cgroup; their results in the order of `names`."""
    quota = args.quota * sc.get("quota_x", 1) if args.quota else None
    # Without a quota, two workers get both cores; with one, the quota is what limits them.
    two = sc["workers"] > 1 and not quota
    cores = "0,1" if two else args.proxy_core
    load = "0,1" if two else args.load_core
    started, groups = [], []
    try:
        for name in names:
            p = Proxy(name, sc["workers"], cores, bins, tmp)
            started.append(p)
            # A path behind basic auth answers 401 without it: wait on the plain route instead.
            p.start("/rr" if sc.get("auth") else sc["path"])
            groups.append(limit(name, proc_tree(p.proc.pid), quota) if quota else None)
        ports = [TLS_PORTS[n] if sc.get("tls") else PORTS[n] for n in names]
        cookies = [fetch_cookie(port, sc["path"]) if sc.get("cookie") else None for port in ports]
        wrk_at_once(ports, sc, args.warmup, load, cookies)
        for p in started:
            p.pids = proc_tree(p.proc.pid)
        before, load_before = [cpu_seconds(p.pids) for p in started], core_ticks(load)
        results = wrk_at_once(ports, sc, args.duration, load, cookies)
        after, load_after = [cpu_seconds(p.pids) for p in started], core_ticks(load)
        for p, r, b, a, group, port in zip(started, results, before, after, groups, ports):
            # Near 1, wrk and the backends, not the proxy, set the pace: the run then says less
            # about the proxy than its CPU per request does.
            r["load_busy"] = busy_share(load_before, load_after)
            n = max(r["requests"], 1)
            r["cpu_us_per_req"] = (a[1] - b[1]) / n * 1e6
            r["user_us_per_req"] = (a[0] - b[0]) / n * 1e6
            r["peak_rss_kib"] = memory_kib(p.pids)
            if group:
                r["quota"] = quota
                r["throttled_periods"] = throttled(group)
            if sc.get("encoding"):
                r["body_bytes"] = encoded_size(port, sc["path"], sc["encoding"])
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited during {scen}")
        return results
    finally:
        for p in started:
            p.stop()
        for group in groups:
            if group:
                try:
                    os.rmdir(group)
                except OSError:
                    pass


def summarise(runs):
    keys = ["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "peak_rss_kib",
            "body_bytes", "load_busy", "errors"]
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            out[k] = dict(median=statistics.median(vals), min=min(vals), max=max(vals))
    return out


def ratio(a, b):
    return a / b if a and b else None


PAIRED = ["rps", "p99_ms", "cpu_us_per_req", "user_us_per_req"]


def rounds_paired(runs, proxies):
    """Tether's run and the other proxy's of the same round: {scenario: {proxy: [(t, o), ...]}}."""
    out = {}
    for scen, per in runs.items():
        for p in proxies:
            if p != "tether" and per.get(p) and per.get("tether"):
                out.setdefault(scen, {})[p] = list(zip(per["tether"], per[p]))
    return out


def paired(pairs):
    """Median over the pairs (from rounds_paired, or the runs of --together) of Tether's figure
    divided by the other proxy's.

    The proxies of one round run minutes apart at most, so a ratio within a round cancels most of
    the drift a VM's neighbours cause across a session; the medians of each proxy's own figures
    do not. With --together the two ran in the same seconds, which cancels the rest."""
    out = {}
    for scen, per in pairs.items():
        for p, runs in per.items():
            for m in PAIRED:
                rs = [a[m] / b[m] for a, b in runs if a.get(m) and b.get(m)]
                if rs:
                    out.setdefault(scen, {}).setdefault(p, {})[m] = dict(
                        median=statistics.median(rs), min=min(rs), max=max(rs))
    return out


def scaling(runs, proxies):
    """Each proxy's scaling ratio: requests/s of rr-2-workers-2q (two workers at twice the quota)
    over rr-keepalive (one worker at the quota), in the same round; median of the rounds."""
    two, one = runs.get("rr-2-workers-2q"), runs.get("rr-keepalive")
    if not two or not one:
        return {}
    out = {}
    for p in proxies:
        rs = [a["rps"] / b["rps"] for a, b in zip(two.get(p, []), one.get(p, [])) if b["rps"]]
        if rs:
            out[p] = dict(median=statistics.median(rs), min=min(rs), max=max(rs))
    return out


def paired_table(pr):
    lines = ["| scenario | against | " + " | ".join(PAIRED) + " |",
             "|" + "---|" * (2 + len(PAIRED))]
    for scen, per in pr.items():
        for p, ms in per.items():
            cells = [f"{ms[m]['median']:.2f}× ({ms[m]['min']:.2f}–{ms[m]['max']:.2f})"
                     if m in ms else "–" for m in PAIRED]
            lines.append(f"| {scen} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(summary, proxies):
    head = "| scenario | metric | " + " | ".join(proxies)
    cmp = [p for p in proxies if p != "tether"] if "tether" in proxies else []
    head += "".join(f" | Tether/{p}" for p in cmp) + " |"
    lines = [head, "|" + "---|" * (2 + len(proxies) + len(cmp))]
    fmt = {"rps": "{:,.0f}", "p50_ms": "{:.3f} ms", "p99_ms": "{:.3f} ms",
           "cpu_us_per_req": "{:.1f} µs", "user_us_per_req": "{:.1f} µs",
           "peak_rss_kib": "{:,.0f} KiB", "body_bytes": "{:,.0f} B",
           "load_busy": "{:.0%} busy"}
    for scen, per in summary.items():
        for m, f in fmt.items():
            if not any(per.get(p, {}).get(m) for p in proxies):
                continue
            cells = []
            for p in proxies:
                s = per.get(p, {}).get(m)
                cells.append(f.format(s["median"]) + (
                    f" ({f.format(s['min']).split()[0]}–{f.format(s['max']).split()[0]})"
                    if s["max"] != s["min"] else "") if s else "–")
            rs = []
            for p in cmp:
                a = per.get("tether", {}).get(m)
                b = per.get(p, {}).get(m)
                r = ratio(a and a["median"], b and b["median"])
                rs.append(f"{r:.2f}×" if r else "–")
            lines.append(f"| {scen} | {m} | " + " | ".join(cells + rs) + " |")
    return "\n".join(lines)


def chart(summary, proxies, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart (pip install matplotlib)")
        return None
    scens = list(summary)
    metrics = [("rps", "requests/s"), ("cpu_us_per_req", "CPU µs per request"),
               ("p99_ms", "p99 latency (ms)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.8))
    width = 0.8 / len(proxies)
    colors = {"tether": "#2a9d8f", "haproxy": "#e76f51", "nginx": "#264653"}
    for ax, (m, label) in zip(axes, metrics):
        for i, p in enumerate(proxies):
            med, lo, hi = [], [], []
            for s in scens:
                v = summary[s].get(p, {}).get(m)
                med.append(v["median"] if v else 0)
                lo.append(v["median"] - v["min"] if v else 0)
                hi.append(v["max"] - v["median"] if v else 0)
            xs = [j + i * width for j in range(len(scens))]
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=p, color=colors.get(p))
        ax.set_xticks([j + width * (len(proxies) - 1) / 2 for j in range(len(scens))])
        ax.set_xticklabels(scens, rotation=25, ha="right", fontsize=8)
        ax.set_title(label + " (median, min–max)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of load before measuring")
    ap.add_argument("--baseline", type=int, default=2,
                    help="seconds of wrk straight to a backend before each round (0: none)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--quota", type=float, default=None,
                    help="hold each proxy to this share of a core (e.g. 0.25) with a cgroup")
    ap.add_argument("--together", action="store_true",
                    help="run Tether and each other proxy at the same time (each under its own\n"
                         "quota and wrk), so that the VM's drift falls on both alike; needs --quota\n"
                         "and room for two quotas on the proxy core")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--tether", default=os.path.join(ROOT, "target", "release", "tether"))
    ap.add_argument("--backend", default=os.path.join(ROOT, "target", "release", "tether-bench-backend"))
    args = ap.parse_args()
    scens = args.scenarios.split(",")
    proxies = args.proxies.split(",")
    if args.quota is not None:
        if not 0 < args.quota <= 0.5:
            sys.exit("--quota is a share of one core, above 0 and at most 0.5 (twice it must fit)")
        if not os.access(CGROUP, os.W_OK):
            sys.exit(f"--quota needs a writable cgroup (v1) cpu hierarchy at {CGROUP} (run as root)")
    for s in scens:
        if s not in SCENARIOS:
            sys.exit(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
        if args.together and (args.quota or 1) * SCENARIOS[s].get("quota_x", 1) > 0.5:
            sys.exit(f"--together holds two proxies on the proxy core at once, each at most half of"
                     f" it: {s} at {args.quota} does not fit")
    if args.together and (not args.quota or "tether" not in proxies or len(proxies) < 2):
        sys.exit("--together needs --quota (else the two would share the core unevenly) and"
                 " Tether with at least one other proxy")
    os.makedirs(args.out, exist_ok=True)
    bins = {"tether": args.tether}
    tmp = tempfile.mkdtemp(prefix="tether-bench-")
    make_certificate(tmp)
    make_htpasswd(tmp)
    backends = [subprocess.Popen(["taskset", "-c", args.load_core, args.backend,
                                  f"127.0.0.1:{port}", name])
                for port, name in zip(BACKENDS, "ab")]
    runs = {s: {p: [] for p in proxies} for s in scens}
    together = {}
    base = []

    def show(rnd, s, p, r, note=""):
        log(f"round {rnd + 1}/{args.rounds} {s:17} {p:8} {r['rps']:>9,.0f} req/s "
            f"p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms "
            f"cpu {r['cpu_us_per_req']:.1f} µs/req (user {r['user_us_per_req']:.1f}) "
            f"rss {r['peak_rss_kib']:,} KiB load core busy {r['load_busy']:.0%} "
            f"errors {r['errors']}" + (f" ({note})" if note else ""))

    try:
        for port in BACKENDS:
            wait_port(port)
        for rnd in range(args.rounds):
            if args.baseline > 0:
                base.append(baseline(args))
                log(f"round {rnd + 1}/{args.rounds} baseline          {base[-1]:>9,.0f} req/s")
            # The order turns by one proxy each round (A B C, B C A, C A B, ...): no proxy always
            # runs first after the baseline or after another scenario's last run.
            turn = rnd % len(proxies)
            order = proxies[turn:] + proxies[:turn]
            for s in scens:
                if args.together:
                    # Tether and each other proxy at once, in turn.
                    for p in [q for q in order if q != "tether"]:
                        t, o = side_by_side(["tether", p], s, SCENARIOS[s], args, bins, tmp)
                        runs[s]["tether"].append(t)
                        runs[s][p].append(o)
                        together.setdefault(s, {}).setdefault(p, []).append((t, o))
                        show(rnd, s, "tether", t, f"beside {p}")
                        show(rnd, s, p, o)
                    continue
                for p in order:
                    r = one_run(p, s, SCENARIOS[s], args, bins, tmp)
                    runs[s][p].append(r)
                    show(rnd, s, p, r)
    finally:
        for b in backends:
            b.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {s: {p: summarise(runs[s][p]) for p in proxies} for s in scens}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    versions = {
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "tether": subprocess.run([args.tether, "--version"], capture_output=True, text=True).stdout.strip(),
    }
    pr = paired(together if args.together else rounds_paired(runs, proxies))
    scale = {} if args.together else scaling(runs, proxies)
    result = dict(when=stamp, rounds=args.rounds, duration_s=args.duration, versions=versions,
                  cores=dict(proxy=args.proxy_core, load=args.load_core), quota=args.quota,
                  together=args.together, pairs=together or None, runs=runs, summary=summary, paired=pr,
                  scaling=scale, baseline_rps=base)
    jpath = os.path.join(args.out, "results.json")
    with open(jpath, "w") as f:
        json.dump(result, f, indent=1)
    md = table(summary, proxies)
    if base:
        md = baseline_note(base) + "\n\n" + md
    if pr:
        md += ("\n\nTether's figure over the other's, measured at the same time (median of the "
               "rounds, min–max):\n\n" if args.together else
               "\n\nTether's figure over the other's in the same round (median of the rounds, "
               "min–max):\n\n")
        md += paired_table(pr)
    if scale:
        md += ("\n\nScaling ratio: requests/s with 2 workers at twice the quota over 1 worker at the "
               "quota, same round (median of the rounds, min–max):\n\n| proxy | ratio |\n|---|---|\n")
        md += "\n".join(f"| {p} | {v['median']:.2f} ({v['min']:.2f}–{v['max']:.2f}) |"
                         for p, v in scale.items())
    if args.quota:
        md = f"Each proxy held to {args.quota} of a core (cgroup, 10 ms period).\n\n" + md
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md + "\n")
    png = chart(summary, proxies, os.path.join(args.out, "chart.png"))
    print(md)
    print(f"\nJSON: {jpath}" + (f"\nchart: {png}" if png else ""))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench_dns.py -- the DNS / active-check benchmark of issue 4 ("Benchmark").

Prints numbers as one markdown table, never pass/fail. Everything runs on
127.0.0.1; every process started is in its own process group and is killed
(SIGTERM, then SIGKILL) on the way out, whatever happens.

Parts (select with --parts, default 1,2,3):

 1. DNS queries per second. One shoal agent (--dns-ttl 0, the default) loads
    10,000 instances from generated *.service files (--config-dir): 100
    services "svcNN" x 100 instances, each a distinct 10.x.y.z address, no
    TTL, no checks (so all passing). A local unbound (Debian's, one thread,
    local-zone "shoal." static, the same 10,000 A records as local-data with
    TTL 0, another loopback port) serves the equivalent zone. dnsperf runs
    against each, one after the other in the same run, with the same
    settings (-l DURATION -c 4 -T 1 -q 100 -t 2). Each instance also has a tag gNN (NN = index/5), so a
    TAG.NAME query selects 5 of a service's 100 instances. Rows:
      - A TAG.NAME (query file: all 2,000 TAG.NAME names, shuffled): 5 A
        records, the answer fits in 512 bytes for both servers. This is the
        like-for-like row.
      - A NAME (the 100 names, shuffled, x10), no EDNS: shoal cuts the answer
        at 512 bytes (29 of the 100 records, TC set); unbound answers TC with
        an empty answer section (37 bytes). dnsperf does not retry over TCP.
      - A NAME with EDNS0 (dnsperf -e, 4096 offered): shoal caps at 1232
        bytes (72 records + TC); unbound sends all 100 (1,648 bytes).
      - SRV _svcNN._tcp.service.shoal, no EDNS, shoal only (Consul-shaped:
        A records in the additional section; cut at 512 bytes, TC).
    Response sizes and the server's CPU during the dnsperf run (utime+stime
    from /proc, % of one core; near 100 % = the server is the bottleneck,
    well below = dnsperf, or other load on the machine, limits the rate)
    and that CPU per answered query (us/query, the number least disturbed by
    a shared machine) are in the notes.
    Both servers are single-threaded here; the machine's core count is
    printed, dnsperf shares it.

 2. Failure-to-DNS latency. 3 agents (memberlist LAN profile: the defaults).
    On node 1: instance "flap-1" (127.0.0.2) of service "flap" with an HTTP
    check against a tiny Python HTTP server (interval 1s, timeout 500ms);
    on node 2: "flap-2" (127.0.0.3), no check, so the name never goes
    NXDOMAIN. When all 3 nodes answer 127.0.0.2, --fail-repeats times
    (default 5): sleep a random 0.2..1.2 s (the failure lands at a random
    phase of the check interval), T0 = the server starts returning 500;
    every 20 ms all 3 nodes are asked (Python UDP stub, one query each) for
    flap.service.shoal A; latency = the time the last node stops listing
    127.0.0.2 - T0. Then the server returns 200 again and the address must
    be back on all 3 before the next round. Reported: median and max, and
    the per-round numbers. This includes up to one check interval (1 s) of
    waiting for the next probe.

 3. Check CPU. One agent loads 1,000 instances from *.service files, each
    with check.http = http://127.0.0.1:S/h/N (interval 10s, timeout 2s, the
    default), S a threaded Python HTTP server in this process (200, tiny
    body, no keep-alive: shoal does not reuse connections). When all 1,000
    are passing and 5 s have passed: the agent's utime+stime from
    /proc/PID/stat over --cpu-window seconds (default 30), as % of one core;
    also shoal_checks_run_total over the window. For comparison the same
    agent set-up with the same 1,000 instances and no checks (idle).

Usage: scripts/bench_dns.py [--parts 1,2,3] [--duration 15] [--shoal PATH]
                            [--fail-repeats 5] [--cpu-window 30]
Needs: a build (cmake -S . -B build && cmake --build build), and for part 1
dnsperf and unbound (apt-get install dnsperf unbound); part 1 is skipped
with a message when either is missing.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROCS = []  # every Popen we started (each in its own session/process group)


def log(*a):
    print("#", *a, file=sys.stderr, flush=True)


def free_port(kind=socket.SOCK_STREAM):
    """A port free for both TCP and UDP on 127.0.0.1 (best effort)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()
            s.close()
    raise RuntimeError("no free port")


def spawn(cmd, logpath):
    f = open(logpath, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    f.close()
    PROCS.append(p)
    return p


def kill(p, grace=3.0):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(5)


def kill_all():
    for p in reversed(PROCS):
        try:
            kill(p)
        except Exception as e:  # keep going: kill the rest
            log("kill", p.pid, e)


# ---------------------------------------------------------------- HTTP/API

def api(port, method, path, body=None, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metrics(port):
    st, b = api(port, "GET", "/metrics")
    out = {}
    for line in b.decode(errors="replace").splitlines():
        if not line or line[0] == "#":
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def wait_http(port, deadline):
    while time.monotonic() < deadline:
        try:
            st, _ = api(port, "GET", "/v1/info", timeout=1.0)
            if st == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- DNS stub

def dns_query(port, name, qtype=1, timeout=0.5):
    """One UDP query; returns (rcode, [A addresses]) or (None, []) on timeout."""
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for lab in name.rstrip(".").split("."):
        q += bytes([len(lab)]) + lab.encode()
    q += b"\0" + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, ("127.0.0.1", port))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    except socket.timeout:
        return None, []
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    off = 12

    def skip_name(o):
        while True:
            ln = data[o]
            if ln == 0:
                return o + 1
            if ln & 0xC0 == 0xC0:
                return o + 2
            o += 1 + ln

    for _ in range(qd):
        off = skip_name(off) + 4
    addrs = []
    for _ in range(an):
        off = skip_name(off)
        t, _c, _ttl, rdl = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        if t == 1 and rdl == 4:
            addrs.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdl
    return flags & 0xF, addrs


# ---------------------------------------------------------------- agents

class Agent:
    def __init__(self, shoal, tmp, name, join=None, config_dir=None,
                 extra=(), start_wait=20):
        self.name = name
        self.gport = free_port()
        self.hport = free_port()
        self.dport = free_port()
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        cmd = [shoal, "agent", "--name", name,
               "--bind", "127.0.0.1:%d" % self.gport,
               "--http", "127.0.0.1:%d" % self.hport,
               "--dns", "127.0.0.1:%d" % self.dport,
               "--data-dir", os.path.join(self.dir, "data"),
               "--log-level", "warn"]
        if config_dir:
            cmd += ["--config-dir", config_dir]
        if join:
            cmd += ["--join", "127.0.0.1:%d" % join.gport]
        cmd += list(extra)
        self.cmd = cmd
        self.p = spawn(cmd, os.path.join(self.dir, "log"))
        if not wait_http(self.hport, time.monotonic() + start_wait):
            raise RuntimeError("agent %s did not answer on HTTP (see %s)"
                               % (name, os.path.join(self.dir, "log")))

    def cpu_ticks(self):
        return cpu_ticks(self.p.pid)


def cpu_ticks(pid):
    """utime + stime of pid (fields 14 and 15 of /proc/PID/stat), all threads."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


# ---------------------------------------------------------------- HTTP server

class Health:
    code = 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        code = Health.code
        body = b"ok\n" if code == 200 else b"fail\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


def start_server():
    srv = Server(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True)
    t.start()
    return srv


# ---------------------------------------------------------------- part 1

def part1(a, shoal, tmp, rows):
    dnsperf = shutil.which("dnsperf")
    unbound = shutil.which("unbound") or (
        "/usr/sbin/unbound" if os.path.exists("/usr/sbin/unbound") else None)
    if not dnsperf or not unbound:
        print("part 1 skipped: needs dnsperf and unbound "
              "(apt-get install -y dnsperf unbound)", file=sys.stderr)
        rows.append(("1", "DNS qps", "skipped: apt-get install -y dnsperf unbound", ""))
        return
    nsvc, ninst = 100, 100
    cdir = os.path.join(tmp, "p1-services")
    os.makedirs(cdir)
    local = []
    k = 0
    for s in range(nsvc):
        lines = []
        for i in range(ninst):
            k += 1
            ip = "10.%d.%d.%d" % (k >> 16 & 255, k >> 8 & 255, k & 255)
            lines.append("[service]\nid = svc%02d-%03d\nservice = svc%02d\n"
                         "address = %s\nport = %d\ntag = g%02d\n"
                         % (s, i, s, ip, 8000 + i, i // 5))
            local.append('local-data: "svc%02d.service.shoal. 0 IN A %s"'
                         % (s, ip))
            local.append('local-data: "g%02d.svc%02d.service.shoal. 0 IN A %s"'
                         % (i // 5, s, ip))
        with open(os.path.join(cdir, "svc%02d.service" % s), "w") as f:
            f.write("\n".join(lines))
    t = time.monotonic()
    ag = Agent(shoal, tmp, "dns1", config_dir=cdir, start_wait=180)
    dl = time.monotonic() + 60
    while time.monotonic() < dl:
        m = metrics(ag.hport)
        if m.get('shoal_registry_instances{status="passing"}', 0) >= nsvc * ninst:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("agent did not load 10,000 instances")
    log("shoal loaded %d instances in %.1f s" % (nsvc * ninst, time.monotonic() - t))
    rc, addrs = dns_query(ag.dport, "svc00.service.shoal")
    log("shoal svc00 A: rcode", rc, "answers", len(addrs))

    uport = free_port()
    udir = os.path.join(tmp, "unbound")
    os.makedirs(udir)
    conf = os.path.join(udir, "unbound.conf")
    with open(conf, "w") as f:
        f.write("""server:
  interface: 127.0.0.1
  port: %d
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "%s"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "shoal." static
  local-data: "shoal. 0 IN SOA ns.shoal. hostmaster.shoal. 1 3600 600 86400 0"
%s
remote-control:
  control-enable: no
""" % (uport, udir, "\n".join("  " + x for x in local)))
    chk = subprocess.run([unbound + "-checkconf", conf], capture_output=True,
                         text=True, timeout=30)
    if chk.returncode != 0:
        raise RuntimeError("unbound-checkconf: " + chk.stdout + chk.stderr)
    ub = spawn([unbound, "-d", "-c", conf], os.path.join(udir, "log"))
    dl = time.monotonic() + 20
    while time.monotonic() < dl:
        rc, ad = dns_query(uport, "svc00.service.shoal", timeout=0.2)
        if rc is not None:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("unbound did not answer")
    log("unbound svc00 A: rcode", rc, "answers", len(ad))

    def qfile(fmt, qt, tagged=False):
        path = os.path.join(tmp, "q-%s-%d.txt" % (qt, tagged))
        rng = random.Random(4)
        if tagged:
            names = [fmt % (g, s) for s in range(nsvc) for g in range(ninst // 5)]
        else:
            names = [fmt % s for s in range(nsvc)] * 10
        rng.shuffle(names)
        with open(path, "w") as f:
            for n in names:
                f.write("%s %s\n" % (n, qt))
        return path

    qa = qfile("svc%02d.service.shoal", "A")
    qs = qfile("_svc%02d._tcp.service.shoal", "SRV")
    qt = qfile("g%02d.svc%02d.service.shoal", "A", tagged=True)
    rc, addrs = dns_query(ag.dport, "g03.svc07.service.shoal")
    log("shoal g03.svc07 A: rcode", rc, "answers", len(addrs))

    tck = os.sysconf("SC_CLK_TCK")

    def perf(port, qf, extra, pid):
        cmd = [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", qf,
               "-l", str(a.duration), "-c", "4", "-T", "1", "-q", "100",
               "-t", "2"] + extra
        c0, w0 = cpu_ticks(pid), time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=a.duration + 60)
        cpu = (cpu_ticks(pid) - c0) / tck / (time.monotonic() - w0) * 100
        out = r.stdout + r.stderr
        qps = re.search(r"Queries per second:\s+([\d.]+)", out)
        comp = re.search(r"Queries completed:\s+(\d+)\s+\(([\d.]+)%\)", out)
        lost = re.search(r"Queries lost:\s+(\d+)", out)
        lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
        codes = re.search(r"Response codes:\s+(.*)", out)
        size = re.search(r"Average packet size:\s+request (\d+), response (\d+)", out)
        if not qps:
            raise RuntimeError("dnsperf output:\n" + out)
        return {"qps": float(qps.group(1)), "lost": int(lost.group(1)) if lost else -1,
                "lat_ms": float(lat.group(1)) * 1000 if lat else -1,
                "codes": codes.group(1).strip() if codes else "",
                "resp": int(size.group(2)) if size else -1, "cpu": cpu,
                "cmd": " ".join(cmd)}

    log("dnsperf:", "-l %d -c 4 -T 1 -q 100" % a.duration)
    for label, qf, extra, both in (
            ("A TAG.NAME (5 of 100 instances; fits 512 B), no EDNS", qt, [], True),
            ("A NAME (100 instances), no EDNS (cut at 512 B, TC)", qa, [], True),
            ("A NAME (100 instances), EDNS0 (dnsperf -e)", qa, ["-e"], True),
            ("SRV _NAME._tcp (100 instances), no EDNS (TC)", qs, [], False)):
        for who, port, pid in (("shoal", ag.dport, ag.p.pid),
                               ("unbound", uport, ub.pid)):
            if not both and who == "unbound":
                continue
            r = perf(port, qf, extra, pid)
            log(who, label, r)
            rows.append(("1", "DNS qps, %s: %s" % (label, who),
                         "%.0f qps" % r["qps"],
                         "server CPU %.0f %% of one core = %.1f us/query; lost %d, "
                         "avg latency %.2f ms, response %d B, %s"
                         % (r["cpu"], r["cpu"] * 1e4 / r["qps"], r["lost"],
                            r["lat_ms"], r["resp"], r["codes"])))
    kill(ub)
    kill(ag.p)


# ---------------------------------------------------------------- part 2

def part2(a, shoal, tmp, rows):
    srv = start_server()
    sport = srv.server_address[1]
    try:
        Health.code = 200
        n1 = Agent(shoal, tmp, "f1")
        n2 = Agent(shoal, tmp, "f2", join=n1)
        n3 = Agent(shoal, tmp, "f3", join=n1)
        nodes = [n1, n2, n3]
        dl = time.monotonic() + 30
        while time.monotonic() < dl:
            ok = 0
            for n in nodes:
                st, b = api(n.hport, "GET", "/v1/members")
                ms = json.loads(b)["members"]
                ok += sum(1 for m in ms if m["status"] == "alive") == 3
            if ok == 3:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("cluster of 3 did not converge")
        st, b = api(n1.hport, "POST", "/v1/register", {
            "id": "flap-1", "service": "flap", "address": "127.0.0.2",
            "port": 9000, "checks": [{"http": "http://127.0.0.1:%d/health" % sport,
                                      "interval": "1s", "timeout": "500ms"}]})
        assert st == 200, b
        st, b = api(n2.hport, "POST", "/v1/register", {
            "id": "flap-2", "service": "flap", "address": "127.0.0.3", "port": 9000})
        assert st == 200, b

        def present():
            return [("127.0.0.2" in dns_query(n.dport, "flap.service.shoal",
                                              timeout=0.3)[1]) for n in nodes]

        def wait_all(want, bound):
            t0 = time.monotonic()
            while time.monotonic() - t0 < bound:
                if all(x == want for x in present()):
                    return True
                time.sleep(0.02)
            return False

        if not wait_all(True, 20):
            raise RuntimeError("flap-1 never passing on all 3 nodes")
        lats = []
        rng = random.Random(7)
        for rep in range(a.fail_repeats):
            time.sleep(0.2 + rng.random())
            t0 = time.monotonic()
            Health.code = 500
            gone = [None] * 3
            while time.monotonic() - t0 < 20 and None in gone:
                for i, n in enumerate(nodes):
                    if gone[i] is None:
                        rc, ad = dns_query(n.dport, "flap.service.shoal", timeout=0.3)
                        if rc is not None and "127.0.0.2" not in ad:
                            gone[i] = time.monotonic() - t0
                time.sleep(0.02)
            if None in gone:
                raise RuntimeError("flap-1 still in DNS after 20 s: %r" % gone)
            lats.append(max(gone))
            log("round %d: gone per node %s" % (rep + 1,
                ", ".join("%.0f ms" % (g * 1000) for g in gone)))
            Health.code = 200
            if not wait_all(True, 20):
                raise RuntimeError("flap-1 did not come back")
        rows.append(("2", "backend fails -> gone from DNS on all 3 nodes "
                     "(check 1s/500ms, %d rounds)" % len(lats),
                     "median %.0f ms, max %.0f ms" % (statistics.median(lats) * 1000,
                                                       max(lats) * 1000),
                     "rounds: " + ", ".join("%.0f" % (x * 1000) for x in lats) + " ms"))
        for n in nodes:
            kill(n.p)
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- part 3

def part3(a, shoal, tmp, rows):
    srv = start_server()
    sport = srv.server_address[1]
    tck = os.sysconf("SC_CLK_TCK")
    try:
        Health.code = 200
        for with_checks in (False, True):
            cdir = os.path.join(tmp, "p3-%d" % with_checks)
            os.makedirs(cdir)
            for f in range(10):
                lines = []
                for i in range(100):
                    k = f * 100 + i
                    s = ("[service]\nid = chk-%04d\nservice = chk%02d\n"
                         "address = 127.0.0.1\nport = %d\n" % (k, f, 10000 + k))
                    if with_checks:
                        s += ("check.http = http://127.0.0.1:%d/h/%d\n"
                              "check.interval = 10s\n" % (sport, k))
                    lines.append(s)
                with open(os.path.join(cdir, "chk%02d.service" % f), "w") as fh:
                    fh.write("\n".join(lines))
            ag = Agent(shoal, tmp, "cpu%d" % with_checks, config_dir=cdir,
                       start_wait=120)
            t = time.monotonic()
            dl = t + 60
            while time.monotonic() < dl:
                m = metrics(ag.hport)
                if m.get('shoal_registry_instances{status="passing"}', 0) >= 1000:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError("not all 1000 passing: %r" % {
                    k: v for k, v in metrics(ag.hport).items() if "instances" in k})
            log("checks=%s: all 1000 passing after %.1f s" % (with_checks,
                                                               time.monotonic() - t))
            time.sleep(5)
            m0 = metrics(ag.hport)
            c0, w0 = ag.cpu_ticks(), time.monotonic()
            time.sleep(a.cpu_window)
            c1, w1 = ag.cpu_ticks(), time.monotonic()
            m1 = metrics(ag.hport)
            pct = (c1 - c0) / tck / (w1 - w0) * 100
            run = m1.get("shoal_checks_run_total", 0) - m0.get("shoal_checks_run_total", 0)
            failed = (m1.get("shoal_checks_failed_total", 0)
                      - m0.get("shoal_checks_failed_total", 0))
            passing = m1.get('shoal_registry_instances{status="passing"}', 0)
            rss = 0
            with open("/proc/%d/status" % ag.p.pid) as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            if with_checks:
                label = "agent CPU, 1,000 HTTP checks @10s"
                note = ("%d checks run (%d failed) in %.0f s window; %d passing at end; RSS %d MB"
                        % (run, failed, w1 - w0, passing, rss // 1024))
            else:
                label = "agent CPU, idle (1,000 instances, no checks)"
                note = "%.0f s window; RSS %d MB" % (w1 - w0, rss // 1024)
            rows.append(("3", label, "%.2f %% of one core" % pct,
                         note + "; %d ticks @%d Hz" % (c1 - c0, tck)))
            log(label, rows[-1])
            kill(ag.p)
    finally:
        srv.shutdown()
        srv.server_close()


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--duration", type=int, default=15, help="dnsperf -l (s)")
    ap.add_argument("--fail-repeats", type=int, default=5)
    ap.add_argument("--cpu-window", type=float, default=30)
    ap.add_argument("--shoal", default=None)
    ap.add_argument("--tmp", default="/tmp")
    a = ap.parse_args()
    shoal = a.shoal
    if not shoal:
        for d in ("build", "build-dbench"):
            p = os.path.join(ROOT, d, "shoal")
            if os.access(p, os.X_OK):
                shoal = p
                break
    if not shoal or not os.access(shoal, os.X_OK):
        sys.exit("no shoal binary: build first or pass --shoal PATH")
    parts = {x.strip() for x in a.parts.split(",")}
    tmp = tempfile.mkdtemp(prefix="shoal-dnsbench-", dir=a.tmp)
    rows = []
    t_start = time.monotonic()
    try:
        if "1" in parts:
            part1(a, shoal, tmp, rows)
        if "2" in parts:
            part2(a, shoal, tmp, rows)
        if "3" in parts:
            part3(a, shoal, tmp, rows)
    except Exception as e:
        log("ERROR:", repr(e))
        rows.append(("!", "error", repr(e)[:200], "logs in " + tmp))
        keep = True
    except BaseException:  # SIGTERM/SIGINT: clean up, no table
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    else:
        keep = False
    finally:
        kill_all()
    print("\nshoal: %s; %d CPUs; %s UTC; %.0f s\n" % (
        shoal, os.cpu_count(), time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        time.monotonic() - t_start))
    print("| part | measurement | result | notes |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(r))
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("\n(logs kept in %s)" % tmp)
    return 1 if keep else 0


def _on_term(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the finally: kill_all()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    try:
        sys.exit(main())
    finally:
        kill_all()

# ctest-labels: heavy
"""test_consul_external.py -- shoal's discovery with Debian's Prometheus and unbound.

The test moves into its own network and mount namespaces (it needs root, as
the process tests' runner has), brings loopback up, and bind-mounts its own
/etc/resolv.conf ("nameserver 127.0.0.1"), because Prometheus' dns_sd and
its scrapes resolve through /etc/resolv.conf on port 53. Everything listens
on 127.0.0.0/8 inside that namespace:

- Prometheus http_sd_configs at GET /v1/sd/prometheus: every passing
  instance is an active target scraped up, a deregistered one is dropped
  within one refresh;
- Prometheus dns_sd_configs (SRV) straight at shoal's DNS (on 127.0.0.1:53):
  every instance scraped up through its own SRV target name;
- unbound with a stub zone for the shoal domain, with and without
  stub-prime (shoal's DNS on 127.0.0.2:53, so the primed NS address is
  usable): dig through unbound resolves web.service.shoal A and SRV and
  every SRV target; then Prometheus dns_sd through that unbound scrapes every
  instance (up = 1).

The scrape targets are small HTTP servers started by the test, each serving
/metrics. Every wait is bounded.

Run (as root): /usr/bin/python3 test_consul_external.py --shoal build/shoal
"""

import ctypes
import fcntl
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, fail, free_port, run_tests, test, wait_until  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
UNBOUND = shutil.which("unbound") or ("/usr/sbin/unbound" if os.path.exists("/usr/sbin/unbound")
                                      else None)
DIG = shutil.which("dig")

LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 0x40000, 0x1000
_RESOLV_DIR = None


def enter_namespaces():
    """Own network and mount namespaces, lo up, /etc/resolv.conf -> 127.0.0.1."""
    global _RESOLV_DIR
    if LIBC.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        return "unshare(CLONE_NEWNET|CLONE_NEWNS) failed (errno %d): run as root" % ctypes.get_errno()
    if LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return "cannot make / private in the new mount namespace"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b"\0" * 14))
    finally:
        s.close()
    _RESOLV_DIR = tempfile.mkdtemp(prefix="shoal-resolv-")
    path = os.path.join(_RESOLV_DIR, "resolv.conf")
    with open(path, "w") as f:
        f.write("nameserver 127.0.0.1\noptions attempts:2 timeout:2\n")
    if LIBC.mount(path.encode(), b"/etc/resolv.conf", None, MS_BIND, None) != 0:
        return "cannot bind-mount a resolv.conf (errno %d)" % ctypes.get_errno()
    return None


class MetricsServer:
    """An HTTP server answering GET /metrics, as a scrape target."""

    def __init__(self, host="127.0.0.1"):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"# TYPE shoal_test_up gauge\nshoal_test_up 1\n"
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port(host)
        self.srv = http.server.ThreadingHTTPServer((host, self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Proc:
    """An external server started by a test, killed at the end."""

    def __init__(self, h, argv, name):
        self.log = os.path.join(h.tmp, name + ".log")
        self.f = open(self.log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.f, stderr=self.f, stdin=subprocess.DEVNULL,
                                  preexec_fn=harness._pdeathsig)
        self.name = name

    def tail(self, n=30):
        try:
            with open(self.log, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.f.close()


def need(tool, name):
    if tool is None:
        fail("%s not found: install it (scripts/setup.sh)" % name)


def start_prometheus(h, scrape_configs):
    need(PROMETHEUS, "prometheus")
    port = free_port()
    d = os.path.join(h.tmp, "prom-" + h.uniq())
    os.makedirs(d)
    cfg = {"global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                      "evaluation_interval": "10s"},
           "scrape_configs": scrape_configs}
    path = os.path.join(d, "prometheus.yml")
    with open(path, "w") as f:
        json.dump(cfg, f)  # YAML is a superset of JSON
    p = Proc(h, [PROMETHEUS, "--config.file=" + path, "--storage.tsdb.path=" + d + "/data",
                 "--web.listen-address=127.0.0.1:%d" % port, "--log.level=debug"],
             "prometheus-" + h.uniq())
    p.port = port

    def ready():
        if p.p.poll() is not None:
            fail("prometheus exited:\n" + p.tail())
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(ready, 30, lambda: p.tail(), "prometheus to be ready")
    return p


def targets(prom, job):
    """{address: health} of the active targets of one scrape pool."""
    with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets?state=active" % prom.port,
                                timeout=5) as r:
        doc = json.load(r)
    return {t["labels"]["instance"]: t["health"] for t in doc["data"]["activeTargets"]
            if t["scrapePool"] == job}


def register(a, iid, port, host="127.0.0.1", tags=("prom",)):
    st, _, raw, _ = a.request("PUT", "/v1/agent/service/register", json.dumps(
        {"Name": "web", "ID": iid, "Address": host, "Port": port, "Tags": list(tags)}))
    check(st == 200, "register %s: %s %r" % (iid, st, raw))


def dig(server, port, *args):
    need(DIG, "dig")
    argv = [DIG, "@" + server, "-p", str(port), "+time=3", "+tries=2"] + list(args)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return r.stdout.decode(errors="replace")


def short(server, port, *args):
    return sorted(l for l in dig(server, port, "+short", *args).split("\n") if l)


def web_cluster(h, dns, n_backends=3):
    """One agent with DNS on dns ("IP:PORT") and n web instances, each a
    real /metrics server on 127.0.0.1."""
    a = h.agent("n1", flags=FAST + ["--dns", dns, "--dns-ttl", "1"])
    backends = [MetricsServer() for _ in range(n_backends)]
    for i, b in enumerate(backends):
        register(a, "web-%d" % (i + 1), b.port)
    return a, backends


@test("Prometheus http_sd_configs: every passing instance is a target scraped up; "
      "a deregistered one is dropped within one refresh")
def t_http_sd(h):
    a, backends = web_cluster(h, "127.0.0.1:%d" % free_port())
    prom = start_prometheus(h, [{
        "job_name": "shoal_http_sd",
        "http_sd_configs": [{"url": "http://%s/v1/sd/prometheus?service=web&tag=prom" % a.http,
                             "refresh_interval": "2s"}]}])
    try:
        want = {"127.0.0.1:%d" % b.port for b in backends}
        wait_until(lambda: targets(prom, "shoal_http_sd") == {w: "up" for w in want}, 40,
                   lambda: "%r\n%s" % (targets(prom, "shoal_http_sd"), prom.tail()),
                   "every instance to be a target scraped up")
        st, _, raw, _ = a.request("PUT", "/v1/agent/service/deregister/web-2", "")
        check(st == 200, "deregister: %s %r" % (st, raw))
        t0 = time.monotonic()
        gone = "127.0.0.1:%d" % backends[1].port
        # one refresh (2 s), plus Prometheus' own 5 s throttle on passing
        # discovery updates to the scrape manager, plus slack for a busy machine
        wait_until(lambda: gone not in targets(prom, "shoal_http_sd"), 2 + 5 + 5,
                   lambda: "%r" % targets(prom, "shoal_http_sd"),
                   "the deregistered target to be dropped")
        dt = time.monotonic() - t0
        h.note("deregistered target dropped by Prometheus after %.1f s (refresh 2 s)" % dt)
    finally:
        prom.stop()
        for b in backends:
            b.close()


@test("Prometheus dns_sd_configs (SRV) at shoal's DNS: every instance scraped up")
def t_dns_sd_direct(h):
    a, backends = web_cluster(h, "127.0.0.1:53")
    prom = start_prometheus(h, [{
        "job_name": "shoal_dns_sd",
        "dns_sd_configs": [{"names": ["_web._tcp.service.shoal"], "type": "SRV",
                            "refresh_interval": "2s"}]}])
    try:
        wait_until(lambda: len(targets(prom, "shoal_dns_sd")) == 3 and
                   set(targets(prom, "shoal_dns_sd").values()) == {"up"}, 40,
                   lambda: "%r\n%s" % (targets(prom, "shoal_dns_sd"), prom.tail()),
                   "3 SRV targets scraped up")
        names = sorted(targets(prom, "shoal_dns_sd"))
        check(all(".addr.shoal:" in n for n in names) and len(set(names)) == 3,
              "one target name per instance: %r" % names)
    finally:
        prom.stop()
        for b in backends:
            b.close()


def start_unbound(h, shoal_dns, prime):
    need(UNBOUND, "unbound")
    d = os.path.join(h.tmp, "unbound-" + h.uniq())
    os.makedirs(d)
    host, port = shoal_dns.split(":")
    conf = os.path.join(d, "unbound.conf")
    with open(conf, "w") as f:
        f.write("""server:
    interface: 127.0.0.1@53
    do-ip6: no
    username: ""
    chroot: ""
    directory: "%s"
    pidfile: "%s/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    num-threads: 1
stub-zone:
    name: "shoal"
    stub-addr: %s@%s
    stub-prime: %s
remote-control:
    control-enable: no
""" % (d, d, host, port, "yes" if prime else "no"))
    p = Proc(h, [UNBOUND, "-d", "-c", conf], "unbound-" + h.uniq())
    wait_until(lambda: p.p.poll() is None and
               "status: " in dig("127.0.0.1", 53, "+tries=1", "+time=1", "shoal", "SOA"),
               20, lambda: p.tail(), "unbound to answer")
    return p


def check_through_unbound(backends):
    ips = short("127.0.0.1", 53, "web.service.shoal")
    check(ips == ["127.0.0.1"], "A through unbound: %r" % ips)  # identical records collapsed
    srv = short("127.0.0.1", 53, "-t", "SRV", "_web._tcp.service.shoal")
    ports = sorted(int(r.split()[2]) for r in srv)
    check(ports == sorted(b.port for b in backends), "SRV through unbound: %r" % srv)
    tnames = {r.split()[3] for r in srv}
    check(len(tnames) == 3, "one target per instance: %r" % srv)
    for t in tnames:
        check(short("127.0.0.1", 53, t) == ["127.0.0.1"], "target %s through unbound" % t)
        out = dig("127.0.0.1", 53, t, "AAAA")
        check("status: NOERROR" in out, "AAAA of %s: NODATA expected\n%s" % (t, out))
    out = dig("127.0.0.1", 53, "_tcp.service.shoal")
    check("status: NOERROR" in out, "_tcp.service.shoal through unbound:\n" + out)


@test("unbound with a stub zone (stub-prime no and yes) resolves A, SRV and every SRV target")
def t_unbound(h):
    # shoal's DNS on port 53 of another loopback address: the NS address a
    # primed stub learns from the apex is usable as it is
    a, backends = web_cluster(h, "127.0.0.2:53")
    try:
        for prime in (False, True):
            ub = start_unbound(h, "127.0.0.2:53", prime)
            try:
                check_through_unbound(backends)
            except harness.TestFailure as e:
                raise harness.TestFailure("stub-prime %s: %s\n%s" % (prime, e, ub.tail()))
            finally:
                ub.stop()
    finally:
        for b in backends:
            b.close()


@test("Prometheus dns_sd_configs through unbound scrapes every instance (up = 1)")
def t_dns_sd_unbound(h):
    port = free_port()
    a, backends = web_cluster(h, "127.0.0.1:%d" % port)
    ub = start_unbound(h, "127.0.0.1:%d" % port, False)
    prom = None
    try:
        check_through_unbound(backends)
        prom = start_prometheus(h, [{
            "job_name": "via_unbound",
            "dns_sd_configs": [{"names": ["_web._tcp.service.shoal"], "type": "SRV",
                                "refresh_interval": "2s"}]}])
        wait_until(lambda: len(targets(prom, "via_unbound")) == 3 and
                   set(targets(prom, "via_unbound").values()) == {"up"}, 40,
                   lambda: "%r\n%s\n%s" % (targets(prom, "via_unbound"), prom.tail(), ub.tail()),
                   "3 targets through unbound scraped up")
    finally:
        if prom:
            prom.stop()
        ub.stop()
        for b in backends:
            b.close()


if __name__ == "__main__":
    why = enter_namespaces()
    if why:
        print("FAILED setup: " + why)
        print("0 passed, 1 failed")
        sys.exit(1)
    run_tests()

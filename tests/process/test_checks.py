"""test_checks.py -- active health checks with real agents and real backends.

Loopback clusters of 3 agents (harness.FAST settings, one cluster key). The
test starts its own backends: a threaded http.server whose answer per path
the test changes (200, 429, 500, or hang: never answer), and a TCP listener
it can close. Checks run only on the owner; their results reach every node
as versioned registry events. Covers: failing -> critical everywhere and
recovery, 429 -> warning, a hung backend -> timeout, TCP, damping
(--check-fall), deregister-critical-after, service files and the CLI table.

Run: /usr/bin/python3 test_checks.py --shoal build/shoal [-k NAME] [--keep]
"""

import http.server
import json
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, run_tests, test, wait_until  # noqa: E402

REG = FAST + ["--sync-interval", "2s"]


class Backend:
    """A loopback HTTP server: answers[path] is an int status or "hang"."""

    def __init__(self):
        self.answers = {}
        self.hits = {}
        self.release = threading.Event()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                a = backend.answers.get(self.path, 404)
                backend.hits[self.path] = backend.hits.get(self.path, 0) + 1
                if a == "hang":
                    backend.release.wait(30)
                    return
                body = b"status %d" % a
                self.send_response(a)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()


class TcpListener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def cluster(h, n=3, extra=(), owner_flags=()):
    key = h.keygen()
    nodes = []
    for k in range(1, n + 1):
        flags = REG + list(extra) + (list(owner_flags) if k == 2 else [])
        nodes.append(h.agent("n%d" % k, key=key, join=nodes[:1], flags=flags))
    h.wait_view(nodes, {a.name: "alive" for a in nodes}, what="%d nodes to converge" % n)
    return nodes


def instance(a, service, iid):
    doc = a.get("/v1/instances/%s?all=1" % service)
    for i in (doc or {}).get("instances", []):
        if i["id"] == iid:
            return i
    return None


def wait_status(h, nodes, service, iid, status, what, timeout=harness.DEADLINE):
    def ok():
        return all((instance(a, service, iid) or {}).get("status") == status for a in nodes)

    def describe():
        return "\n".join("%s: %s" % (a.name, json.dumps(instance(a, service, iid)))
                         for a in nodes)
    wait_until(ok, timeout=timeout, describe=describe, what=what)


def shoal(h, a, *args, rc=0):
    r = h.cli(list(args) + ["--http", a.http])
    check(r.rc == rc, lambda: "%r (wanted exit %d)" % (r, rc))
    return r


@test("an HTTP backend that starts failing goes critical on every node; recovery brings it back")
def t_fail_recover(h):
    be = Backend()
    try:
        be.answers["/health"] = 200
        nodes = cluster(h)
        owner = nodes[1]
        shoal(h, owner, "register", "--service", "web", "--id", "web-1", "--address",
              "127.0.0.1", "--port", str(be.port), "--check-http", be.url("/health"),
              "--interval", "500ms", "--timeout", "300ms")
        wait_status(h, nodes, "web", "web-1", "passing", "web-1 passing everywhere")
        c = instance(nodes[0], "web", "web-1")["checks"][0]
        check(c["kind"] == "http" and c["target"] == be.url("/health") and
              c["interval_ms"] == 500 and c["timeout_ms"] == 300, lambda: repr(c))
        t0 = time.monotonic()
        be.answers["/health"] = 500
        wait_status(h, nodes, "web", "web-1", "critical", "web-1 critical everywhere")
        h.note("backend fails -> critical on all 3 nodes in %.2f s" % (time.monotonic() - t0))
        out = instance(nodes[2], "web", "web-1")["checks"][0]["output"]
        check(": 500" in out, lambda: "output on n3: %r" % out)
        check(instance(nodes[0], "web", "web-1")["owner"] == "n2", lambda: "owner")
        # Only passing instances by default.
        check(nodes[0].get("/v1/instances/web")["instances"] == [], lambda: "still served")
        be.answers["/health"] = 200
        wait_status(h, nodes, "web", "web-1", "passing", "web-1 passing again everywhere")
        # The backend is probed by the owner only: about 2 per second.
        hits0 = be.hits.get("/health", 0)
        time.sleep(2.0)
        rate = (be.hits.get("/health", 0) - hits0) / 2.0
        check(rate <= 3.5, lambda: "%.1f probes/s for a 500ms interval (only the owner "
              "should probe)" % rate)
    finally:
        be.close()


@test("429 gives warning, a hung backend hits its timeout, TCP up/down (API registration)")
def t_statuses(h):
    be = Backend()
    tcp = TcpListener()
    try:
        be.answers.update({"/busy": 429, "/hang": "hang"})
        nodes = cluster(h)
        owner = nodes[1]
        dead = TcpListener()
        dead_port = dead.port
        dead.close()
        for iid, checks in [("busy", [{"http": be.url("/busy"), "interval": "500ms",
                                       "timeout": "200ms"}]),
                            ("hung", [{"http": be.url("/hang"), "interval": "1s",
                                       "timeout": "300ms"}]),
                            ("tcp-up", [{"tcp": "127.0.0.1:%d" % tcp.port, "interval": 500}]),
                            ("tcp-down", [{"tcp": "127.0.0.1:%d" % dead_port,
                                           "interval": "500ms"}])]:
            doc = owner.post("/v1/register", {"id": iid, "service": "st", "address": "127.0.0.1",
                                              "port": 1, "checks": checks})
            check(doc and doc.get("registered") == iid, lambda: "register %s: %r" % (iid, doc))
        wait_status(h, nodes, "st", "busy", "warning", "429 -> warning everywhere")
        # A new check starts critical: wait for the timeout's own output.
        wait_until(lambda: "timed out" in instance(owner, "st", "hung")["checks"][0]["output"],
                   what="the hung backend's probe to time out")
        wait_status(h, nodes, "st", "hung", "critical", "hung -> critical everywhere")
        wait_status(h, nodes, "st", "tcp-up", "passing", "tcp listener -> passing")
        wait_until(lambda: "refused" in instance(owner, "st", "tcp-down")["checks"][0]["output"],
                   what="the closed port's probe to be refused")
        wait_status(h, nodes, "st", "tcp-down", "critical", "closed port -> critical")
        out = instance(owner, "st", "hung")["checks"][0]["output"]
        check("timed out" in out.lower() or "timeout" in out.lower(),
              lambda: "hung output: %r" % out)
        out = instance(owner, "st", "tcp-down")["checks"][0]["output"]
        check("refused" in out, lambda: "tcp-down output: %r" % out)
        tcp.close()
        wait_status(h, nodes, "st", "tcp-up", "critical", "listener closed -> critical")
        # Bad input: a clear 400 naming the field, nothing registered.
        st, doc, raw, _ = harness.http_request(owner.http, "POST", "/v1/register", json.dumps(
            {"id": "bad", "service": "st", "address": "127.0.0.1", "port": 1,
             "checks": [{"http": be.url("/x"), "interval": "1s", "timeout": "2s"}]}).encode())
        check(st == 400 and "timeout" in raw.decode(), lambda: "%s %r" % (st, raw))
        st, doc, raw, _ = harness.http_request(owner.http, "POST", "/v1/register", json.dumps(
            {"id": "bad", "service": "st", "address": "127.0.0.1", "port": 1,
             "checks": [{"grpc": "x"}]}).encode())
        check(st == 400 and "checks" in raw.decode(), lambda: "%s %r" % (st, raw))
        check(instance(owner, "st", "bad") is None, lambda: "bad registered")
    finally:
        be.close()
        tcp.close()


@test("damping: with --check-fall 3, two failures do not flip it and the third does")
def t_damping(h):
    be = Backend()
    try:
        be.answers["/h"] = 200
        nodes = cluster(h, owner_flags=["--check-fall", "3", "--check-rise", "2"])
        owner = nodes[1]
        shoal(h, owner, "register", "--service", "dmp", "--id", "d-1", "--address",
              "127.0.0.1", "--port", "1", "--check-http", be.url("/h"), "--interval", "1s",
              "--timeout", "500ms")
        wait_status(h, nodes, "dmp", "d-1", "passing", "d-1 passing (after 2 successes)")
        be.answers["/h"] = 500
        base = be.hits.get("/h", 0)
        wait_until(lambda: be.hits.get("/h", 0) >= base + 2, what="two failing probes")
        time.sleep(0.2)  # the result is reported; the third probe is ~0.8 s away
        i = instance(owner, "dmp", "d-1")
        check(i["status"] == "passing" and "failure 2/3" in i["checks"][0]["output"],
              lambda: "after 2 failures: %r" % i)
        wait_status(h, nodes, "dmp", "d-1", "critical", "critical after the third failure")
        check(be.hits.get("/h", 0) >= base + 3, lambda: "critical before 3 failures")
        be.answers["/h"] = 200
        base = be.hits.get("/h", 0)
        wait_until(lambda: be.hits.get("/h", 0) >= base + 1, what="one passing probe")
        time.sleep(0.2)
        i = instance(owner, "dmp", "d-1")
        check(i["status"] == "critical", lambda: "passing after 1 success (rise 2): %r" % i)
        wait_status(h, nodes, "dmp", "d-1", "passing", "passing after the second success")
    finally:
        be.close()


@test("deregister-critical-after removes a critical instance everywhere; files and table")
def t_deregister_critical(h):
    be = Backend()
    try:
        be.answers["/ok"] = 200
        conf = os.path.join(h.tmp, "conf")
        os.makedirs(conf)
        with open(os.path.join(conf, "f.service"), "w") as f:
            f.write("[service]\nid = f-1\nservice = filed\naddress = 127.0.0.1\nport = 1\n"
                    "check.http = %s\ncheck.interval = 500ms\ncheck.timeout = 200ms\n"
                    "check.tcp = 127.0.0.1:%d\nderegister-critical-after = 1h\n"
                    % (be.url("/ok"), be.port))
        nodes = cluster(h, owner_flags=["--config-dir", conf])
        owner = nodes[1]
        wait_status(h, nodes, "filed", "f-1", "passing", "file-defined checks passing")
        i = instance(nodes[0], "filed", "f-1")
        check(len(i["checks"]) == 2 and i["checks"][1]["kind"] == "tcp" and
              i["deregister_critical_after_ms"] == 3600000, lambda: repr(i))
        r = shoal(h, nodes[0], "instances", "filed")
        check("CHECKS" in r.out and "http:passing,tcp:passing" in r.out and
              "f-1 check 1 http %s passing: HTTP GET" % be.url("/ok") in r.out,
              lambda: "table:\n" + r.out)

        shoal(h, owner, "register", "--service", "gone", "--id", "g-1", "--address",
              "127.0.0.1", "--port", "1", "--check-http", be.url("/missing"), "--interval",
              "500ms", "--deregister-critical-after", "2s")
        wait_status(h, nodes, "gone", "g-1", "critical", "g-1 critical everywhere")
        t0 = time.monotonic()
        wait_until(lambda: all(instance(a, "gone", "g-1") is None for a in nodes),
                   what="g-1 deregistered everywhere")
        dt = time.monotonic() - t0
        h.note("critical -> removed everywhere in %.2f s (deregister-critical-after 2s)" % dt)
        r = shoal(h, owner, "register", "--service", "gone", "--id", "g-2", "--address",
                  "127.0.0.1", "--port", "1", "--interval", "1s", rc=2)
        check("--interval must follow" in r.err, lambda: repr(r))
    finally:
        be.close()


if __name__ == "__main__":
    run_tests()

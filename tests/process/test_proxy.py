"""test_proxy.py -- `shoal proxy` with a real agent and real TCP backends.

Each test starts one agent, its own backends (threaded TCP servers on
loopback that send their name on a line, then echo; the test can close a
backend's listener and every connection it holds) and a `shoal proxy`
process in front of a service whose instances the test registers. Counters
come from the proxy's "stats:" log line (SIGUSR1 asks for one).

Covers: round-robin shares, least-conn with long-lived connections, ip-hash
stickiness, a refused connect retried on another instance, a killed TTL
backend causing no failed new connection once critical, connections to a
deregistered instance closed on both sides while others live on, no
instance -> closed at once, half-close and a bulk transfer through the
bounded buffers (backpressure).

Run: /usr/bin/python3 test_proxy.py --shoal build/shoal [-k NAME] [--keep]
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, fail, free_port, run_tests, test, wait_until  # noqa: E402

IO_TIMEOUT = 10.0  # every socket operation of the test is bounded by this


class Backend:
    """A TCP server: on accept sends "NAME\\n", then echoes. With
    bye_on_eof, answers a client's EOF with "bye\\n" and closes."""

    def __init__(self, name, bye_on_eof=False):
        self.name = name
        self.bye_on_eof = bye_on_eof
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.conns = set()
        self.accepted = 0
        self.lock = threading.Lock()
        self.closed = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    c.close()
                    return
                self.conns.add(c)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(self.name.encode() + b"\n")
            while True:
                d = c.recv(65536)
                if not d:
                    if self.bye_on_eof:
                        c.sendall(b"bye\n")
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def live(self):
        with self.lock:
            return len(self.conns)

    def kill(self):
        """Stops listening and resets every connection (a crashed server)."""
        self.closed = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for c in list(self.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns.clear()


class Proxy:
    def __init__(self, h, agent, service, strategy=None, extra=()):
        self.h = h
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.log_path = os.path.join(h.tmp, "proxy-%s.log" % h.uniq())
        argv = [h.shoal, "proxy", "--listen", self.addr, "--service", service,
                "--http", agent.http, "--connect-timeout", "1s"]
        if strategy:
            argv += ["--strategy", strategy]
        argv += list(extra)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, preexec_fn=harness._pdeathsig)
        h.proxies.append(self)
        wait_until(lambda: "listening on" in self.text() or self.proc.poll() is not None,
                   10, self.describe, "the proxy to listen")
        check(self.proc.poll() is None, lambda: "proxy exited\n" + self.describe())

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def describe(self):
        return "proxy log:\n" + "".join("    " + l + "\n" for l in self.text().splitlines()[-30:])

    def wait_set(self, n, timeout=15):
        """Waits for the log line announcing an instance set of n."""
        pat = re.compile(r": %d instances? \(index" % n)

        def ok():
            lines = [l for l in self.text().splitlines() if "(index" in l]
            return lines and pat.search(lines[-1])
        wait_until(ok, timeout, self.describe, "the proxy to hold %d instances" % n)

    def stats(self):
        """Asks for a stats line (SIGUSR1) and returns it as a dict."""
        before = self.text().count("stats:")
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.text().count("stats:") > before, 5, self.describe, "a stats line")
        line = [l for l in self.text().splitlines() if "stats:" in l][-1]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def finish(self):
        """SIGTERM: the proxy must stop promptly (its watcher thread sits in a
        5-minute blocking query), exit 0, log its final counters and no
        sanitizer report."""
        t0 = time.monotonic()
        self.proc.terminate()
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            fail("the proxy did not stop within 5 s of SIGTERM\n" + self.describe())
        text = self.text()
        check(rc == 0 and "Sanitizer" not in text and "stats:" in text.split("stopping")[-1],
              lambda: "proxy exit %s after %.1f s\n%s" % (rc, time.monotonic() - t0,
                                                          self.describe()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def connect(addr, src=None):
    """Connects through the proxy; returns (socket, backend name or None if
    the proxy closed the connection without one)."""
    host, port = harness.hostport(addr)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    if src:
        s.bind((src, 0))
    s.connect((host, port))
    line = b""
    while not line.endswith(b"\n"):
        try:
            d = s.recv(1)
        except ConnectionResetError:
            d = b""
        if not d:
            s.close()
            return None, None
        line += d
    return s, line.decode().strip()


def echo(s, data=b"ping\n"):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = s.recv(65536)
        if not d:
            fail("connection closed during an echo (%d of %d bytes)" % (len(got), len(data)))
        got += d
    check(got == data, "echo returned different bytes")


def register(agent, iid, port, service="web", ttl=None, address="127.0.0.1"):
    body = {"id": iid, "service": service, "address": address, "port": port}
    if ttl:
        body["ttl"] = ttl
    st, doc, raw, _ = agent.request("POST", "/v1/register", body)
    check(st == 200, lambda: "register %s: %s %r" % (iid, st, raw))


def setup(h, n, **kw):
    """An agent, n backends b1..bn registered as web instances."""
    a = h.agent("n1", flags=FAST)
    bs = [Backend("b%d" % (i + 1), **kw) for i in range(n)]
    h.backends.extend(bs)
    for b in bs:
        register(a, b.name, b.port)
    return a, bs


def _harness_init(h):
    h.proxies = []
    h.backends = []


_orig_close = harness.Harness.close


def _close(self, failed=False):
    for p in getattr(self, "proxies", []):
        if failed:
            sys.stdout.write(p.describe())
        p.stop()
    for b in getattr(self, "backends", []):
        b.kill()
    _orig_close(self, failed)


harness.Harness.close = _close
_orig_init = harness.Harness.__init__


def _init(self, *a, **kw):
    _orig_init(self, *a, **kw)
    _harness_init(self)


harness.Harness.__init__ = _init


def ptest(name):
    """@test, then every proxy of the test must stop cleanly (Proxy.finish)."""
    def deco(fn):
        def run(h):
            fn(h)
            for p in h.proxies:
                if p.proc.poll() is None:
                    p.finish()
        run.__name__ = fn.__name__
        return test(name)(run)
    return deco


# ---------------------------------------------------------------- tests

@ptest("round-robin gives each of three backends its share, and bytes echo through")
def t_round_robin(h):
    a, bs = setup(h, 3)
    p = Proxy(h, a, "web", "round-robin")
    p.wait_set(3)
    counts = {}
    for _ in range(30):
        s, name = connect(p.addr)
        check(name is not None, "a connection was closed without a backend")
        echo(s, b"hello %s\n" % name.encode())
        s.close()
        counts[name] = counts.get(name, 0) + 1
    check(counts == {"b1": 10, "b2": 10, "b3": 10}, "round-robin shares: %r" % counts)
    st = p.stats()
    check(st["accepted"] == 30 and st["connected"] == 30 and st["failed_connect"] == 0,
          "stats %r" % st)


@ptest("a new instance gets new connections at once; least-conn balances long-lived ones")
def t_least_conn(h):
    a, bs = setup(h, 2)
    p = Proxy(h, a, "web", "least-conn")
    p.wait_set(2)
    held = [connect(p.addr) for _ in range(4)]
    check(sorted(n for _, n in held) == ["b1", "b1", "b2", "b2"],
          "4 connections over 2: %r" % [n for _, n in held])
    b3 = Backend("b3")
    h.backends.append(b3)
    t0 = time.monotonic()
    register(a, "b3", b3.port)
    p.wait_set(3)
    h.note("new instance in the proxy's set %.0f ms after register" % ((time.monotonic() - t0) * 1e3))
    more = [connect(p.addr) for _ in range(2)]
    check([n for _, n in more] == ["b3", "b3"], "least-conn sent %r, not both to b3" %
          [n for _, n in more])
    held += more
    # Close both b1 connections: the next two go to b1.
    for s, n in held:
        if n == "b1":
            s.close()
    wait_until(lambda: bs[0].live() == 0, 10, what="b1's connections to close")
    wait_until(lambda: p.stats()["active"] == 4, 10, p.describe, "the proxy to count 4 live")
    again = [connect(p.addr) for _ in range(2)]
    check([n for _, n in again] == ["b1", "b1"], "after closing b1's: %r" % [n for _, n in again])
    for s, _ in held + again:
        s.close()


@ptest("ip-hash keeps one client on one instance, and spreads different clients")
def t_ip_hash(h):
    a, bs = setup(h, 3)
    p = Proxy(h, a, "web", "ip-hash")
    p.wait_set(3)
    names = set()
    for _ in range(15):
        s, n = connect(p.addr, src="127.0.0.1")
        names.add(n)
        s.close()
    check(len(names) == 1, "one client went to %r" % names)
    sticky = names.pop()
    spread = set()
    for i in range(2, 40):
        s, n = connect(p.addr, src="127.0.0.%d" % i)
        spread.add(n)
        s.close()
    check(len(spread) >= 2, "38 client IPs all on %r" % spread)
    # Removing another instance does not move the client (rendezvous hashing).
    other = [b for b in bs if b.name != sticky][0]
    st, _, raw, _ = a.request("POST", "/v1/deregister/" + other.name)
    check(st == 200, lambda: "deregister: %s %r" % (st, raw))
    p.wait_set(2)
    for _ in range(5):
        s, n = connect(p.addr, src="127.0.0.1")
        check(n == sticky, "client moved from %s to %s" % (sticky, n))
        s.close()


@ptest("a refused connect is retried on another instance")
def t_refused_retry(h):
    a, bs = setup(h, 2)
    dead = free_port()  # nothing listens there
    register(a, "dead", dead)
    p = Proxy(h, a, "web", "round-robin")
    p.wait_set(3)
    for _ in range(12):
        s, n = connect(p.addr)
        check(n in ("b1", "b2"), "connection got %r" % n)
        echo(s)
        s.close()
    st = p.stats()
    check(st["failed_connect"] >= 4 and st["retries"] == st["failed_connect"]
          and st["connected"] == 12 and st["no_instance"] == 0, "stats %r" % st)


@ptest("a killed TTL backend causes no failed new connection once it is critical")
def t_killed_backend(h):
    a = h.agent("n1", flags=FAST)
    bs = [Backend("b%d" % (i + 1)) for i in range(3)]
    h.backends.extend(bs)
    for b in bs:
        register(a, b.name, b.port, ttl="1s")
    beating = {b.name for b in bs}
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            for n in list(beating):
                try:
                    a.request("POST", "/v1/heartbeat/" + n, timeout=2)
                except (OSError, harness.TestFailure):
                    pass
            stop.wait(0.2)
    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        p = Proxy(h, a, "web", "round-robin")
        p.wait_set(3)
        for _ in range(6):
            s, n = connect(p.addr)
            check(n is not None, "closed before the kill")
            s.close()
        beating.discard("b2")
        bs[1].kill()
        p.wait_set(2)  # b2 critical: out of the passing set
        before = p.stats()
        got = {}
        for _ in range(30):
            s, n = connect(p.addr)
            check(n is not None, "a new connection failed after b2 went critical")
            echo(s)
            s.close()
            got[n] = got.get(n, 0) + 1
        after = p.stats()
        check(set(got) == {"b1", "b3"}, "connections went to %r" % got)
        check(after["failed_connect"] == before["failed_connect"] and after["no_instance"] == 0,
              "failed connects after critical: before %r after %r" % (before, after))
    finally:
        stop.set()
        t.join(5)


@ptest("connections to a deregistered instance are closed, others live on")
def t_deregister_closes(h):
    a, bs = setup(h, 2)
    p = Proxy(h, a, "web", "round-robin")
    p.wait_set(2)
    s1, n1 = connect(p.addr)
    s2, n2 = connect(p.addr)
    check({n1, n2} == {"b1", "b2"}, "two connections: %s %s" % (n1, n2))
    gone, stay = (s1, s2) if n1 == "b1" else (s2, s1)
    st, _, raw, _ = a.request("POST", "/v1/deregister/b1")
    check(st == 200, lambda: "deregister: %s %r" % (st, raw))
    gone.settimeout(5)
    try:
        d = gone.recv(100)
    except (ConnectionResetError, socket.timeout) as e:
        d = e
    check(d == b"" or isinstance(d, ConnectionResetError),
          "the client of the deregistered instance got %r, not a close" % (d,))
    wait_until(lambda: bs[0].live() == 0, 10, what="b1's side to be closed too")
    echo(stay, b"still here\n")
    st = p.stats()
    check(st["removed"] == 1 and st["active"] == 1, "stats %r" % st)
    s3, n3 = connect(p.addr)
    check(n3 == "b2", "a new connection went to %s" % n3)
    for s in (gone, stay, s3):
        s.close()


@ptest("with no instance the client is closed at once and counted")
def t_no_instance(h):
    a = h.agent("n1", flags=FAST)
    p = Proxy(h, a, "nothing-here")
    p.wait_set(0)
    t0 = time.monotonic()
    s, n = connect(p.addr)
    check(n is None, "got a backend %r" % n)
    dt = time.monotonic() - t0
    check(dt < 2.0, "closing took %.1f s" % dt)
    check(p.stats()["no_instance"] == 1, "no_instance not counted")


@ptest("half-close passes through, and 8 MB echo intact through the bounded buffers")
def t_half_close_bulk(h):
    a, bs = setup(h, 1, bye_on_eof=True)
    p = Proxy(h, a, "web")
    p.wait_set(1)
    s, n = connect(p.addr)
    payload = os.urandom(8 << 20)
    got = bytearray()

    def reader():
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    return
                got.extend(d)
        except OSError:
            pass
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # our EOF reaches the backend, which answers "bye"
    t.join(IO_TIMEOUT * 3)
    check(not t.is_alive(), "no EOF after half-close (%d bytes so far)" % len(got))
    check(bytes(got) == payload + b"bye\n", "got %d bytes, want %d + bye" %
          (len(got), len(payload)))
    s.close()
    wait_until(lambda: p.stats()["active"] == 0, 10, p.describe, "the connection to end")


if __name__ == "__main__":
    run_tests()

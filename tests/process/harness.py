"""harness.py -- run real shoal agents on loopback for the process tests.

A test file registers behaviours with @test("...") and ends with run_tests().
Each test gets a fresh Harness: a temp dir, agents started through it, and a
guarantee that every agent is killed and the temp dir removed afterwards
(also on Ctrl-C, SIGTERM from ctest, or the runner dying: PR_SET_PDEATHSIG).

The runner prints "ok NAME (T s)" or "FAILED NAME (T s)" per test, the
failure's details (the relevant nodes' /v1/members and log tails), and a last
line "N passed, N failed"; it exits 1 on any failure.

Every wait is bounded: wait_until() polls with a deadline and fails with a
description of the state it was waiting on. Deadlines are generous; the
protocol settings (FAST) are short, so only a real bug can exceed them.

Usage: python3 test_x.py --shoal build/shoal [-k SUBSTRING] [--keep] [-v]
"""

import argparse
import atexit
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

# Short protocol settings: probe every 200 ms, push-pull every 2 s. With
# 5-6 nodes a kill -9 is detected in a few seconds; deadlines are 30-60 s.
FAST = [
    "--probe-interval", "200ms",
    "--probe-timeout", "100ms",
    "--gossip-interval", "50ms",
    "--pushpull-interval", "2s",
    "--suspicion-mult", "4",
    "--gossip-to-dead", "10s",
    "--leave-timeout", "2s",
]

DEADLINE = 45.0  # seconds: the default bound of any wait

_LIVE = set()  # every Agent still running, for the atexit/signal sweep

# Default Harness.describers for every test of a file (a test file appends).
DESCRIBERS = []


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg() if callable(msg) else msg)


# ---------------------------------------------------------------- processes

def _pdeathsig():
    """preexec_fn: the child gets SIGKILL when the runner dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _sweep():
    for a in list(_LIVE):
        a.kill9(quiet=True)


atexit.register(_sweep)


def _on_signal(signum, frame):
    _sweep()
    sys.stderr.write("harness: killed by signal %d\n" % signum)
    os._exit(1)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)

# ---------------------------------------------------------------- ports

_handed_out = set()


def free_port(host="127.0.0.1"):
    """A port free for both TCP and UDP on host, never handed out before in
    this run (bind port 0 to let the kernel choose, then check the other
    protocol)."""
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((host, 0))
            port = t.getsockname()[1]
            if port in _handed_out:
                continue
            try:
                u.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
        finally:
            t.close()
            u.close()
    fail("no free port found on %s" % host)


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


# ---------------------------------------------------------------- HTTP

def http_request(addr, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request to addr "IP:PORT". body: bytes, str or a JSON-able
    object. Returns (status, parsed JSON or None, raw bytes, headers)."""
    h, p = hostport(addr)
    conn = http.client.HTTPConnection(h, p, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        try:
            doc = json.loads(raw.decode()) if raw else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        return r.status, doc, raw, dict(r.getheaders())
    finally:
        conn.close()


# ---------------------------------------------------------------- CLI

class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return "`%s` -> exit %s\n  stdout: %s\n  stderr: %s" % (
            " ".join(self.argv), self.rc, self.out.strip()[:2000] or "(empty)",
            self.err.strip()[:2000] or "(empty)")


def run_cli(shoal, args, env=None, timeout=30.0):
    """Runs `shoal ARGS` to completion (bounded). Returns a Result."""
    argv = [shoal] + list(args)
    e = dict(os.environ)
    e.pop("SHOAL_HTTP_ADDR", None)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=e, preexec_fn=_pdeathsig)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        fail("`%s` did not finish within %.0f s\n  stdout: %s\n  stderr: %s" % (
            " ".join(argv), timeout, out.decode(errors="replace")[-1000:],
            err.decode(errors="replace")[-1000:]))
    return Result(argv, p.returncode, out.decode(errors="replace"),
                  err.decode(errors="replace"))


# ---------------------------------------------------------------- waiting

def wait_until(pred, timeout=DEADLINE, describe=None, what="condition", interval=0.1):
    """Polls pred() until it returns a true value (which is returned), at
    most `timeout` seconds. On timeout fails with `what` and describe()'s
    text (the state being waited on)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except TestFailure:
            raise
        except Exception as e:  # an agent not answering yet, a refused connection
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = "timed out after %.0f s waiting for %s" % (timeout, what)
    if last_exc is not None:
        msg += "\n  last error: %r" % (last_exc,)
    if describe is not None:
        try:
            msg += "\n" + (describe() if callable(describe) else str(describe))
        except Exception as e:
            msg += "\n  (describe failed: %r)" % (e,)
    fail(msg)


# ---------------------------------------------------------------- agents

class Agent:
    """One `shoal agent` process with its own data dir and log file."""

    def __init__(self, h, name, data_dir=None, key=None, join=(), flags=None,
                 bind=None, http=None):
        self.h = h
        self.name = name
        self.data_dir = data_dir or os.path.join(h.tmp, "data-" + name + "-" + h.uniq())
        self.key = key
        self.join = list(join)
        self.flags = list(FAST if flags is None else flags)
        self._fixed_ports = bind is not None
        self.bind = bind or "127.0.0.1:%d" % free_port()
        self.http = http or "127.0.0.1:%d" % free_port()
        self.log_path = os.path.join(h.tmp, "log-%s-%s.txt" % (name, h.uniq()))
        self.proc = None
        self.rc = None
        self.starts = 0

    # -- life cycle

    def argv(self):
        a = [self.h.shoal, "agent", "--name", self.name, "--bind", self.bind,
             "--http", self.http, "--data-dir", self.data_dir]
        if self.key:
            a += ["--cluster-key", self.key]
        for j in self.join:
            a += ["--join", j.addr if isinstance(j, Agent) else j]
        return a + self.flags

    def start(self, wait=True):
        """Starts the process; with wait, until /v1/info answers. A start
        that loses a port race (EADDRINUSE on ports chosen here) is retried
        on new ports."""
        for attempt in range(3):
            os.makedirs(self.data_dir, exist_ok=True)
            self._log = open(self.log_path, "ab")
            self._log.write(("=== start %d: %s\n" % (self.starts + 1, " ".join(self.argv()))).encode())
            self._log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=self._log,
                                         stdin=subprocess.DEVNULL, preexec_fn=_pdeathsig)
            self.rc = None
            self.starts += 1
            _LIVE.add(self)
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except TestFailure:
                if (self.proc.poll() is not None and not self._fixed_ports
                        and "in use" in self.log_tail(5).lower() and attempt < 2):
                    self.bind = "127.0.0.1:%d" % free_port()
                    self.http = "127.0.0.1:%d" % free_port()
                    continue
                raise
        return self

    def wait_ready(self, timeout=20.0):
        def ready():
            if self.proc.poll() is not None:
                fail("agent %s exited with %s during start-up\n%s" % (
                    self.name, self.proc.returncode, self.describe()))
            st, doc, _, _ = http_request(self.http, "GET", "/v1/info", timeout=2)
            return st == 200 and isinstance(doc, dict)
        wait_until(ready, timeout, self.describe, "agent %s to answer GET /v1/info" % self.name)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _reaped(self):
        self.rc = self.proc.returncode
        _LIVE.discard(self)
        try:
            self._log.close()
        except Exception:
            pass

    def kill9(self, quiet=False):
        """SIGKILL (a crash). Returns once the process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                if not quiet:
                    fail("agent %s survived SIGKILL for 10 s" % self.name)
        self._reaped()

    def term(self, timeout=30.0):
        """SIGTERM (graceful leave); waits for the exit, returns its status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=30.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            d = self.describe()
            self.kill9(quiet=True)
            fail("agent %s did not exit within %.0f s\n%s" % (self.name, timeout, d))
        self._reaped()
        return rc

    # -- HTTP

    def request(self, method, path, body=None, **kw):
        if self.proc is not None and self.proc.poll() is not None:
            fail("agent %s exited with status %s (%s %s)\n%s" % (
                self.name, self.proc.returncode, method, path, self.describe()))
        return http_request(self.http, method, path, body, **kw)

    def get(self, path):
        st, doc, raw, _ = self.request("GET", path)
        check(st == 200 and doc is not None, lambda: "GET %s on %s: status %s, body %r" % (
            path, self.name, st, raw[:500]))
        return doc

    def post(self, path, body=None):
        st, doc, raw, _ = self.request("POST", path, body)
        check(st == 200 and doc is not None, lambda: "POST %s on %s: status %s, body %r" % (
            path, self.name, st, raw[:500]))
        return doc

    def info(self):
        return self.get("/v1/info")

    def members_list(self):
        doc = self.get("/v1/members")
        check(isinstance(doc.get("members"), list),
              lambda: "GET /v1/members on %s: no members list: %r" % (self.name, doc))
        return doc["members"]

    def members(self):
        """name -> (status, incarnation, generation)"""
        return {m["name"]: (m["status"], m["incarnation"], m["generation"])
                for m in self.members_list()}

    def drops(self):
        return dict(self.info()["drops"])

    def wait_until(self, pred, timeout=DEADLINE, what="condition"):
        """wait_until() described by this agent's members and log tail."""
        return wait_until(pred, timeout, self.describe, "%s: %s" % (self.name, what))

    # -- diagnostics

    @property
    def addr(self):
        return self.bind

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=25):
        return "\n".join(self.log_text().splitlines()[-n:])

    def describe(self, log_lines=20):
        s = "--- agent %s (udp %s, http %s, data %s): " % (
            self.name, self.bind, self.http, self.data_dir)
        if self.proc is None:
            s += "never started\n"
        elif self.proc.poll() is not None:
            s += "EXITED with status %s\n" % self.proc.returncode
        else:
            s += "running, pid %d\n" % self.proc.pid
            try:
                ms = self.members_list()
                s += "  /v1/members:\n" + "".join(
                    "    %-12s %-22s %-8s inc=%s gen=%s\n" % (
                        m.get("name"), m.get("addr"), m.get("status"),
                        m.get("incarnation"), m.get("generation")) for m in ms)
            except Exception as e:
                s += "  /v1/members failed: %r\n" % (e,)
        for fn in self.h.describers:  # test-file extras (e.g. the registry's state)
            try:
                s += fn(self)
            except Exception as e:
                s += "  (%s failed: %r)\n" % (getattr(fn, "__name__", "describer"), e)
        tail = self.log_tail(log_lines)
        s += "  log tail:\n" + "".join("    | %s\n" % l for l in tail.splitlines())
        return s

    def __repr__(self):
        return "Agent(%s)" % self.name


class Harness:
    """Per-test state: temp dir, agents, cleanup."""

    def __init__(self, shoal, keep=False, verbose=False):
        self.shoal = shoal
        self.keep = keep
        self.verbose = verbose
        self.tmp = tempfile.mkdtemp(prefix="shoal-proc-")
        self.agents = []
        self._n = 0
        self.rng_seed = int(os.environ.get("SHOAL_SEED", "0")) or random.randrange(1, 2**31)
        self.rng = random.Random(self.rng_seed)
        self.notes = []
        # Callables (agent) -> text added to every Agent.describe() of this
        # test, after /v1/members and before the log tail; set by test files.
        self.describers = list(DESCRIBERS)

    def uniq(self):
        self._n += 1
        return str(self._n)

    def note(self, s):
        """A line printed under the test's result (timings, seeds)."""
        self.notes.append(s)

    def keygen(self, name="cluster.key"):
        path = os.path.join(self.tmp, name + "-" + self.uniq())
        r = run_cli(self.shoal, ["keygen", "--out", path])
        check(r.rc == 0 and os.path.exists(path), lambda: "keygen failed: %r" % r)
        return path

    def agent(self, name, start=True, **kw):
        a = Agent(self, name, **kw)
        self.agents.append(a)
        if start:
            a.start()
        return a

    def cli(self, args, env=None, timeout=30.0):
        return run_cli(self.shoal, args, env, timeout)

    def cluster(self, n, key=None, prefix="n", flags=None):
        """Starts n agents; all but the first join through the first (the
        seed). Waits until every node sees all n alive. Returns the list."""
        t0 = time.monotonic()
        seed = self.agent(prefix + "1", key=key, flags=flags)
        nodes = [seed]
        for i in range(2, n + 1):
            nodes.append(self.agent("%s%d" % (prefix, i), key=key, join=[seed], flags=flags))
        self.wait_view(nodes, {a.name: "alive" for a in nodes}, what="%d nodes to converge" % n)
        self.note("%d nodes started and converged in %.1f s" % (n, time.monotonic() - t0))
        return nodes

    def wait_view(self, observers, expect, timeout=DEADLINE, what=None, exact=True):
        """Waits until every observer's /v1/members maps each name of
        `expect` to its status (or to a predicate on (status, inc, gen)).
        exact: no other names may be listed."""
        def ok():
            for o in observers:
                ms = o.members()
                if exact and set(ms) != set(expect):
                    return False
                for name, want in expect.items():
                    if name not in ms:
                        return False
                    if callable(want):
                        if not want(ms[name]):
                            return False
                    elif ms[name][0] != want:
                        return False
            return True
        desc = {k: (v if isinstance(v, str) else "<predicate>") for k, v in expect.items()}
        wait_until(ok, timeout, lambda: self.describe(observers),
                   what or "views %s on %s" % (desc, [o.name for o in observers]))

    def describe(self, agents=None):
        return "\n".join(a.describe() for a in (agents if agents is not None else self.agents))

    def close(self, failed=False):
        for a in self.agents:
            a.kill9(quiet=True)
        if self.keep:
            sys.stdout.write("  (kept %s)\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- runner

_TESTS = []


def test(name):
    """Registers fn(h: Harness) as the behaviour `name`."""
    def deco(fn):
        _TESTS.append((name, fn))
        return fn
    return deco


def run_tests(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True, help="path to the shoal binary")
    ap.add_argument("-k", dest="only", default=None, help="run tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs and logs")
    ap.add_argument("-v", dest="verbose", action="store_true")
    args = ap.parse_args(argv)
    shoal = os.path.abspath(args.shoal)
    if not os.access(shoal, os.X_OK):
        print("FAILED setup: %s is not an executable" % shoal)
        print("0 passed, 1 failed")
        sys.exit(1)
    passed = failed = 0
    t_all = time.monotonic()
    for name, fn in _TESTS:
        if args.only and args.only not in name:
            continue
        h = Harness(shoal, keep=args.keep, verbose=args.verbose)
        t0 = time.monotonic()
        err = None
        try:
            fn(h)
        except TestFailure as e:
            err = str(e)
        except Exception:
            err = "unexpected error:\n" + traceback.format_exc()
            err += "\n" + h.describe()
        finally:
            dt = time.monotonic() - t0
            h.close(failed=err is not None)
        if err is None:
            passed += 1
            print("ok %s (%.1f s)" % (name, dt))
        else:
            failed += 1
            print("FAILED %s (%.1f s, seed %d)" % (name, dt, h.rng_seed))
            print("".join("    " + l + "\n" for l in err.splitlines()), end="")
        for n in h.notes:
            print("    # " + n)
        sys.stdout.flush()
    print("# total %.1f s" % (time.monotonic() - t_all))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)

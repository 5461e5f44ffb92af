#!/usr/bin/env python3
"""bench_membership.py -- shoal against serf: convergence, failure detection, cost.

For each cluster size N (default 20 and 50) this starts N shoal agents, measures
them and kills them, then does the same with N serf agents (Debian's `serf`), all
on 127.0.0.1 in the same run, one system at a time so that neither steals CPU
from the other. Both run memberlist's LAN profile: probe 1 s, probe timeout
500 ms, gossip 200 ms to 3 members, 3 indirect checks, suspicion multiplier 4,
retransmit multiplier 4, push-pull 30 s (serf: its defaults; shoal: the same
values given as flags). It prints numbers, never pass/fail.

Method (the same for both systems):
  (a) converge: t0 = the seed agent is spawned; the seed must answer its API
      before the N-1 others are spawned (serf exits if its -join fails), each
      with a join to the seed. Every agent's member list is then polled
      (shoal: GET /v1/members over a kept-alive HTTP connection; serf:
      `members` over its msgpack RPC, the call `serf members` makes) every
      --poll seconds; an agent counts from the first poll where it lists all N
      alive. Reported: the last agent's time minus t0.
      serf's event handlers are not used: the serf agent coalesces member
      events (3 s coalesce / 1 s quiescent period), so a handler sees a change
      1-3 s after serf itself knows it.
  (b) detect: after the idle window, kill -9 of the last agent; the others are
      polled until each lists it as dead (shoal) / failed (serf). Reported: the
      first and the last agent's time since the kill.
  (c) RSS: VmRSS of /proc/PID/status, averaged over the agents, --settle s
      after convergence.
  (d) idle CPU: CPU time over an --idle s window that starts after (c), as a
      % of one core, averaged over the agents: the sum of every thread's run
      time in /proc/PID/task/*/schedstat (ns; utime+stime of /proc/PID/stat,
      10 ms ticks, where schedstat is missing). Nothing queries the agents
      during the window.
  (e) bytes: the benchmark runs in its own network namespace (when root), so
      its loopback carries only the agents' traffic; lo's tx bytes over the
      idle window (IP level: payload + 28 B IPv4/UDP header per datagram,
      TCP too) / window / N = bytes sent per second per agent. shoal's own
      counters (/v1/info bytes in+out, payload only) are shown as well.

Usage: scripts/bench_membership.py [N ...] [--idle 30] [--only shoal|serf] ...
Needs build/shoal (cmake -S . -B build && cmake --build build -j2) and serf.
"""

import argparse
import base64
import ctypes
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

# memberlist's DefaultLANConfig, which `serf agent` uses (-profile=lan).
LAN = {
    "probe_interval": "1s",
    "probe_timeout": "500ms",
    "gossip_interval": "200ms",
    "gossip_fanout": 3,
    "indirect_checks": 3,
    "suspicion_mult": 4,
    "suspicion_max_mult": 6,
    "retransmit_mult": 4,
    "pushpull_interval": "30s",
    "gossip_to_dead": "30s",
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# msgpack, just enough for serf's RPC (stdlib only).


def mp_pack(obj):
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if 0 <= obj < 2**64:
            return b"\xcf" + struct.pack(">Q", obj)
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, str):
        b = obj.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b  # raw16: old and new spec
    if isinstance(obj, (list, tuple)):
        out = bytes([0x90 | len(obj)]) if len(obj) < 16 else b"\xdc" + struct.pack(">H", len(obj))
        return out + b"".join(mp_pack(x) for x in obj)
    if isinstance(obj, dict):
        out = bytes([0x80 | len(obj)]) if len(obj) < 16 else b"\xde" + struct.pack(">H", len(obj))
        return out + b"".join(mp_pack(k) + mp_pack(v) for k, v in obj.items())
    raise TypeError(f"cannot pack {type(obj)}")


class MpReader:
    """Reads msgpack objects one by one from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def _take(self, n):
        while len(self.buf) - self.pos < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def _u(self, fmt, n):
        return struct.unpack(fmt, self._take(n))[0]

    def _str(self, n):
        raw = self._take(n)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return raw

    def read(self):
        b = self._take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self._map(b & 0x0F)
        if 0x90 <= b <= 0x9F:
            return [self.read() for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return self._str(b & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        if b in (0xC4, 0xC5, 0xC6):
            return self._take(self._u({0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[b], {0xC4: 1, 0xC5: 2, 0xC6: 4}[b]))
        if b in (0xC7, 0xC8, 0xC9):
            n = self._u({0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[b], {0xC7: 1, 0xC8: 2, 0xC9: 4}[b])
            self._take(1)
            return self._take(n)
        if b == 0xCA:
            return self._u(">f", 4)
        if b == 0xCB:
            return self._u(">d", 8)
        ints = {0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
                0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8)}
        if b in ints:
            return self._u(*ints[b])
        if 0xD4 <= b <= 0xD8:
            self._take(1)
            return self._take(1 << (b - 0xD4))
        if b in (0xD9, 0xDA, 0xDB):
            return self._str(self._u({0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[b], {0xD9: 1, 0xDA: 2, 0xDB: 4}[b]))
        if b in (0xDC, 0xDD):
            n = self._u(">H", 2) if b == 0xDC else self._u(">I", 4)
            return [self.read() for _ in range(n)]
        if b in (0xDE, 0xDF):
            return self._map(self._u(">H", 2) if b == 0xDE else self._u(">I", 4))
        raise ValueError(f"msgpack: unknown type byte 0x{b:02x}")

    def _map(self, n):
        out = {}
        for _ in range(n):
            k = self.read()
            out[k if not isinstance(k, bytes) else k.decode(errors="replace")] = self.read()
        return out


# ---------------------------------------------------------------------------
# API clients: each returns {member name: status} or raises.


class SerfRPC:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.seq = 0

    def _connect(self):
        self.close()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.sock, self.reader = s, MpReader(s)
        self._call("handshake", {"Version": 1}, want_body=False)

    def _call(self, command, body=None, want_body=True):
        seq = self.seq
        self.seq += 1
        msg = mp_pack({"Command": command, "Seq": seq})
        if body is not None:
            msg += mp_pack(body)
        self.sock.sendall(msg)
        hdr = self.reader.read()
        if not isinstance(hdr, dict) or hdr.get("Seq") != seq:
            raise ConnectionError(f"serf rpc: unexpected header {hdr!r}")
        if hdr.get("Error"):
            raise ConnectionError(f"serf rpc: {hdr['Error']}")
        return self.reader.read() if want_body else None

    def members(self):
        try:
            if self.sock is None:
                self._connect()
            resp = self._call("members")
        except (OSError, ConnectionError, ValueError, struct.error):
            self.close()
            raise
        return {m["Name"]: m["Status"] for m in resp["Members"]}

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


class ShoalHTTP:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise ConnectionError(f"GET {path}: HTTP {r.status}")
            return json.loads(body)
        except (OSError, http.client.HTTPException, ValueError):
            self.close()
            raise

    def members(self):
        return {m["name"]: m["status"] for m in self.get("/v1/members")["members"]}

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


# ---------------------------------------------------------------------------
# processes and /proc


def _child_setup():
    # Die with the benchmark, whatever kills it.
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(argv, logpath):
    with open(logpath, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_child_setup)


def kill_all(procs):
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def cpu_seconds(pid):
    """CPU time used by pid: the sum of its threads' run time from
    /proc/PID/task/*/schedstat (nanoseconds), or utime+stime from
    /proc/PID/stat (clock ticks, 10 ms) where schedstat is missing."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        rest = stat[stat.rfind(")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime + stime


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lo_tx():
    """(bytes, packets) sent on this network namespace's loopback."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, data = line.partition(":")
            if name.strip() == "lo":
                v = data.split()
                return int(v[8]), int(v[9])
    return 0, 0


def enter_private_netns():
    """unshare(CLONE_NEWNET) and bring lo up; False if not allowed."""
    if LIBC.unshare(CLONE_NEWNET) != 0:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b"\0" * 14))  # IFF_UP
    finally:
        s.close()
    return True


def port_free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_base(start, count, avoid=()):
    """First base >= start where count consecutive ports are free (bounded scan)."""
    for base in range(start, 60000 - count, 1000):
        ports = range(base, base + count)
        if not any(p in avoid for p in ports) and all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range")


# ---------------------------------------------------------------------------
# the two systems


class System:
    name = ""
    dead_status = ""

    def __init__(self, n, workdir, args):
        self.n = n
        self.dir = workdir
        self.args = args
        self.procs = []
        self.clients = []

    def node(self, i):
        return f"s{i}"

    def log_tail(self, i, lines=15):
        try:
            with open(os.path.join(self.dir, f"{self.node(i)}.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def check_running(self):
        for i, p in enumerate(self.procs):
            if p.poll() is not None and i != getattr(self, "victim", -1):
                raise RuntimeError(f"{self.name} {self.node(i)} exited with {p.returncode}:\n"
                                   + self.log_tail(i))


class Shoal(System):
    name = "shoal"
    dead_status = "dead"

    def prepare(self, used):
        self.gport = pick_base(17000, self.n, used)
        self.hport = pick_base(18000, self.n, set(used) | set(range(self.gport, self.gport + self.n)))
        self.key = os.path.join(self.dir, "cluster.key")
        subprocess.run([self.args.shoal, "keygen", "--out", self.key], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)

    def argv(self, i):
        a = [self.args.shoal, "agent", "--name", self.node(i),
             "--bind", f"127.0.0.1:{self.gport + i}", "--http", f"127.0.0.1:{self.hport + i}",
             "--data-dir", os.path.join(self.dir, self.node(i)), "--cluster-key", self.key,
             "--probe-interval", LAN["probe_interval"], "--probe-timeout", LAN["probe_timeout"],
             "--gossip-interval", LAN["gossip_interval"],
             "--gossip-fanout", str(LAN["gossip_fanout"]),
             "--indirect-checks", str(LAN["indirect_checks"]),
             "--suspicion-mult", str(LAN["suspicion_mult"]),
             "--suspicion-max-mult", str(LAN["suspicion_max_mult"]),
             "--retransmit-mult", str(LAN["retransmit_mult"]),
             "--pushpull-interval", LAN["pushpull_interval"],
             "--gossip-to-dead", LAN["gossip_to_dead"]]
        if i > 0:
            a += ["--join", f"127.0.0.1:{self.gport}"]
        os.makedirs(os.path.join(self.dir, self.node(i)), exist_ok=True)
        return a

    def client(self, i):
        return ShoalHTTP(self.hport + i)

    def app_bytes(self):
        """Sum over live agents of /v1/info bytes in+out (None if unavailable)."""
        total = 0
        for i, c in enumerate(self.clients):
            if self.procs[i].poll() is not None:
                continue
            try:
                info = c.get("/v1/info")
                total += int(info["bytes"]["in"]) + int(info["bytes"]["out"])
            except (OSError, ConnectionError, KeyError, ValueError, http.client.HTTPException):
                return None
        return total


class Serf(System):
    name = "serf"
    dead_status = "failed"

    def prepare(self, used):
        self.gport = pick_base(19000, self.n, used)
        self.rport = pick_base(20000, self.n, set(used) | set(range(self.gport, self.gport + self.n)))
        self.encrypt = base64.b64encode(os.urandom(32)).decode() if self.args.serf_encrypt else None

    def argv(self, i):
        a = [self.args.serf, "agent", f"-node={self.node(i)}",
             f"-bind=127.0.0.1:{self.gport + i}", f"-rpc-addr=127.0.0.1:{self.rport + i}",
             "-profile=lan"]
        if self.encrypt:
            a.append(f"-encrypt={self.encrypt}")
        if i > 0:
            a.append(f"-join=127.0.0.1:{self.gport}")
        return a

    def client(self, i):
        return SerfRPC(self.rport + i)

    def app_bytes(self):
        return None


# ---------------------------------------------------------------------------
# one measurement


def poll_until(system, indices, pred, t_start, limit, interval):
    """Polls members() of each agent in indices until pred(members) holds for
    it. Returns {index: seconds since t_start} for those that got there, and
    {index: the last member list that did not satisfy pred} for diagnostics."""
    seen, last = {}, {}
    deadline = t_start + limit
    while len(seen) < len(indices) and time.monotonic() < deadline:
        for i in indices:
            if i in seen:
                continue
            try:
                ms = system.clients[i].members()
            except (OSError, ConnectionError, ValueError, KeyError, struct.error,
                    http.client.HTTPException):
                continue
            if pred(ms):
                seen[i] = time.monotonic() - t_start
            else:
                last[i] = ms
        system.check_running()
        if len(seen) < len(indices):
            time.sleep(interval)
    return seen, last


def describe_laggards(system, seen, last, names, after):
    """One log line per agent that got there late (> after s) or never."""
    for i in sorted(last):
        t = seen.get(i)
        if t is not None and t <= after:
            continue
        ms = last[i]
        missing = sorted(names - set(ms))
        odd = sorted(f"{k}={v}" for k, v in ms.items() if v != "alive")
        log(f"  {system.node(i)}: {'%.2f s' % t if t is not None else 'never'}; "
            f"last view before: {len(ms)} members, missing {missing[:8]}, not alive {odd[:8]}")


def measure(cls, n, args, used_ports):
    workdir = tempfile.mkdtemp(prefix=f"shoal-bench-{cls.name}{n}-")
    s = cls(n, workdir, args)
    res = {}
    try:
        s.prepare(used_ports)
        names = {s.node(i) for i in range(n)}
        s.clients = [s.client(i) for i in range(n)]

        log(f"{s.name} N={n}: starting agents")
        t0 = time.monotonic()
        s.procs.append(spawn(s.argv(0), os.path.join(workdir, "s0.log")))
        # The seed must answer before the others join it (bounded).
        ready, _ = poll_until(s, [0], lambda ms: s.node(0) in ms, t0, 15, 0.01)
        if 0 not in ready:
            raise RuntimeError(f"{s.name} seed did not answer in 15 s:\n" + s.log_tail(0))
        for i in range(1, n):
            s.procs.append(spawn(s.argv(i), os.path.join(workdir, f"{s.node(i)}.log")))

        def all_alive(ms):
            return set(ms) >= names and all(ms[x] == "alive" for x in names)

        seen, last = poll_until(s, list(range(n)), all_alive, t0, args.timeout, args.poll)
        if len(seen) < n:
            res["converge"] = None
            log(f"{s.name} N={n}: only {len(seen)}/{n} agents converged in {args.timeout} s")
        else:
            res["converge"] = max(seen.values())
            log(f"{s.name} N={n}: converged in {res['converge']:.2f} s")
        if res["converge"] is None or res["converge"] > 10:
            describe_laggards(s, seen, last, names, 10)

        time.sleep(args.settle)
        s.check_running()
        pids = [p.pid for p in s.procs]
        res["rss_mb"] = sum(rss_kb(p) for p in pids) / len(pids) / 1024.0

        # Idle window: nothing talks to the agents in between.
        app0 = s.app_bytes()
        cpu0 = [cpu_seconds(p) for p in pids]
        lo0 = lo_tx()
        w0 = time.monotonic()
        time.sleep(args.idle)
        window = time.monotonic() - w0
        cpu1 = [cpu_seconds(p) for p in pids]
        lo1 = lo_tx()
        app1 = s.app_bytes()
        s.check_running()
        used_s = sum(b - a for a, b in zip(cpu0, cpu1))
        res["cpu_pct"] = 100.0 * used_s / window / n
        if args.netns:
            res["lo_bps"] = (lo1[0] - lo0[0]) / window / n
            res["lo_pps"] = (lo1[1] - lo0[1]) / window / n
        if app0 is not None and app1 is not None:
            res["app_bps"] = (app1 - app0) / window / n
        log(f"{s.name} N={n}: rss {res['rss_mb']:.1f} MiB, idle cpu {res['cpu_pct']:.3f} %")

        # kill -9 of the last agent.
        victim = n - 1
        s.victim = victim
        vname = s.node(victim)
        others = [i for i in range(n) if i != victim]
        tk = time.monotonic()
        os.killpg(s.procs[victim].pid, signal.SIGKILL)
        s.procs[victim].wait(timeout=10)
        seen, _ = poll_until(s, others, lambda ms: ms.get(vname) == s.dead_status, tk,
                             args.timeout, args.poll)
        res["detect_first"] = min(seen.values()) if seen else None
        if len(seen) < len(others):
            res["detect_all"] = None
            log(f"{s.name} N={n}: only {len(seen)}/{len(others)} saw the kill in {args.timeout} s")
        else:
            res["detect_all"] = max(seen.values())
            log(f"{s.name} N={n}: kill -9 seen by all in {res['detect_all']:.2f} s")
    finally:
        for c in s.clients:
            c.close()
        kill_all(s.procs)
        if args.keep:
            log(f"{s.name} N={n}: logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(sizes, systems, results, args):
    rows = [
        ("converge: all see all N alive (s)", "converge", ".2f"),
        ("kill -9: first agent sees it dead/failed (s)", "detect_first", ".2f"),
        ("kill -9: all agents see it dead/failed (s)", "detect_all", ".2f"),
        ("RSS per agent, average (MiB)", "rss_mb", ".1f"),
        (f"idle CPU per agent ({args.idle:g} s window, % of one core)", "cpu_pct", ".3f"),
        ("idle bytes/s sent per agent (loopback, IP level)", "lo_bps", ".0f"),
        ("idle packets/s sent per agent (loopback)", "lo_pps", ".1f"),
        ("idle bytes/s in+out per agent (shoal's own counters)", "app_bps", ".0f"),
    ]
    cols = [(n, s) for n in sizes for s in systems]
    head = "| metric | " + " | ".join(f"{s} N={n}" for n, s in cols) + " |"
    out = [head, "|" + "---|" * (len(cols) + 1)]
    for label, key, spec in rows:
        cells = []
        for n, s in cols:
            runs = [r for r in results.get((s, n), []) if r is not None]
            vals = [r[key] for r in runs if r.get(key) is not None]
            if not runs:
                cells.append("failed")
            elif not vals:
                cells.append("n/a")
            else:
                # median of the runs; a run that timed out on this metric is noted
                cell = fmt(statistics.median(vals), spec)
                if len(vals) < len(runs):
                    cell += f" ({len(runs) - len(vals)} timed out)"
                cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[20, 50], help="cluster sizes (20 50)")
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--serf", default=shutil.which("serf") or "/usr/bin/serf")
    ap.add_argument("--only", choices=["shoal", "serf"], help="run one system only")
    ap.add_argument("--idle", type=float, default=30.0, help="idle window, s (30)")
    ap.add_argument("--settle", type=float, default=5.0, help="wait after convergence, s (5)")
    ap.add_argument("--poll", type=float, default=0.05, help="pause between poll rounds, s (0.05)")
    ap.add_argument("--timeout", type=float, default=90.0, help="bound on each wait, s (90)")
    ap.add_argument("--runs", type=int, default=1, help="repeat everything; medians shown (1)")
    ap.add_argument("--serf-encrypt", action="store_true", help="run serf with -encrypt")
    ap.add_argument("--no-netns", dest="netns", action="store_false",
                    help="stay in this network namespace (no loopback byte counts)")
    ap.add_argument("--keep", action="store_true", help="keep agents' logs and data dirs")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    if any(n < 3 or n > 500 for n in args.sizes):
        ap.error("sizes must be within 3..500")
    if not 1 <= args.runs <= 20:
        ap.error("--runs must be within 1..20")
    systems = [args.only] if args.only else ["shoal", "serf"]
    if "shoal" in systems and not os.access(args.shoal, os.X_OK):
        ap.error(f"{args.shoal} not found: cmake -S . -B build && cmake --build build -j2")
    if "serf" in systems and not os.access(args.serf, os.X_OK):
        ap.error("serf not found: scripts/setup.sh installs it")

    if args.netns:
        if enter_private_netns():
            log("running in a private network namespace (loopback only)")
        else:
            log("cannot create a network namespace (not root?): no loopback byte counts")
            args.netns = False

    # Let SIGTERM unwind through the finally blocks like ^C does.
    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)

    cls = {"shoal": Shoal, "serf": Serf}
    results = {}
    for run in range(args.runs):
        for n in args.sizes:
            for s in systems:
                if args.runs > 1:
                    log(f"run {run + 1}/{args.runs}")
                try:
                    r = measure(cls[s], n, args, set())
                except RuntimeError as e:
                    log(f"{s} N={n}: FAILED: {e}")
                    r = None
                results.setdefault((s, n), []).append(r)
                time.sleep(1)

    what = []
    if "shoal" in systems:
        ver = subprocess.run([args.shoal, "version"], capture_output=True, text=True, timeout=10)
        what.append((ver.stdout.strip() or "shoal") + " (signed datagrams, cluster key)")
    if "serf" in systems:
        ver = subprocess.run([args.serf, "version"], capture_output=True, text=True, timeout=10)
        first = "serf " + (ver.stdout.splitlines()[0] if ver.stdout else "?")
        what.append(first + (" with -encrypt" if args.serf_encrypt else " (no encryption)"))
    print()
    print(f"{' vs '.join(what)} on 127.0.0.1; {os.cpu_count()} CPUs; "
          f"{'private network namespace' if args.netns else 'host network namespace'}")
    print("protocol: probe 1s, timeout 500ms, gossip 200ms to 3, indirect 3, suspicion x4 "
          "(max x6), retransmit x4, push-pull 30s")
    if args.runs > 1:
        print(f"median of {args.runs} runs per cell")
    print()
    print(table(args.sizes, systems, results, args))
    if args.runs > 1:
        print()
        print("per run (s):")
        for n in args.sizes:
            for sy in systems:
                rs = results.get((sy, n), [])
                for key, label in (("converge", "converge"), ("detect_all", "kill -9 all")):
                    vals = ["failed" if r is None else fmt(r.get(key), ".2f") for r in rs]
                    print(f"  {sy} N={n} {label}: {' '.join(vals)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{s}-{n}": r for (s, n), r in results.items()}, f, indent=2)
    return 0 if all(r is not None for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; agents killed")
        sys.exit(130)

#!/usr/bin/env python3
"""bench_registry.py -- the registry benchmark of issue 3: shoal against serf.

Prints numbers as one markdown table, never pass/fail. Everything runs on
127.0.0.1 (in a private network namespace when root, so no other agent on
the machine can take a port or add loopback traffic), one system at a time.

Parts (select with --parts, default all):

 1. propagation, at each N (default 20 and 50). N shoal agents with the
    memberlist LAN profile as flags (probe 1 s, timeout 500 ms, gossip
    200 ms to 3, indirect 3, suspicion x4 (max x6), retransmit x4, push-pull
    30 s; registry settings at their defaults), data dirs on disk (--tmp,
    default /tmp: the registration is fsynced before it is acknowledged, as
    in production). The seed must answer before the others join it; every
    agent's /v1/members is then polled until all list N alive. Then
    --repeats times (default 20), with a --gap pause (default 2 s: the
    previous event has finished its gossip) in between:
      - a watcher thread per agent (one kept-alive HTTP connection each)
        reads /v1/instances/SVC?all=1 for a service no one has registered
        yet, then waits in a blocking query (&index=I&wait=10s) and notes
        time.time_ns() the moment a reply lists the new id. (If the agent
        answered without blocking, the thread polls every 5 ms instead.)
      - when every watcher has its index and 100 ms have passed:
        t0 = time.time_ns(), then `shoal register --http <node> --service
        SVC --id ID --address 127.0.0.1 --port P` runs on a random node
        (seeded RNG), CLI start-up and fsync included.
      - latency = the last agent's time - t0 (the owner's own listing
        included). Reported: median and p90 over the repeats, and the
        range (the distribution is lumpy: an event reaches everyone
        through the immediate pushes, or some agent waits for the next
        200 ms gossip tick).
    Then N serf agents (Debian's serf, -profile=lan, its defaults), each
    with -event-handler user=SCRIPT, SCRIPT a /bin/sh script appending
    "$SERF_USER_EVENT $(date +%s%N)" to a per-agent file. Converged when
    every agent's `serf members` lists N alive. Then --repeats times:
    t0 = time.time_ns(); `serf event -rpc-addr <random node> NAME payload`
    (a new NAME every time); the files are read every 10 ms until every
    agent's handler has written NAME; latency = the last handler's
    timestamp - t0. Done twice: with serf's default -coalesce=true (what
    `serf event NAME payload` does; the agent's user-event coalescer holds
    an event until 1 s without another of that name) and with
    -coalesce=false (plain gossip). The issue's reference numbers (1.5 s at
    N = 20, 1.6 s at N = 50) are the default. Ratio = shoal median / serf
    median; the target is <= 0.2.

 2. registry core, in process: runs tests/core/bench_registry (built next to
    the shoal binary: BUILD/tests/bench_registry; its header comment has
    the method): heap bytes per instance from mallinfo2() with and without
    2 small metadata pairs, the per-event apply latency, and
    shoal_registry_query p50/p99 for a 100-instance and a 10,000-instance
    service in a registry of 100,000 instances from 50 owners.

 3. a new node receives a registry of --instances (default 100,000). --owners
    agents (default 20) form a cluster (data dirs under /dev/shm when it
    exists: this part measures replication, not the disk, and every
    registration rewrites the owner's registry file); each registers
    instances/owners instances of its own through POST /v1/register from
    one kept-alive connection per owner, all owners in parallel (or, with
    --load files, from *.service files the owners load at start through
    --config-dir: the same registration path, persisted once). The data
    is the core benchmark's shape: one service of 10,000 instances
    ("web-frontend"), the rest in services of 100; ids "<service>-<8 hex>",
    2 tags, 2 small meta pairs. Then every agent's /v1/registry is polled
    until its digests equal the owners' own (bounded by --sync-wait, the
    agents' anti-entropy runs every 30 s by default). Then t0 = a fresh
    agent is spawned with --join to the first; its /v1/registry is polled
    every 10 ms; reported: the time until it answers and until its digests
    (owner, generation, version, hash, count) equal the cluster's.

 4. instance query latency through the API, on that fresh agent holding
    the 100,000 instances, 1 s after it caught up: --queries (default 2000)
    GET /v1/instances/NAME (passing instances, the default) for a random
    100-instance service, one client, one kept-alive connection, each timed
    from request to the last byte of the parsed reply; p50 and p99. Also
    --queries/10 of the 10,000-instance service for comparison.

 5. registrations into one agent (issue 14, item 7): one agent alone, data
    dir on tmpfs (--shm) and then on --disk (default /var/tmp, a real disk
    unless it is tmpfs too: the fsync cost). --reg-clients processes
    (default 8), each with one kept-alive connection and --reg-depth
    requests in flight (pipelined, default 4), POST --registrations
    (default 10,000) distinct instances of the part 3 shape, all of one
    service ("web-frontend"). Reported:
    acknowledged registrations per second (first request sent to last
    reply), the median request latency over the first and the last 10 %
    of the registrations (by order), and the agent's log appends (one
    fdatasync each) per registration; then --big-queries (default 50) GET
    /v1/instances/web-frontend of that whole service, p50 and p99 from
    request to the last byte (issue 14, item 6). With --baseline PATH the same run is
    made with another shoal binary (e.g. a build of the commit before the
    log) and printed beside it: today's figure.

Usage: scripts/bench_registry.py [N ...] [--repeats 20] [--parts 1,2,3,4,5]
       [--only shoal|serf] [--instances 100000] [--owners 20] [--shoal PATH]
Needs a build with the registry (cmake -S . -B build && cmake --build build
-j2, which also builds build/tests/bench_registry) and serf for part 1.
"""

import argparse
import ctypes
import fcntl
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

# memberlist's DefaultLANConfig, which `serf agent` uses (-profile=lan).
LAN_FLAGS = ["--probe-interval", "1s", "--probe-timeout", "500ms", "--gossip-interval", "200ms",
             "--gossip-fanout", "3", "--indirect-checks", "3", "--suspicion-mult", "4",
             "--suspicion-max-mult", "6", "--retransmit-mult", "4", "--pushpull-interval", "30s",
             "--gossip-to-dead", "30s"]

SMALL_SERVICE = 100  # instances per ordinary service (as tests/core/bench_registry.c)
WORD_A = ["billing", "catalog", "search", "checkout", "payment", "profile", "notify", "ledger",
          "auth", "session", "pricing", "inventory", "shipping", "reviews", "media", "ads"]
WORD_B = ["api", "worker", "db", "cache", "proxy", "batch", "queue", "gateway"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timeout(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# processes, ports, namespace


def _child_setup():
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the benchmark


def spawn(argv, logpath, env=None):
    with open(logpath, "ab") as f:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_child_setup, env=env)


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


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def pct(values, q):
    """q-th percentile (0..100), nearest rank on the sorted values."""
    v = sorted(values)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(round(q / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


# ---------------------------------------------------------------------------
# shoal's HTTP API


class HTTP:
    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, timeout=None):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=timeout or self.timeout)
            elif timeout:
                self.conn.timeout = timeout
                if self.conn.sock:
                    self.conn.sock.settimeout(timeout)
            hdrs = {"Content-Type": "application/json"} if body is not None else {}
            self.conn.request(method, path, body=body, headers=hdrs)
            r = self.conn.getresponse()
            data = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            return r.status, data
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def get(self, path, timeout=None):
        status, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ConnectionError(f"GET {path}: HTTP {status}: {data[:200]!r}")
        return json.loads(data)

    def post(self, path, obj):
        status, data = self.request("POST", path, json.dumps(obj, separators=(",", ":")))
        if status != 200:
            raise ConnectionError(f"POST {path}: HTTP {status}: {data[:200]!r}")
        return json.loads(data)

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


class ShoalCluster:
    """Agents s0..s{n-1}; agent 0 is the seed. Extra agents can be added."""

    def __init__(self, args, workdir, prefix="s", data_root=None):
        self.args = args
        self.dir = workdir
        self.data_root = data_root or workdir
        self.prefix = prefix
        self.procs = []
        self.capacity = 0
        self.extra = {}  # index -> more agent flags

    def prepare(self, capacity):
        self.capacity = capacity
        self.gport = pick_base(17000, capacity)
        self.hport = pick_base(18000, capacity, set(range(self.gport, self.gport + capacity)))
        self.key = os.path.join(self.dir, "cluster.key")
        subprocess.run([self.args.shoal, "keygen", "--out", self.key], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)

    def name(self, i):
        return f"{self.prefix}{i}"

    def logpath(self, i):
        return os.path.join(self.dir, f"{self.name(i)}.log")

    def http_addr(self, i):
        return f"127.0.0.1:{self.hport + i}"

    def start(self, i, join=True):
        assert i == len(self.procs) and i < self.capacity
        data = os.path.join(self.data_root, self.name(i))
        os.makedirs(data, exist_ok=True)
        argv = [self.args.shoal, "agent", "--name", self.name(i),
                "--bind", f"127.0.0.1:{self.gport + i}", "--http", self.http_addr(i),
                "--data-dir", data, "--cluster-key", self.key,
                "--log-level", "warn"] + LAN_FLAGS + self.extra.get(i, [])
        if i > 0 and join:
            argv += ["--join", f"127.0.0.1:{self.gport}"]
        self.procs.append(spawn(argv, self.logpath(i)))

    def check_running(self):
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                raise RuntimeError(f"shoal {self.name(i)} exited with {p.returncode}:\n"
                                   + log_tail(self.logpath(i)))

    def wait_api(self, i, limit):
        c = HTTP(self.hport + i, timeout=1)
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline:
                try:
                    c.get("/v1/members")
                    return
                except (OSError, ConnectionError, ValueError, http.client.HTTPException):
                    self.check_running()
                    time.sleep(0.01)
        finally:
            c.close()
        raise Timeout(f"shoal {self.name(i)} did not answer in {limit} s:\n"
                      + log_tail(self.logpath(i)))

    def start_all(self, n, limit):
        """Seed first, the rest joining it; returns when all list n alive."""
        self.start(0)
        self.wait_api(0, 15)
        for i in range(1, n):
            self.start(i)
        names = {self.name(i) for i in range(n)}
        clients = [HTTP(self.hport + i, timeout=2) for i in range(n)]
        pending = set(range(n))
        t0 = time.monotonic()
        try:
            while pending and time.monotonic() - t0 < limit:
                for i in list(pending):
                    try:
                        reply = clients[i].get("/v1/members")
                        ms = {m["name"]: m["status"] for m in reply["members"]}
                    except (OSError, ConnectionError, ValueError, KeyError,
                            http.client.HTTPException):
                        continue
                    if set(ms) >= names and all(ms[x] == "alive" for x in names):
                        pending.discard(i)
                self.check_running()
                if pending:
                    time.sleep(0.1)
        finally:
            for c in clients:
                c.close()
        if pending:
            raise Timeout(f"shoal: {len(pending)} of {n} agents not converged in {limit} s")
        return time.monotonic() - t0

    def stop(self):
        kill_all(self.procs)


# ---------------------------------------------------------------------------
# part 1: propagation


def shoal_watch(client, svc, want_id, ready, out, idx, deadline):
    """One agent's watcher: blocking queries on svc until want_id is listed;
    out[idx] = time.time_ns() of that reply (or an error string)."""
    base = f"/v1/instances/{svc}?all=1"
    try:
        body = client.get(base)
        index = body.get("index", 0)
        if any(x.get("id") == want_id for x in body.get("instances", [])):
            out[idx] = time.time_ns()
            return
        ready.set()
        while time.monotonic() < deadline:
            wait = max(1, min(10, int(deadline - time.monotonic())))
            t = time.monotonic()
            body = client.get(f"{base}&index={index}&wait={wait}s", timeout=wait + 5)
            if any(x.get("id") == want_id for x in body.get("instances", [])):
                out[idx] = time.time_ns()
                return
            new = body.get("index", 0)
            if new == index and time.monotonic() - t < 0.5:
                time.sleep(0.005)  # the agent did not block: poll
            index = new
        out[idx] = "timed out"
    except (OSError, ConnectionError, ValueError, http.client.HTTPException) as e:
        out[idx] = f"{type(e).__name__}: {e}"
    finally:
        ready.set()


def bench_shoal_propagation(n, args, rng):
    workdir = tempfile.mkdtemp(prefix=f"shoal-rbench-prop{n}-", dir=args.tmp)
    c = ShoalCluster(args, workdir)
    res = {"lat": [], "cli": [], "failed": 0}
    clients = []
    try:
        c.prepare(n)
        log(f"shoal N={n}: starting agents")
        conv = c.start_all(n, args.timeout)
        log(f"shoal N={n}: converged in {conv:.1f} s")
        time.sleep(args.gap)
        clients = [HTTP(c.hport + i, timeout=5) for i in range(n)]
        for r in range(args.repeats):
            svc = f"bench-prop-{r}"
            iid = f"{svc}-{rng.getrandbits(32):08x}"
            node = rng.randrange(n)
            deadline = time.monotonic() + args.timeout
            out = [None] * n
            readies = [threading.Event() for _ in range(n)]
            threads = [threading.Thread(target=shoal_watch,
                                        args=(clients[i], svc, iid, readies[i], out, i, deadline),
                                        daemon=True) for i in range(n)]
            for t in threads:
                t.start()
            for e in readies:
                e.wait(timeout=max(0.1, deadline - time.monotonic()))
            time.sleep(0.1)
            t0 = time.time_ns()
            p = subprocess.run([args.shoal, "register", "--http", c.http_addr(node),
                                "--service", svc, "--id", iid, "--address", "127.0.0.1",
                                "--port", str(20000 + r)],
                               capture_output=True, text=True, timeout=30)
            t_cli = time.time_ns()
            if p.returncode != 0:
                raise RuntimeError(f"shoal register exited {p.returncode}: {p.stderr.strip()}")
            for t in threads:
                t.join(timeout=max(0.1, deadline - time.monotonic() + 15))
            bad = [(i, o) for i, o in enumerate(out) if not isinstance(o, int)]
            if bad:
                res["failed"] += 1
                log(f"shoal N={n} #{r}: {len(bad)} agents never listed it: "
                    f"{[(c.name(i), o) for i, o in bad[:5]]}")
            else:
                lat = (max(out) - t0) / 1e9
                res["lat"].append(lat)
                res["cli"].append((t_cli - t0) / 1e9)
                log(f"shoal N={n} #{r}: on {c.name(node)}, listed on all {n} after "
                    f"{lat * 1000:.0f} ms (first {(min(out) - t0) / 1e6:.0f} ms, "
                    f"CLI returned {(t_cli - t0) / 1e6:.0f} ms)")
            c.check_running()
            time.sleep(args.gap)
    finally:
        for cl in clients:
            cl.close()
        c.stop()
        cleanup(workdir, args)
    return res


def serf_members(args, rpc):
    p = subprocess.run([args.serf, "members", f"-rpc-addr={rpc}", "-format=json"],
                       capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise ConnectionError(p.stderr.strip() or p.stdout.strip())
    return {m["name"]: m["status"] for m in json.loads(p.stdout)["members"]}


def bench_serf_propagation(n, args, rng):
    workdir = tempfile.mkdtemp(prefix=f"serf-rbench-prop{n}-", dir=args.tmp)
    procs = []
    res = {"lat": [], "lat_nc": [], "failed": 0}
    try:
        gport = pick_base(19000, n)
        rport = pick_base(20000, n, set(range(gport, gport + n)))
        evdir = os.path.join(workdir, "events")
        os.makedirs(evdir)
        script = os.path.join(workdir, "handler.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n"
                    "t=$(date +%s%N)\n"
                    f"echo \"$SERF_USER_EVENT $t\" >> '{evdir}'/\"$SERF_SELF_NAME\".ev\n"
                    "exit 0\n")
        os.chmod(script, 0o755)

        def argv(i):
            a = [args.serf, "agent", f"-node=f{i}", f"-bind=127.0.0.1:{gport + i}",
                 f"-rpc-addr=127.0.0.1:{rport + i}", "-profile=lan", "-log-level=warn",
                 f"-event-handler=user={script}"]
            if i > 0:
                a.append(f"-join=127.0.0.1:{gport}")
            return a

        def check_running():
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise RuntimeError(f"serf f{i} exited with {p.returncode}:\n"
                                       + log_tail(os.path.join(workdir, f"f{i}.log")))

        log(f"serf N={n}: starting agents")
        t0 = time.monotonic()
        procs.append(spawn(argv(0), os.path.join(workdir, "f0.log")))
        while True:
            try:
                serf_members(args, f"127.0.0.1:{rport}")
                break
            except (ConnectionError, ValueError, KeyError, subprocess.TimeoutExpired):
                check_running()
                if time.monotonic() - t0 > 15:
                    raise Timeout("serf seed did not answer in 15 s")
                time.sleep(0.05)
        for i in range(1, n):
            procs.append(spawn(argv(i), os.path.join(workdir, f"f{i}.log")))
        names = {f"f{i}" for i in range(n)}
        pending = set(range(n))
        while pending and time.monotonic() - t0 < args.timeout:
            for i in list(pending):
                try:
                    ms = serf_members(args, f"127.0.0.1:{rport + i}")
                except (ConnectionError, ValueError, KeyError, subprocess.TimeoutExpired):
                    continue
                if set(ms) >= names and all(ms[x] == "alive" for x in names):
                    pending.discard(i)
            check_running()
            if pending:
                time.sleep(0.2)
        if pending:
            raise Timeout(f"serf: {len(pending)} of {n} agents not converged in {args.timeout} s")
        log(f"serf N={n}: converged in {time.monotonic() - t0:.1f} s")
        time.sleep(args.gap)

        files = [os.path.join(evdir, f"f{i}.ev") for i in range(n)]
        for coalesce, key in (("true", "lat"), ("false", "lat_nc")):
            for r in range(args.repeats):
                name = f"bench{r}{coalesce[0]}"
                node = rng.randrange(n)
                t0 = time.time_ns()
                p = subprocess.run([args.serf, "event", f"-rpc-addr=127.0.0.1:{rport + node}",
                                    f"-coalesce={coalesce}", name, "payload"],
                                   capture_output=True, text=True, timeout=30)
                if p.returncode != 0:
                    raise RuntimeError(f"serf event exited {p.returncode}: {p.stderr.strip()}")
                seen = {}
                deadline = time.monotonic() + args.timeout
                while len(seen) < n and time.monotonic() < deadline:
                    for i in range(n):
                        if i in seen:
                            continue
                        try:
                            with open(files[i]) as f:
                                for line in f:
                                    parts = line.split()
                                    if len(parts) == 2 and parts[0] == name:
                                        seen[i] = int(parts[1])
                                        break
                        except (OSError, ValueError):
                            pass
                    if len(seen) < n:
                        time.sleep(0.01)
                if len(seen) < n:
                    res["failed"] += 1
                    log(f"serf N={n} #{r} coalesce={coalesce}: only {len(seen)}/{n} handlers ran")
                else:
                    lat = (max(seen.values()) - t0) / 1e9
                    res[key].append(lat)
                    log(f"serf N={n} #{r} coalesce={coalesce}: from f{node}, all {n} handlers "
                        f"ran after {lat * 1000:.0f} ms (first "
                        f"{(min(seen.values()) - t0) / 1e6:.0f} ms)")
                check_running()
                time.sleep(args.gap)
    finally:
        kill_all(procs)
        cleanup(workdir, args)
    return res


# ---------------------------------------------------------------------------
# part 2: the core benchmark binary


def bench_core(args):
    exe = args.core_bench or os.path.join(os.path.dirname(os.path.abspath(args.shoal)), "tests",
                                          "bench_registry")
    if not os.access(exe, os.X_OK):
        raise RuntimeError(f"{exe} not found (cmake --build BUILD --target bench_registry)")
    big = min(10000, args.instances // 10)
    argv = [exe, "--json", "--instances", str(args.instances), "--big", str(big)]
    log("core: " + " ".join(argv))
    p = subprocess.run(argv,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"bench_registry exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# parts 3 and 4: a registry of 100,000 instances


def instance_spec(k, instances, big):
    """The k-th instance, the same shape as tests/core/bench_registry.c."""
    n_small = max(1, (instances - big + SMALL_SERVICE - 1) // SMALL_SERVICE)
    if k < big:
        svc = "web-frontend"
    else:
        s = (k - big) % n_small
        svc = f"{WORD_A[s % 16]}-{WORD_B[(s // 16) % 8]}-{s // 128}"
    h = ((k * 2654435761) & 0xFFFFFFFF) ^ 0x5BD1E995
    return {"id": f"{svc}-{h:08x}", "service": svc,
            "address": f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}",
            "port": 8000 + k % 1000, "tags": ["v2", "zone-b"],
            "meta": {"version": "1.14.3", "commit": f"{(h * 2246822519) & 0xFFFFFFFF:08x}"}}


def small_services(instances, big):
    n_small = max(1, (instances - big + SMALL_SERVICE - 1) // SMALL_SERVICE)
    return [f"{WORD_A[s % 16]}-{WORD_B[(s // 16) % 8]}-{s // 128}" for s in range(n_small)]


def load_owner(port, ks, instances, big, out, idx, deadline, took):
    """POSTs every instance k in ks; took[idx] = the per-request times."""
    c = HTTP(port, timeout=30)
    done = 0
    times = took[idx] = []
    try:
        for k in ks:
            if time.monotonic() > deadline:
                out[idx] = f"timed out after {done}"
                return
            body = instance_spec(k, instances, big)
            t = time.perf_counter()
            c.post("/v1/register", body)
            times.append(time.perf_counter() - t)
            done += 1
        out[idx] = done
    except (OSError, ConnectionError, ValueError, http.client.HTTPException) as e:
        out[idx] = f"after {done}: {type(e).__name__}: {e}"
    finally:
        c.close()


def write_service_files(confdir, ks, instances, big, per_file=1000):
    """The instances k in ks as *.service files (docs/registry-interfaces.md),
    per_file sections each (a file may hold at most 1 MiB)."""
    os.makedirs(confdir, exist_ok=True)
    ks = list(ks)
    for f in range(0, len(ks), per_file):
        lines = []
        for k in ks[f:f + per_file]:
            x = instance_spec(k, instances, big)
            lines += ["[service]", f"id = {x['id']}", f"service = {x['service']}",
                      f"address = {x['address']}", f"port = {x['port']}"]
            lines += [f"tag = {t}" for t in x["tags"]]
            lines += [f"meta.{mk} = {mv}" for mk, mv in x["meta"].items()]
            lines.append("")
        with open(os.path.join(confdir, f"bench-{f // per_file:04d}.service"), "w") as fh:
            fh.write("\n".join(lines))


def digest_key(d):
    return (d["owner"], d["generation"], d["version"], d["hash"], d["count"])


def registry_view(client):
    reg = client.get("/v1/registry", timeout=30)
    return reg, {d["owner"]: digest_key(d) for d in reg.get("digests", []) if d.get("count")}


def bench_big_registry(args, rng):
    data_root = args.shm if os.path.isdir(args.shm) else args.tmp
    workdir = tempfile.mkdtemp(prefix="shoal-rbench-big-", dir=args.tmp)
    datadir = tempfile.mkdtemp(prefix="shoal-rbench-big-data-", dir=data_root)
    owners = args.owners
    c = ShoalCluster(args, workdir, prefix="r", data_root=datadir)
    res = {}
    try:
        c.prepare(owners + 1)
        big = min(10000, args.instances // 10)
        if args.load == "files":
            for o in range(owners):
                confdir = os.path.join(workdir, f"conf-{c.name(o)}")
                write_service_files(confdir, range(o, args.instances, owners), args.instances, big)
                c.extra[o] = ["--config-dir", confdir]
        log(f"big: starting {owners} owner agents (data dirs in {data_root})")
        t0 = time.monotonic()
        c.start_all(owners, args.timeout)
        if args.load == "api":
            log(f"big: registering {args.instances} instances, {args.instances // owners} per "
                "owner, through POST /v1/register")
            t0 = time.monotonic()
            out = [None] * owners
            took = [[] for _ in range(owners)]
            deadline = t0 + args.load_timeout
            threads = [threading.Thread(target=load_owner,
                                        args=(c.hport + o, range(o, args.instances, owners),
                                              args.instances, big, out, o, deadline, took),
                                        daemon=True)
                       for o in range(owners)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(0.1, deadline - time.monotonic() + 60))
            res["load_s"] = time.monotonic() - t0
            bad = [(c.name(o), x) for o, x in enumerate(out) if not isinstance(x, int)]
            if bad:
                raise RuntimeError(f"registration failed: {bad}")
            # The cost of one registration as the owner's own set grows.
            k = max(1, min(len(t) for t in took) // 10)
            res["reg_first_ms"] = statistics.median([x for t in took for x in t[:k]]) * 1000
            res["reg_last_ms"] = statistics.median([x for t in took for x in t[-k:]]) * 1000
            log(f"big: registered in {res['load_s']:.1f} s "
                f"({args.instances / res['load_s']:.0f} registrations/s over {owners} agents); "
                f"one POST took {res['reg_first_ms']:.2f} ms (median) over an owner's first "
                f"{k}, {res['reg_last_ms']:.2f} ms over its last {k}")
        c.check_running()

        # Wait until every agent holds everything: its digests equal the owners' own.
        clients = [HTTP(c.hport + i, timeout=30) for i in range(owners)]
        t1 = time.monotonic()
        target = None
        try:
            while time.monotonic() - t1 < args.sync_wait:
                own = {}
                for i in range(owners):
                    _, view = registry_view(clients[i])
                    if c.name(i) in view:
                        own[c.name(i)] = view[c.name(i)]
                total = sum(d[4] for d in own.values())
                agree = 0
                if len(own) == owners and total == args.instances:
                    agree = sum(registry_view(clients[i])[1] == own for i in range(owners))
                    if agree == owners:
                        target = own
                        break
                log(f"big: waiting for the cluster to converge: {total} owned, "
                    f"{agree}/{owners} agents agree")
                c.check_running()
                time.sleep(2)
        finally:
            for cl in clients:
                cl.close()
        if target is None:
            raise Timeout(f"the {owners} owners did not converge in {args.sync_wait} s")
        res["cluster_sync_s"] = time.monotonic() - t1
        log(f"big: all {owners} agents hold {args.instances} ({res['cluster_sync_s']:.1f} s "
            "after the last registration)")
        time.sleep(args.gap)

        # Part 3: a fresh agent joins through the first.
        fresh = owners
        fc = HTTP(c.hport + fresh, timeout=30)
        t0 = time.monotonic()
        c.start(fresh)
        answered = None
        progress = 0
        try:
            while time.monotonic() - t0 < args.timeout:
                try:
                    reg, view = registry_view(fc)
                except (OSError, ConnectionError, ValueError, http.client.HTTPException):
                    c.check_running()
                    time.sleep(0.01)
                    continue
                if answered is None:
                    answered = time.monotonic() - t0
                progress = sum(reg.get("instances", {}).values())
                if all(view.get(o) == d for o, d in target.items()):
                    res["fresh_s"] = time.monotonic() - t0
                    break
                time.sleep(0.01)
        finally:
            fc.close()
        res["fresh_api_s"] = answered
        if "fresh_s" not in res:
            res["fresh_s"] = None
            log(f"big: the fresh agent holds {progress} of {args.instances} after {args.timeout} s")
        else:
            log(f"big: fresh agent answered after {answered:.2f} s, holds all "
                f"{args.instances} after {res['fresh_s']:.2f} s")
        c.check_running()

        # Part 4: queries on the fresh agent.
        if "4" in args.parts and res["fresh_s"] is not None:
            time.sleep(1)
            res.update(query_latency(c.hport + fresh, args, rng, big))
        c.check_running()
    finally:
        c.stop()
        cleanup(workdir, args)
        cleanup(datadir, args)
    return res


def query_latency(port, args, rng, big):
    names = small_services(args.instances, big)
    c = HTTP(port, timeout=30)
    out = {}
    try:
        for _ in range(50):  # warm-up
            c.get(f"/v1/instances/{rng.choice(names)}")
        for label, count, pick in (("q100", args.queries, lambda: rng.choice(names)),
                                   ("qbig", max(1, args.queries // 10), lambda: "web-frontend")):
            lat = []
            sizes = []
            for _ in range(count):
                path = f"/v1/instances/{pick()}"
                t = time.perf_counter()
                body = c.get(path)
                lat.append(time.perf_counter() - t)
                sizes.append(len(body.get("instances", [])))
            out[f"{label}_p50"] = pct(lat, 50)
            out[f"{label}_p99"] = pct(lat, 99)
            out[f"{label}_n"] = count
            out[f"{label}_size"] = statistics.median(sizes)
            log(f"query {label}: p50 {out[label + '_p50'] * 1000:.2f} ms, "
                f"p99 {out[label + '_p99'] * 1000:.2f} ms, {statistics.median(sizes):.0f} "
                "instances per reply")
    finally:
        c.close()
    return out


# ---------------------------------------------------------------------------


def cleanup(path, args):
    if args.keep:
        log(f"kept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def ms(v):
    return "n/a" if v is None else f"{v * 1000:.0f}"


def ms2(v):
    return "n/a" if v is None else f"{v * 1000:.2f}"


def med_p90(v):
    """median / p90 (min..max)"""
    if not v:
        return "n/a"
    return f"{ms(statistics.median(v))} / {ms(pct(v, 90))} ({ms(min(v))}..{ms(max(v))})"


# ---------------------------------------------------------------------------
# part 5: registrations into one agent


def _reg_worker(port, ks, total, depth, conn_out):
    """One connection: POSTs the instances ks with depth requests in flight;
    sends back [(k, seconds)] or an error string."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reqs = []
        for k in ks:
            body = json.dumps(instance_spec(k, total, total)).encode()  # one service
            reqs.append(b"POST /v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        b"application/json\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
        sent, done, buf, res, t_sent = 0, 0, b"", [], {}
        while done < len(reqs):
            while sent < len(reqs) and sent - done < depth:
                t_sent[sent] = time.perf_counter()
                sock.sendall(reqs[sent])
                sent += 1
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {done} replies")
            buf += chunk
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].decode("latin-1")
                clen = 0
                for line in head.split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        clen = int(line.split(":", 1)[1])
                if len(buf) < end + 4 + clen:
                    break
                status = head.split(" ", 2)[1]
                if status != "200":
                    raise RuntimeError(f"HTTP {status}: {buf[end + 4:end + 4 + clen][:200]!r}")
                buf = buf[end + 4 + clen:]
                res.append((ks[done], time.perf_counter() - t_sent.pop(done)))
                done += 1
        sock.close()
        conn_out.send(res)
    except Exception as e:  # reported by the parent
        conn_out.send(f"{type(e).__name__}: {e}")
    finally:
        conn_out.close()


def bench_one_owner(args, binary, data_root, label):
    import multiprocessing
    workdir = tempfile.mkdtemp(prefix="shoal-rbench-one-", dir=args.tmp)
    datadir = tempfile.mkdtemp(prefix="shoal-rbench-one-data-", dir=data_root)
    a = argparse.Namespace(**vars(args))
    a.shoal = binary
    c = ShoalCluster(a, workdir, prefix="w", data_root=datadir)
    total, procs = args.registrations, args.reg_clients
    try:
        c.prepare(1)
        c.start(0, join=False)
        c.wait_api(0, 15)
        ctx = multiprocessing.get_context("fork")
        cpu0 = proc_cpu_s(c.procs[0].pid)
        slices = [list(range(i, total, procs)) for i in range(procs)]
        pipes, workers = [], []
        t0 = time.perf_counter()
        for sl in slices:
            rd, wr = ctx.Pipe(duplex=False)
            w = ctx.Process(target=_reg_worker,
                            args=(c.hport, sl, total, args.reg_depth, wr))
            w.start()
            wr.close()
            pipes.append(rd)
            workers.append(w)
        lat = {}
        for rd in pipes:
            if not rd.poll(args.load_timeout):
                raise Timeout(f"{label}: a client did not finish in {args.load_timeout} s")
            r = rd.recv()
            if isinstance(r, str):
                raise RuntimeError(f"{label}: a client failed: {r}")
            lat.update(r)
        took = time.perf_counter() - t0
        cpu = proc_cpu_s(c.procs[0].pid) - cpu0
        for w in workers:
            w.join(10)
        c.check_running()
        info = HTTP(c.hport, timeout=10).get("/v1/info")
        persist = info.get("registry", {}).get("persist", {})
        ordered = [lat[k] for k in range(total)]
        # The whole service (every instance registered above) through the
        # API: request to the last byte of the body, one kept-alive
        # connection; the body is parsed once, outside the timing.
        hc = http.client.HTTPConnection("127.0.0.1", c.hport, timeout=60)
        qt, body = [], b""
        qcpu0 = proc_cpu_s(c.procs[0].pid)
        for _ in range(args.big_queries):
            t = time.perf_counter()
            hc.request("GET", "/v1/instances/web-frontend")
            body = hc.getresponse().read()
            qt.append(time.perf_counter() - t)
        hc.close()
        qcpu = (proc_cpu_s(c.procs[0].pid) - qcpu0) / max(1, args.big_queries)
        listed = len(json.loads(body)["instances"]) if body else 0
        tenth = max(1, total // 10)
        log(f"{label}: {total} registrations in {took:.2f} s")
        return {"rate": total / took, "first_ms": 1000 * statistics.median(ordered[:tenth]),
                "last_ms": 1000 * statistics.median(ordered[-tenth:]),
                "appends": persist.get("appends"), "writes": persist.get("writes"),
                "cpu_us": 1e6 * cpu / total,
                "big_n": listed, "big_cpu_ms": 1000 * qcpu, "big_bytes": len(body),
                "big_p50": pct(qt, 50) if qt else None, "big_p99": pct(qt, 99) if qt else None,
                "fs": subprocess.run(["stat", "-f", "-c", "%T", datadir], capture_output=True,
                                     text=True).stdout.strip()}
    finally:
        c.stop()
        cleanup(workdir, args)
        cleanup(datadir, args)


def proc_cpu_s(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_registrations(args):
    shm = args.shm if os.path.isdir(args.shm) else args.tmp
    out = {}
    for label, binary in [("shoal", args.shoal)] + ([("baseline", args.baseline)]
                                                    if args.baseline else []):
        for where, root in (("tmpfs", shm), ("disk", args.disk)):
            try:
                out[(label, where)] = bench_one_owner(args, binary, root, f"{label} {where}")
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"part 5 {label} {where}: FAILED: {e}")
                out[(label, where)] = {"error": str(e).splitlines()[0] if str(e) else repr(e)}
    return out


def table(args, prop, core, big, regs=None):
    rows = []
    ref = {20: "1.5 s", 50: "1.6 s"}
    for n in args.sizes:
        s = prop.get(("shoal", n))
        f = prop.get(("serf", n))
        if s is not None:
            note = f" ({s['failed']} of {args.repeats} timed out)" if s["failed"] else ""
            rows.append((f"N={n}: `shoal register` -> listed on every agent, "
                         "median / p90 (min..max) (ms)",
                         med_p90(s["lat"]) + note, "median <= serf's / 5"))
            rows.append((f"N={n}: `shoal register` CLI returns (fsynced ack), median (ms)",
                         ms(statistics.median(s["cli"])) if s["cli"] else "n/a", ""))
        if f is not None:
            note = f" ({f['failed']} timed out)" if f["failed"] else ""
            rows.append((f"N={n}: `serf event` -> every handler ran, "
                         "median / p90 (min..max) (ms)",
                         med_p90(f["lat"]) + note, f"issue: {ref.get(n, '?')}"))
            rows.append((f"N={n}: `serf event -coalesce=false` -> every handler ran, "
                         "median / p90 (min..max) (ms)", med_p90(f["lat_nc"]), ""))
        if s and f and s["lat"] and f["lat"]:
            m = statistics.median(s["lat"])
            rows.append((f"N={n}: shoal median / serf median (default event)",
                         f"{m / statistics.median(f['lat']):.2f}", "<= 0.20"))
            if f["lat_nc"]:
                rows.append((f"N={n}: shoal median / serf median (-coalesce=false)",
                             f"{m / statistics.median(f['lat_nc']):.2f}", ""))
    if core is not None:
        k = core
        rows += [
            (f"core: heap per instance, 2 tags, no metadata ({k['instances']} instances, "
             f"{k['owners']} owners) (B)", f"{k['bytes_per_instance']:.0f}", "< 1024 + metadata"),
            (f"core: heap per instance with 2 meta pairs ({k['meta_raw_per_instance']:.0f} B raw) "
             "(B)", f"{k['bytes_per_instance_meta']:.0f}", ""),
            ("core: of which the 2 meta pairs (B)",
             f"{k['bytes_per_instance_meta'] - k['bytes_per_instance']:.0f}", ""),
            ("core: heap of the whole registry, with metadata (MiB)",
             f"{k['heap_mb_meta']:.1f}", ""),
            ("core: apply one event, p50 / p99 (us)",
             f"{k['apply_p50_us']:.2f} / {k['apply_p99_us']:.2f}", ""),
            (f"core: shoal_registry_query, 100-instance service, p50 / p99 (us, "
             f"{k['query100_n']} queries)",
             f"{k['query100_p50_us']:.1f} / {k['query100_p99_us']:.1f}", ""),
            (f"core: shoal_registry_query, {k['big']}-instance service, p50 / p99 (us, "
             f"{k['querybig_n']} queries)",
             f"{k['querybig_p50_us']:.0f} / {k['querybig_p99_us']:.0f}", ""),
        ]
    if big is not None:
        if big.get("load_s") is not None:
            rows.append((f"setup: {args.instances} POST /v1/register over {args.owners} agents, "
                         "in parallel (s)", f"{big['load_s']:.1f}", ""))
            rows.append((f"setup: one POST /v1/register, median over each owner's first / last "
                         "10 % (ms)", f"{big['reg_first_ms']:.2f} / {big['reg_last_ms']:.2f}", ""))
        if big.get("cluster_sync_s") is not None:
            rows.append((f"setup: {args.owners} agents agree (digests) after "
                         "registering (s)", f"{big['cluster_sync_s']:.1f}", ""))
        if big.get("fresh_api_s") is not None or "fresh_s" in big:
            rows.append(("new agent: answers its API after (s)",
                         "n/a" if big.get("fresh_api_s") is None else f"{big['fresh_api_s']:.2f}",
                         ""))
            rows.append((f"new agent: holds all {args.instances} instances (digests equal) "
                         "after (s)",
                         "n/a" if big.get("fresh_s") is None else f"{big['fresh_s']:.2f}", "< 5"))
        if "q100_p50" in big:
            rows.append((f"API: GET /v1/instances/NAME, {big['q100_size']:.0f}-instance service, "
                         f"{args.instances} held, p50 / p99 (ms, {big['q100_n']} queries)",
                         f"{ms2(big['q100_p50'])} / {ms2(big['q100_p99'])}", ""))
            rows.append((f"API: GET /v1/instances/NAME, {big['qbig_size']:.0f}-instance service, "
                         f"p50 / p99 (ms, {big['qbig_n']} queries)",
                         f"{ms2(big['qbig_p50'])} / {ms2(big['qbig_p99'])}", ""))
    for (label, where), r in sorted((regs or {}).items()):
        name = "this build" if label == "shoal" else f"baseline {args.baseline}"
        pre = (f"one agent, {args.registrations} POST /v1/register, {args.reg_clients} clients x "
               f"{args.reg_depth} in flight, {name}, data dir on {where}")
        if "error" in r:
            rows.append((pre, "FAILED: " + r["error"], ""))
            continue
        pre += f" ({r['fs']})"
        rows.append((pre + ": acknowledged registrations/s", f"{r['rate']:.0f}",
                     ">= 5000 on tmpfs" if label == "shoal" else "issue: 189/s over 20 agents"))
        rows.append((pre + ": request latency, median of the first / last 10 % (ms)",
                     f"{r['first_ms']:.2f} / {r['last_ms']:.2f}", "last <= 1.5 x first"))
        rows.append((pre + ": agent CPU per registration (us; registrations per agent "
                     "CPU-second)", f"{r['cpu_us']:.0f} ({1e6 / max(r['cpu_us'], 1e-3):.0f})",
                     ""))
        if r.get("appends") is not None:
            rows.append((pre + ": log appends (fdatasyncs) per registration",
                         f"{r['appends'] / args.registrations:.3f}", ""))
        if r.get("big_p50") is not None:
            rows.append((f"{name}, data dir on {where}: GET /v1/instances/NAME of those "
                         f"{r['big_n']} instances ({r['big_bytes'] / 1e6:.1f} MB), p50 / p99 "
                         f"(ms, {args.big_queries} queries)",
                         f"{ms2(r['big_p50'])} / {ms2(r['big_p99'])}",
                         "p50 < 20" if label == "shoal" else "issue: 300 ms p50"))
            rows.append((f"{name}, data dir on {where}: agent CPU per such answer (ms)",
                         f"{r['big_cpu_ms']:.1f}", ""))
    out = ["| measurement | result | target / reference |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[20, 50], help="cluster sizes (20 50)")
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--serf", default=shutil.which("serf") or "/usr/bin/serf")
    ap.add_argument("--core-bench", help="path of bench_registry (default: BUILD/tests/)")
    ap.add_argument("--only", choices=["shoal", "serf"], help="part 1: one system only")
    ap.add_argument("--parts", default="1,2,3,4,5", help="which parts to run (1,2,3,4,5)")
    ap.add_argument("--registrations", type=int, default=10000, help="part 5 (10000)")
    ap.add_argument("--reg-clients", type=int, default=8, help="part 5: client processes (8)")
    ap.add_argument("--reg-depth", type=int, default=4, help="part 5: requests in flight each (4)")
    ap.add_argument("--disk", default="/var/tmp", help="part 5: a data dir on a real disk")
    ap.add_argument("--baseline", help="part 5: also run this shoal binary (today's figure)")
    ap.add_argument("--big-queries", type=int, default=50,
                    help="part 5: GETs of the whole registered service afterwards (50)")
    ap.add_argument("--repeats", type=int, default=20, help="part 1: events per size (20)")
    ap.add_argument("--gap", type=float, default=2.0, help="pause between events, s (2)")
    ap.add_argument("--instances", type=int, default=100000, help="parts 2-4 (100000)")
    ap.add_argument("--owners", type=int, default=20, help="part 3: owner agents (20)")
    ap.add_argument("--load", choices=["api", "files"], default="api",
                    help="part 3: register through the API, or give the owners --config-dir "
                         "service files (api)")
    ap.add_argument("--queries", type=int, default=2000, help="part 4: queries (2000)")
    ap.add_argument("--timeout", type=float, default=90.0, help="bound on each wait, s (90)")
    ap.add_argument("--load-timeout", type=float, default=900.0,
                    help="part 3: bound on registering, s (900)")
    ap.add_argument("--sync-wait", type=float, default=240.0,
                    help="part 3: bound on the owners' convergence, s (240)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="work and data dirs (/tmp)")
    ap.add_argument("--shm", default="/dev/shm", help="part 3 data dirs (/dev/shm)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-netns", dest="netns", action="store_false")
    ap.add_argument("--keep", action="store_true", help="keep logs and data dirs")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    args.parts = set(args.parts.replace(" ", "").split(","))
    if not args.parts <= {"1", "2", "3", "4", "5"}:
        ap.error("--parts takes a list of 1, 2, 3, 4, 5")
    if not 100 <= args.registrations <= 1000000 or not 1 <= args.reg_clients <= 64 \
            or not 1 <= args.reg_depth <= 64:
        ap.error("--registrations within 100..1000000, --reg-clients and --reg-depth 1..64")
    if "4" in args.parts:
        args.parts.add("3")  # part 4 queries the agent part 3 builds
    if any(n < 3 or n > 200 for n in args.sizes):
        ap.error("sizes must be within 3..200")
    if not 1 <= args.repeats <= 200:
        ap.error("--repeats must be within 1..200")
    if not 1 <= args.owners <= 50 or not 1000 <= args.instances <= 1000000:
        ap.error("--owners within 1..50, --instances within 1000..1000000")
    systems = [args.only] if args.only else ["shoal", "serf"]
    need_shoal = args.parts & {"1", "3"} and "shoal" in systems or args.parts & {"3", "5"}
    if need_shoal and not os.access(args.shoal, os.X_OK):
        ap.error(f"{args.shoal} not found: cmake -S . -B build && cmake --build build -j2")
    if "1" in args.parts and "serf" in systems and not os.access(args.serf, os.X_OK):
        ap.error("serf not found: scripts/setup.sh installs it")

    if args.netns:
        if enter_private_netns():
            log("running in a private network namespace (loopback only)")
        else:
            log("cannot create a network namespace (not root?): using the host's loopback")
            args.netns = False

    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)

    rng = random.Random(args.seed)
    load0 = os.getloadavg()
    prop, core, big, regs, failures = {}, None, None, None, []
    if "1" in args.parts:
        for n in args.sizes:
            for s in systems:
                fn = bench_shoal_propagation if s == "shoal" else bench_serf_propagation
                try:
                    prop[(s, n)] = fn(n, args, rng)
                except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                    log(f"{s} N={n}: FAILED: {e}")
                    failures.append(f"part 1 {s} N={n}: {str(e).splitlines()[0] if str(e) else e}")
                time.sleep(1)
    if "2" in args.parts:
        try:
            core = bench_core(args)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as e:
            log(f"core: FAILED: {e}")
            failures.append(f"part 2: {e}")
    if "3" in args.parts:
        try:
            big = bench_big_registry(args, rng)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            log(f"big registry: FAILED: {e}")
            failures.append(f"parts 3-4: {str(e).splitlines()[0] if str(e) else e}")

    if "5" in args.parts:
        regs = bench_registrations(args)
        failures += [f"part 5 {k[0]} {k[1]}: {v['error']}" for k, v in regs.items() if "error" in v]

    ver = subprocess.run([args.shoal, "version"], capture_output=True, text=True, timeout=10) \
        if os.access(args.shoal, os.X_OK) else None
    what = [(ver.stdout.strip() if ver and ver.stdout else "shoal")]
    if "1" in args.parts and "serf" in systems:
        sv = subprocess.run([args.serf, "version"], capture_output=True, text=True, timeout=10)
        what.append("serf " + (sv.stdout.splitlines()[0] if sv.stdout else "?"))
    print()
    print(f"{' vs '.join(what)} on 127.0.0.1; {os.cpu_count()} CPUs; load average at start "
          f"{load0[0]:.2f}; {'private' if args.netns else 'host'} network namespace")
    if "1" in args.parts:
        print(f"part 1: {args.repeats} events per size, {args.gap:g} s apart; protocol: probe 1s, "
              "timeout 500ms, gossip 200ms to 3, indirect 3, suspicion x4, retransmit x4, "
              "push-pull 30s")
    print()
    print(table(args, prop, core, big, regs))
    for f in failures:
        print(f"\nFAILED: {f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"propagation": {f"{s}-{n}": r for (s, n), r in prop.items()},
                       "core": core, "big": big,
                       "registrations": {f"{k[0]}-{k[1]}": v for k, v in (regs or {}).items()},
                       "failures": failures}, f, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; agents killed")
        sys.exit(130)

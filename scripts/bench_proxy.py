#!/usr/bin/env python3
"""bench_proxy.py -- throughput and added latency of `shoal proxy`, against a
direct connection and haproxy (Debian's package) configured the same way.

In one run, on loopback: two backends (forking Python servers: one process
per connection, so the backend is not the bottleneck of one GIL), one
`shoal agent` with both registered, `shoal proxy --strategy round-robin`,
and haproxy in TCP mode with the same two servers, roundrobin, one thread
(`nbthread 1`: shoal proxy runs on one libev loop). For each path:

  throughput  N parallel streams (one client process each) send S MB each
              to a backend that discards it; time from the first connect to
              the last backend acknowledging its byte count (MB = 2^20 B)
  latency     K request/response round trips of B bytes on one connection
              (after 500 warm-up ones); p50/p99/mean in microseconds

Prints a markdown table. Numbers, not a pass/fail test. Installs haproxy
with apt-get if missing (it is not a build dependency); --no-haproxy skips it.

Usage: scripts/bench_proxy.py [--shoal build/shoal] [--streams 4] [--mb 256]
                              [--echoes 10000] [--size 64] [--no-haproxy]
"""

import argparse
import json
import multiprocessing as mp
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
import urllib.request

CHUNK = 1 << 16


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- backend

def serve_conn(c):
    """First byte picks the mode: 'S' sink (read to EOF, answer the count),
    'E' echo."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mode = c.recv(1)
    if mode == b"S":
        n = 0
        buf = bytearray(1 << 20)
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            n += k
        c.sendall(struct.pack("!Q", n))
    elif mode == b"E":
        while True:
            d = c.recv(CHUNK)
            if not d:
                break
            c.sendall(d)
    c.close()


def backend_main(port, ready):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    ready.set()
    while True:
        c, _ = ls.accept()
        if os.fork() == 0:
            ls.close()
            try:
                serve_conn(c)
            finally:
                os._exit(0)
        c.close()


# ---------------------------------------------------------------- clients

def stream_client(port, nbytes, start, out):
    start.wait(30)
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(b"S")
    buf = memoryview(os.urandom(1 << 20))
    left = nbytes
    while left:
        k = s.send(buf[: min(left, len(buf))])
        left -= k
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        d = s.recv(8 - len(got))
        if not d:
            break
        got += d
    s.close()
    n = struct.unpack("!Q", got)[0] if len(got) == 8 else -1
    out.put((n, time.monotonic()))


def throughput(port, streams, mb):
    nbytes = mb << 20
    start = mp.Event()
    out = mp.Queue()
    ps = [mp.Process(target=stream_client, args=(port, nbytes, start, out)) for _ in range(streams)]
    for p in ps:
        p.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    start.set()
    res = [out.get(timeout=600) for _ in ps]
    for p in ps:
        p.join(30)
    bad = [n for n, _ in res if n != nbytes]
    if bad:
        raise RuntimeError("a stream lost bytes: %r" % bad)
    dt = max(t for _, t in res) - t0
    return streams * mb / dt


def latency(port, count, size):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"E")
    msg = b"x" * size
    rtts = []
    for i in range(count + 500):
        t = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < size:
            d = s.recv(size - got)
            if not d:
                raise RuntimeError("echo closed")
            got += len(d)
        if i >= 500:
            rtts.append((time.perf_counter_ns() - t) / 1e3)
    s.close()
    rtts.sort()
    return rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99)], statistics.fmean(rtts)


# ---------------------------------------------------------------- setup

def wait_port(port, proc=None, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def http(addr, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://%s%s" % (addr, path), data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def ensure_haproxy():
    h = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if h:
        return h
    print("# haproxy missing: apt-get install haproxy", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", "haproxy"],
                   check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                   stdout=subprocess.DEVNULL)
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", default="build/shoal")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--echoes", type=int, default=10000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--no-haproxy", action="store_true")
    args = ap.parse_args()
    shoal = os.path.abspath(args.shoal)
    mp.set_start_method("fork")

    tmp = tempfile.mkdtemp(prefix="bench-proxy-")
    procs = []
    try:
        ports = [free_port(), free_port()]
        for p in ports:
            ready = mp.Event()
            b = mp.Process(target=backend_main, args=(p, ready), daemon=True)
            b.start()
            procs.append(b)
            ready.wait(10)

        agent_http = "127.0.0.1:%d" % free_port()
        log = open(os.path.join(tmp, "agent.log"), "wb")
        agent = subprocess.Popen(
            [shoal, "agent", "--name", "bench", "--bind", "127.0.0.1:%d" % free_port(),
             "--http", agent_http, "--data-dir", os.path.join(tmp, "data")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        procs.append(agent)
        wait_port(int(agent_http.split(":")[1]), agent)
        for i, p in enumerate(ports):
            http(agent_http, "POST", "/v1/register",
                 {"id": "b%d" % (i + 1), "service": "bench", "address": "127.0.0.1", "port": p})

        sp_port = free_port()
        plog = open(os.path.join(tmp, "proxy.log"), "wb")
        proxy = subprocess.Popen(
            [shoal, "proxy", "--listen", "127.0.0.1:%d" % sp_port, "--service", "bench",
             "--http", agent_http, "--strategy", "round-robin"],
            stdout=plog, stderr=plog, stdin=subprocess.DEVNULL)
        procs.append(proxy)
        wait_port(sp_port, proxy)
        end = time.monotonic() + 10
        while b"2 instances" not in open(os.path.join(tmp, "proxy.log"), "rb").read():
            if time.monotonic() > end:
                raise RuntimeError("shoal proxy never saw the 2 instances")
            time.sleep(0.05)

        paths = [("direct", ports[0]), ("shoal proxy", sp_port)]
        hv = ""
        if not args.no_haproxy:
            hap = ensure_haproxy()
            hv = subprocess.run([hap, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
            hp_port = free_port()
            cfg = os.path.join(tmp, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write("global\n  nbthread 1\n  maxconn 1000\n"
                        "defaults\n  mode tcp\n  timeout connect 2s\n"
                        "  timeout client 120s\n  timeout server 120s\n"
                        "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                        "backend be\n  balance roundrobin\n" % hp_port)
                for i, p in enumerate(ports):
                    f.write("  server b%d 127.0.0.1:%d\n" % (i + 1, p))
            hlog = open(os.path.join(tmp, "haproxy.log"), "wb")
            h = subprocess.Popen([hap, "-db", "-f", cfg], stdout=hlog, stderr=hlog,
                                 stdin=subprocess.DEVNULL)
            procs.append(h)
            wait_port(hp_port, h)
            paths.append(("haproxy", hp_port))

        rows = []
        for name, port in paths:
            mbps = throughput(port, args.streams, args.mb)
            p50, p99, mean = latency(port, args.echoes, args.size)
            rows.append((name, mbps, p50, p99, mean))
            print("# %s done" % name, file=sys.stderr)

        d50, d99 = rows[0][2], rows[0][3]
        print("\n%d streams x %d MB (MB/s, client -> backend); %d round trips of %d B on one "
              "connection (us)%s\n" % (args.streams, args.mb, args.echoes, args.size,
                                       "; " + hv if hv else ""))
        print("| path | throughput MB/s | RTT p50 us | RTT p99 us | RTT mean us "
              "| added p50 us | added p99 us |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, mbps, p50, p99, mean in rows:
            print("| %s | %.0f | %.1f | %.1f | %.1f | %+.1f | %+.1f |" % (
                name, mbps, p50, p99, mean, p50 - d50, p99 - d99))
        sys.stdout.flush()
        # The proxy's own counters, for the record.
        proxy.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        lines = [l for l in open(os.path.join(tmp, "proxy.log")).read().splitlines()
                 if "stats:" in l]
        if lines:
            print("\nshoal proxy " + lines[-1].split("proxy: ", 1)[-1])
    finally:
        for p in reversed(procs):
            try:
                if isinstance(p, subprocess.Popen):
                    p.terminate()
                    p.wait(10)
                else:
                    p.terminate()
                    p.join(5)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""bench_ui.py -- how the web UI (/ui/) copes with 10,000 instances.

Starts 3 agents on loopback (tests/process/harness.py, its fast protocol
settings) that load, from --config-dir files, a third each of --instances
(10,000) of one service `big` and of --small (1,000) more in services of 10;
each instance has 2 tags and 2 metadata pairs. Then Debian's chromium (headless,
through python3-selenium and chromium-driver, a fresh temp profile) opens
n3's page, which holds all of it by replication, and prints numbers, never
pass/fail:

- the API answers the page needs: GET /v1/cluster, GET /v1/instances/big?all=1
  (time and size, median of 5);
- time to first render: from navigation start until the page has drawn the
  overview, or the first 100 rows of `big` (the page's own performance marks
  'shoal:overview:painted' / 'shoal:instances:painted'), median of --runs;
- a tag filter over the 10,000 and a page flip (synchronous re-render, in the
  page);
- a registration on n1 -> the row count on n3's open page moves (gossip,
  the blocking query's answer of 10,001 instances, parse and render);
- the page's JS heap.

Run with /usr/bin/python3 (Debian's selenium). As root it moves into its own
network namespace (loopback only). Usage:
    scripts/bench_ui.py [--shoal build/shoal] [--instances 10000] [--runs 5]
"""

import argparse
import ctypes
import json
import os
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "process"))
import harness  # noqa: E402

CLONE_NEWNET = 0x40000000


def enter_private_netns():
    """unshare(CLONE_NEWNET) and bring lo up; False if not allowed."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return False
    import fcntl
    import struct
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))  # SIOCSIFFLAGS IFF_UP
    finally:
        s.close()
    return True


def write_files(confdir, specs, per_file=1000):
    os.makedirs(confdir, exist_ok=True)
    for f in range(0, len(specs), per_file):
        lines = []
        for x in specs[f:f + per_file]:
            lines += ["[service]", "id = " + x["id"], "service = " + x["service"],
                      "address = " + x["address"], "port = %d" % x["port"]]
            lines += ["tag = " + t for t in x["tags"]]
            lines += ["meta.%s = %s" % kv for kv in x["meta"].items()]
            lines.append("")
        with open(os.path.join(confdir, "ui-%04d.service" % (f // per_file)), "w") as fh:
            fh.write("\n".join(lines))


def spec(i, service):
    return {"id": "%s-%05d" % (service, i), "service": service,
            "address": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), "port": 8000 + i % 1000,
            "tags": ["v%d" % (i % 3), "zone-%d" % (i % 10)],
            "meta": {"version": "1.%d.%d" % (i % 7, i % 13), "team": "team-%d" % (i % 20)}}


def timed_get(addr, path, n=5):
    ts, size = [], 0
    for _ in range(n):
        t0 = time.monotonic()
        st, _, raw, _ = harness.http_request(addr, "GET", path, timeout=60)
        ts.append((time.monotonic() - t0) * 1000)
        if st != 200:
            sys.exit("GET %s: %s" % (path, st))
        size = len(raw)
    return statistics.median(ts), size


def browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--user-data-dir=" + profile, "--window-size=1360,1000", "--no-first-run",
              "--disable-extensions", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--disable-default-apps",
              "--enable-precise-memory-info"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def mark_ms(d, name, timeout=120):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        v = d.execute_script("const e = performance.getEntriesByName(arguments[0]);"
                             "return e.length ? e[0].startTime : null;", name)
        if v is not None:
            return v
        time.sleep(0.02)
    sys.exit("the page never reached %s" % name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shoal", default=os.path.join(ROOT, "build", "shoal"))
    ap.add_argument("--instances", type=int, default=10000, help="instances of the service `big`")
    ap.add_argument("--small", type=int, default=1000, help="more instances, in services of 10")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-netns", dest="netns", action="store_false")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.netns and os.geteuid() == 0:
        print("# private network namespace: %s" % ("yes" if enter_private_netns() else "no (unshare failed)"))

    h = harness.Harness(os.path.abspath(args.shoal), keep=args.keep)
    d = None
    try:
        big = [spec(i, "big") for i in range(args.instances)]
        small = [spec(i, "svc-%03d" % (i // 10)) for i in range(args.small)]
        # each agent owns a third (loading --config-dir registers one by one)
        for k in range(3):
            write_files(os.path.join(h.tmp, "conf%d" % k), big[k::3] + small[k::3])
        t0 = time.monotonic()
        nodes = []
        for k in range(3):
            a = h.agent("n%d" % (k + 1), start=False, join=nodes[:1],
                        flags=harness.FAST + ["--config-dir", os.path.join(h.tmp, "conf%d" % k)])
            a.start(wait=False)
            nodes.append(a)
        for a in nodes:
            a.wait_ready(timeout=300)
        n1, n2, n3 = nodes
        total = args.instances + args.small

        def loaded():
            _, doc, _, _ = harness.http_request(n3.http, "GET", "/v1/cluster", timeout=30)
            return doc and sum(s["total"] for s in doc["services"]) == total and \
                sum(m["status"] == "alive" for m in doc["members"]) == 3
        harness.wait_until(loaded, 300, None, "n3 to hold all %d instances" % total, interval=0.5)
        print("# 3 agents up, n3 holds %d instances, after %.1f s" % (total, time.monotonic() - t0))

        rows = []
        ms, size = timed_get(n3.http, "/v1/cluster")
        rows.append(("GET /v1/cluster (%d services), median ms / KiB" % (1 + args.small // 10),
                     "%.1f / %.0f" % (ms, size / 1024)))
        ms, size = timed_get(n3.http, "/v1/instances/big?all=1")
        rows.append(("GET /v1/instances/big?all=1 (%d), median ms / KiB" % args.instances,
                     "%.1f / %.0f" % (ms, size / 1024)))

        d = browser(tempfile.mkdtemp(prefix="ui-bench-profile-", dir=h.tmp))
        base = "http://%s/ui/" % n3.http
        over, inst = [], []
        for _ in range(args.runs):
            d.get("about:blank")
            d.get(base)
            over.append(mark_ms(d, "shoal:overview:painted"))
            d.get("about:blank")
            d.get(base + "#/service/big")
            inst.append(mark_ms(d, "shoal:instances:painted"))
        rows.append(("first render, overview: median (min..max) ms",
                     "%.0f (%.0f..%.0f)" % (statistics.median(over), min(over), max(over))))
        rows.append(("first render, 100 of %d instances: median (min..max) ms" % args.instances,
                     "%.0f (%.0f..%.0f)" % (statistics.median(inst), min(inst), max(inst))))

        rerender = d.execute_script("""
            const t = document.getElementById('instance-filter-tag');
            let t0 = performance.now();
            t.value = 'zone-3'; t.dispatchEvent(new Event('input'));
            const filt = performance.now() - t0;
            const shown = document.getElementById('instances-summary').textContent;
            t.value = ''; t.dispatchEvent(new Event('input'));
            t0 = performance.now();
            document.querySelector('#instances-pager button:last-child').click();
            const flip = performance.now() - t0;
            return [filt, flip, shown];""")
        rows.append(("tag filter over %d (%s): ms" % (args.instances, rerender[2]), "%.1f" % rerender[0]))
        rows.append(("next page of 100: ms", "%.1f" % rerender[1]))

        lat = []
        for k in range(3):
            want = "of %d instances" % (args.instances + k + 1)
            t0 = time.monotonic()
            n1.post("/v1/register", {"id": "late-%d" % k, "service": "big", "address": "10.9.9.%d" % k,
                                     "port": 80})
            t_end = t0 + 60
            while time.monotonic() < t_end:
                if want in (d.execute_script(
                        "return document.getElementById('instances-summary').textContent;") or ""):
                    break
                time.sleep(0.01)
            else:
                sys.exit("the page never showed %r" % want)
            lat.append((time.monotonic() - t0) * 1000)
        rows.append(("register on n1 -> n3's open page counts it: median (min..max) ms",
                     "%.0f (%.0f..%.0f)" % (statistics.median(lat), min(lat), max(lat))))
        heap = d.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null;")
        if heap:
            rows.append(("page JS heap on the big service, MiB", "%.1f" % (heap / 1048576)))

        w = max(len(r[0]) for r in rows)
        print("%-*s  %s" % (w, "measurement", "result"))
        for r in rows:
            print("%-*s  %s" % (w, r[0], r[1]))
        print("# load average %s; the machine may be shared" % " ".join(
            open("/proc/loadavg").read().split()[:3]))
    finally:
        if d:
            d.quit()
        h.close()


if __name__ == "__main__":
    main()

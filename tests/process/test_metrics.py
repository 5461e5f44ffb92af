"""test_metrics.py -- GET /metrics with real agents, curl and promtool.

The text is fetched with curl (as a scraper would) and piped to
`promtool check metrics` (Debian's prometheus package), which must exit 0
and print nothing (no lint problem at all). Then the values must move with
what happens: a registration raises shoal_registry_instances on another
node, a TTL instance counts as critical, a kill -9 moves members by status
and shoal_deaths_total, a kill -9 and restart within a minute is one flap,
and dig queries move the DNS counters by type and result.

Run: /usr/bin/python3 test_metrics.py --shoal build/shoal [-k NAME] [--keep]
"""

import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, fail, free_port, run_tests, test  # noqa: E402

CURL = shutil.which("curl")
PROMTOOL = shutil.which("promtool")
DIG = shutil.which("dig")


def start(h, name, join=()):
    port = free_port()
    a = h.agent(name, join=list(join), flags=FAST + ["--dns", "127.0.0.1:%d" % port])
    a.dns_port = port
    return a


def scrape(a):
    """(content type, text) of GET /metrics, through curl."""
    if CURL is None:
        fail("curl not found (scripts/setup.sh)")
    r = subprocess.run([CURL, "-sS", "--max-time", "10", "-D", "-", "http://%s/metrics" % a.http],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(r.returncode == 0, lambda: "curl: %r" % r.stderr)
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    check(head.startswith("HTTP/1.1 200"), lambda: "GET /metrics: " + head)
    ctype = re.search(r"(?im)^content-type: (.*?)\r?$", head).group(1)
    return ctype, body


def samples(a):
    """{ 'name{labels}': value } of one scrape."""
    _, body = scrape(a)
    out = {}
    for line in body.split("\n"):
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def value(a, key):
    s = samples(a)
    check(key in s, lambda: "%s: no sample %s" % (a.name, key))
    return s[key]


def dig(a, *args):
    if DIG is None:
        fail("dig not found: install bind9-dnsutils (scripts/setup.sh)")
    r = subprocess.run([DIG, "@127.0.0.1", "-p", str(a.dns_port), "+time=3", "+tries=1"] +
                       list(args), stdout=subprocess.PIPE, timeout=30)
    check(r.returncode == 0, "dig failed")
    return r.stdout.decode()


@test("GET /metrics is Prometheus text 0.0.4 that promtool checks clean")
def t_promtool(h):
    if PROMTOOL is None:
        fail("promtool not found: install prometheus (scripts/setup.sh)")
    n1 = start(h, "n1")
    n2 = start(h, "n2", join=[n1])
    h.wait_view([n1, n2], {"n1": "alive", "n2": "alive"})
    n1.post("/v1/register", {"id": "w", "service": "web", "address": "127.0.0.1", "port": 80})
    dig(n1, "web.service.shoal")
    ctype, body = scrape(n1)
    check(ctype.startswith("text/plain; version=0.0.4"), "content type: " + ctype)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          lambda: "promtool exit %d:\n%s%s" % (r.returncode, r.stdout.decode(),
                                                 r.stderr.decode()))
    # every family has HELP then TYPE, every sample belongs to a declared family
    declared = set()
    lines = body.rstrip("\n").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("# TYPE "):
            name = line.split()[2]
            check(lines[i - 1].startswith("# HELP %s " % name), "HELP before TYPE of " + name)
            # process_*: the standard process collector's names (CPU, RSS, fds)
            check(name.startswith("shoal_") or name.startswith("process_"), "prefix: " + name)
            declared.add(name)
        elif not line.startswith("#"):
            name = re.match(r"^[a-z_]+", line).group(0)
            base = re.sub(r"_(bucket|sum|count)$", "", name)  # histogram samples
            check(name in declared or base in declared, "undeclared: " + line)
    for fam in ("shoal_members", "shoal_health_score", "shoal_probes_sent_total",
                "shoal_probes_failed_total", "shoal_suspicions_total", "shoal_refutations_total",
                "shoal_deaths_total", "shoal_flaps_total", "shoal_packets_total",
                "shoal_bytes_total", "shoal_drops_total", "shoal_registry_instances",
                "shoal_registry_tombstones", "shoal_registry_events_applied_total",
                "shoal_registry_syncs_total", "shoal_stream_bytes_total",
                "shoal_dns_queries_total", "shoal_dns_responses_total"):
        check(fam in declared, "missing family " + fam)
    s = samples(n1)
    for reason in ("bad_signature", "not_endorsed", "decode", "too_large", "replay"):
        check('shoal_drops_total{reason="%s"}' % reason in s, "drop reason " + reason)
    check(s['shoal_members{status="alive"}'] == 2, "two alive")
    check(s['shoal_packets_total{direction="in"}'] > 0 and
          s['shoal_bytes_total{direction="out"}'] > 0, "traffic counted")


@test("values move: registration, a TTL instance, kill -9, dig queries")
def t_values_move(h):
    n1 = start(h, "n1")
    n2 = start(h, "n2", join=[n1])
    n3 = start(h, "n3", join=[n1])
    h.wait_view([n1, n2, n3], {"n1": "alive", "n2": "alive", "n3": "alive"})
    passing = 'shoal_registry_instances{status="passing"}'
    critical = 'shoal_registry_instances{status="critical"}'
    p0, c0 = value(n1, passing), value(n1, critical)
    applied0 = value(n1, "shoal_registry_events_applied_total")
    n2.post("/v1/register", {"id": "a", "service": "api", "address": "127.0.0.2", "port": 1})
    n2.post("/v1/register", {"id": "t", "service": "api", "address": "127.0.0.3", "port": 1,
                             "ttl": "30s"})
    n1.wait_until(lambda: value(n1, passing) == p0 + 1 and value(n1, critical) == c0 + 1,
                  what="n2's registrations in n1's instance gauges")
    check(value(n1, "shoal_registry_events_applied_total") >= applied0 + 2, "events applied")

    check(value(n1, 'shoal_members{status="dead"}') == 0, "nobody dead yet")
    deaths0 = value(n1, "shoal_deaths_total")
    n3.kill9()
    n1.wait_until(lambda: value(n1, 'shoal_members{status="dead"}') == 1 and
                  value(n1, 'shoal_members{status="alive"}') == 2,
                  what="n3 dead in n1's members gauge")
    check(value(n1, "shoal_deaths_total") >= deaths0 + 1, "deaths counted")

    q = lambda t: value(n1, 'shoal_dns_queries_total{type="%s"}' % t)
    r = lambda t: value(n1, 'shoal_dns_responses_total{result="%s"}' % t)
    a0, srv0, other0, ok0, nx0, ref0 = q("A"), q("SRV"), q("other"), r("noerror"), \
        r("nxdomain"), r("refused")
    dig(n1, "api.service.shoal")
    dig(n1, "-t", "SRV", "_api._tcp.service.shoal")
    dig(n1, "-t", "TXT", "api.service.shoal")
    dig(n1, "nope.service.shoal")
    dig(n1, "example.com")
    check(q("A") == a0 + 3 and q("SRV") == srv0 + 1 and q("other") == other0 + 1,
          "queries by type moved")
    check(r("noerror") == ok0 + 3 and r("nxdomain") == nx0 + 1 and r("refused") == ref0 + 1,
          "responses by result moved")


@test("a member killed and back within a minute counts one flap")
def t_flap(h):
    n1 = start(h, "n1")
    n2 = start(h, "n2", join=[n1])
    h.wait_view([n1, n2], {"n1": "alive", "n2": "alive"})
    check(value(n1, "shoal_flaps_total") == 0, "no flap yet")
    n2.kill9()
    n1.wait_until(lambda: value(n1, 'shoal_members{status="dead"}') == 1, what="n2 dead")
    n2.start()
    n1.wait_until(lambda: value(n1, 'shoal_members{status="alive"}') == 2, what="n2 back")
    n1.wait_until(lambda: value(n1, "shoal_flaps_total") == 1, what="one flap")


@test("active checks move the check counters and the latency histogram")
def t_checks(h):
    import socket
    n1 = start(h, "n1")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    try:
        st, doc, _, _ = n1.request("POST", "/v1/register", {
            "id": "c", "service": "db", "address": "127.0.0.1", "port": port,
            "checks": [{"tcp": "127.0.0.1:%d" % port, "interval": "200ms", "timeout": "150ms"}]})
        check(st == 200, lambda: "register with a check: %d %r" % (st, doc))
        n1.wait_until(lambda: value(n1, "shoal_checks_run_total") >= 3, what="3 probes run")
    finally:
        srv.close()
    s = samples(n1)
    check(s["shoal_checks_configured"] == 1, "one check configured")
    count = s["shoal_check_duration_seconds_count"]
    check(count >= 3 and s['shoal_check_duration_seconds_bucket{le="+Inf"}'] == count,
          "histogram count")
    f0 = s["shoal_checks_failed_total"]
    n1.wait_until(lambda: value(n1, "shoal_checks_failed_total") > f0,
                  what="a failed probe counted once the listener is closed")


if __name__ == "__main__":
    run_tests()

"""test_dns.py -- the agent's DNS interface with real agents and real dig.

Clusters of 1-3 agents on loopback, each with --dns on its own port; dig
(Debian's bind9-dnsutils) is the client: A and AAAA at NAME.service.shoal,
SRV at NAME.service.shoal and _NAME._tcp.service.shoal (targets HEX.addr.shoal
with their addresses in the additional section), TAG.NAME filters, NXDOMAIN
with the SOA in dig's authority section, REFUSED outside the zone, truncation
of 60 instances over UDP (+notcp, +bufsize) and the full answer over TCP, a
kill -9'd owner's instances leaving every other node's answers, a critical
TTL instance not answered until its heartbeat, random datagrams counted by
/metrics while the agent keeps answering, and the --dns flag's errors.

Run: /usr/bin/python3 test_dns.py --shoal build/shoal [-k NAME] [--keep]
"""

import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, fail, free_port, run_tests, test, wait_until  # noqa: E402

DIG = shutil.which("dig")


def dns_flags():
    port = free_port()
    return FAST + ["--dns", "127.0.0.1:%d" % port], port


def start(h, name, join=()):
    flags, port = dns_flags()
    a = h.agent(name, join=list(join), flags=flags)
    a.dns_port = port
    return a


def dig(a, *args):
    """Runs dig against agent a; returns its stdout (fails on a dig error)."""
    if DIG is None:
        fail("dig not found: install bind9-dnsutils (scripts/setup.sh)")
    argv = [DIG, "@127.0.0.1", "-p", str(a.dns_port), "+time=3", "+tries=1"] + list(args)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 0, lambda: "%s -> exit %d\n%s%s" % (
        " ".join(argv), r.returncode, out, r.stderr.decode(errors="replace")))
    return out


def short(a, *args):
    return sorted(l for l in dig(a, "+short", *args).split("\n") if l)


def section(out, name):
    """The records of one section of dig's full output, as split lines."""
    m = re.search(r";; %s SECTION:\n(.*?)(\n\n|\Z)" % name, out, re.S)
    return [l.split() for l in m.group(1).split("\n")] if m else []


def header(out):
    m = re.search(r"status: (\w+),.*\n;; flags: ([a-z ]*);.*ANSWER: (\d+)", out)
    check(m, lambda: "no header in dig output:\n" + out)
    return m.group(1), m.group(2).split(), int(m.group(3))


def register(a, iid, svc, addr, port, tags=(), ttl=None):
    body = {"id": iid, "service": svc, "address": addr, "port": port, "tags": list(tags)}
    if ttl:
        body["ttl"] = ttl
    doc = a.post("/v1/register", body)
    check(doc.get("registered") == iid, lambda: "register %s: %r" % (iid, doc))


def metric(a, name, **labels):
    """One sample of GET /metrics (0 if absent)."""
    st, _, raw, _ = a.request("GET", "/metrics")
    check(st == 200, "GET /metrics: %d" % st)
    want = name + ("{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"
                   if labels else "")
    for line in raw.decode().split("\n"):
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


@test("A, AAAA, SRV at both names and the tag filter, answered by every node")
def t_records(h):
    n1 = start(h, "n1")
    n2 = start(h, "n2", join=[n1])
    n3 = start(h, "n3", join=[n1])
    register(n1, "web1", "web", "127.0.0.1", 8001, ["blue"])
    register(n2, "web2", "web", "127.0.0.2", 8002, ["green"])
    register(n3, "web6", "web", "::1", 8006, ["blue"])
    for a in (n1, n2, n3):
        a.wait_until(lambda a=a: short(a, "web.service.shoal") == ["127.0.0.1", "127.0.0.2"],
                     what="A records of web on %s" % a.name)
        check(short(a, "web.service.shoal", "AAAA") == ["::1"], "AAAA on %s" % a.name)
    for name in ("web.service.shoal", "_web._tcp.service.shoal"):
        out = dig(n2, "-t", "SRV", name)
        status, flags, an = header(out)
        check(status == "NOERROR" and "aa" in flags and an == 3, lambda: out)
        srv = {(r[4], r[5], r[6], r[7]) for r in section(out, "ANSWER")}
        # one target per instance: the IP then the port, in hex
        check(srv == {("1", "1", "8001", "7f0000011f41.addr.shoal."),
                      ("1", "1", "8002", "7f0000021f42.addr.shoal."),
                      ("1", "1", "8006", "000000000000000000000000000000011f46.addr.shoal.")},
              lambda: "SRV at %s:\n%s" % (name, out))
        add = {(r[0], r[3], r[4]) for r in section(out, "ADDITIONAL")}
        check(("7f0000011f41.addr.shoal.", "A", "127.0.0.1") in add and
              ("000000000000000000000000000000011f46.addr.shoal.", "AAAA", "::1") in add,
              lambda: "SRV additional section:\n" + out)
        check(all(r[1] == "0" for r in section(out, "ANSWER")), "default TTL is 0")
    check(short(n3, "blue.web.service.shoal") == ["127.0.0.1"], "tag blue, A")
    check(short(n3, "blue.web.service.shoal", "AAAA") == ["::1"], "tag blue, AAAA")
    check(short(n3, "green.web.service.shoal") == ["127.0.0.2"], "tag green")
    check(len(short(n3, "-t", "SRV", "_web._blue.service.shoal")) == 2, "_web._blue SRV")
    check(short(n1, "7f0000021f42.addr.shoal") == ["127.0.0.2"], "an SRV target resolves")
    check(short(n1, "7f000002.addr.shoal") == ["127.0.0.2"], "Consul's HEX.addr form resolves")


@test("unknown name: NXDOMAIN with the SOA in authority; outside the zone: REFUSED")
def t_nxdomain(h):
    a = start(h, "n1")
    register(a, "x", "web", "127.0.0.1", 80)
    out = dig(a, "nope.service.shoal")
    status, _, an = header(out)
    check(status == "NXDOMAIN" and an == 0, lambda: out)
    auth = section(out, "AUTHORITY")
    check(len(auth) == 1 and auth[0][0] == "shoal." and auth[0][3] == "SOA" and
          auth[0][4] == "ns.shoal." and auth[0][5] == "hostmaster.shoal.", lambda: out)
    out = dig(a, "red.web.service.shoal")  # a tag nobody has
    check(header(out)[0] == "NXDOMAIN", lambda: out)
    for name in ("example.com", "service.shoal.example.org"):
        out = dig(a, name)
        status, _, an = header(out)
        check(status == "REFUSED" and an == 0 and not section(out, "AUTHORITY"), lambda: out)
    check(metric(a, "shoal_dns_responses_total", result="nxdomain") == 2, "nxdomain counted")
    check(metric(a, "shoal_dns_responses_total", result="refused") == 2, "refused counted")


@test("60 instances: UDP answers hold 3 records with TC (or what fits in 3x the query); TCP all")
def t_truncation(h):
    flags, port = dns_flags()
    a = h.agent("n1", flags=flags + ["--dns-ttl", "30"])
    a.dns_port = port
    for i in range(60):
        register(a, "big%02d" % i, "big", "10.0.%d.%d" % (i // 200, i % 200 + 1), 9000 + i)
    for _ in range(2):  # the same stable subset each time
        out = dig(a, "+notcp", "+ignore", "+noedns", "big.service.shoal")
        status, flags, an = header(out)
        ips = [r[4] for r in section(out, "ANSWER")]
        check("tc" in flags and ips == ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
              lambda: "plain UDP:\n" + out)
    out = dig(a, "+notcp", "+ignore", "+bufsize=1232", "-t", "SRV", "big.service.shoal")
    status, flags, an2 = header(out)
    check("tc" in flags and 0 < an2 <= 3, lambda: "EDNS0 1232:\n" + out)
    ips = short(a, "+tcp", "big.service.shoal")
    check(len(ips) == 60 and len(set(ips)) == 60, lambda: "TCP: %d answers" % len(ips))
    out = dig(a, "+tcp", "-t", "SRV", "_big._tcp.service.shoal")
    status, flags, an = header(out)
    check(an == 60 and "tc" not in flags and len(section(out, "ADDITIONAL")) == 60, lambda: out)
    check(all(r[1] == "30" for r in section(out, "ANSWER")), "--dns-ttl 30: TTL 30 s")
    # dig's default: UDP, TC, then the whole answer over TCP
    out = dig(a, "big.service.shoal")
    check("Truncated, retrying in TCP mode" in out and header(out)[2] == 60, lambda: out)
    check(metric(a, "shoal_dns_responses_total", result="truncated") == 4, "truncated counted")
    # without the record cap, what fits in 3x the query (no amplification)
    a.term()
    a.flags = a.flags + ["--dns-udp-answer-limit", "0"]
    a.start()
    out = dig(a, "+notcp", "+ignore", "+noedns", "big.service.shoal")
    status, flags, an = header(out)
    size = int(re.search(r"MSG SIZE  rcvd: (\d+)", out).group(1))
    check("tc" in flags and 3 < an < 60 and size <= 3 * 35, lambda: "no cap:\n" + out)


@test("ANY and SRV over UDP get at most 3x the query back; ANY is one RRset (RFC 8482)")
def t_amplification(h):
    a = start(h, "n1")
    for i in range(60):
        register(a, "amp%02d" % i, "amp", "10.1.0.%d" % (i + 1), 7000 + i)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    worst = {}
    try:
        for qname, qtype in (("amp.service.shoal", 255), ("_amp._tcp.service.shoal", 33),
                             ("amp.service.shoal", 33), ("shoal", 255)):
            for edns in (None, 512, 1232, 4096):
                q = dns_query(qname, qtype, edns)
                s.sendto(q, ("127.0.0.1", a.dns_port))
                reply, _ = s.recvfrom(65535)
                check(len(reply) <= 3 * len(q),
                      "%s type %d edns %s: %d bytes back for %d" % (qname, qtype, edns,
                                                                    len(reply), len(q)))
                worst[qtype] = max(worst.get(qtype, 0), len(reply) / len(q))
    finally:
        s.close()
    h.note("UDP reply / query size, worst over EDNS none/512/1232/4096: ANY %.2fx, SRV %.2fx"
           % (worst[255], worst[33]))
    out = dig(a, "+notcp", "+ignore", "-t", "ANY", "amp.service.shoal")
    check({r[3] for r in section(out, "ANSWER")} == {"A"}, lambda: "ANY:\n" + out)


def dns_query(name, qtype, edns):
    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return q


@test("a kill -9'd owner's instances leave the answers; a critical TTL instance is not answered")
def t_dead_owner(h):
    n1 = start(h, "n1")
    n2 = start(h, "n2", join=[n1])
    n3 = start(h, "n3", join=[n1])
    register(n1, "a1", "api", "127.0.1.1", 7001)
    register(n2, "a2", "api", "127.0.1.2", 7002)
    register(n3, "t3", "api", "127.0.1.3", 7003, ttl="30s")  # critical until a heartbeat
    for a in (n1, n3):
        a.wait_until(lambda a=a: short(a, "api.service.shoal") == ["127.0.1.1", "127.0.1.2"],
                     what="api answered without the critical instance")
    st, _, _, _ = n3.request("POST", "/v1/heartbeat/t3")
    check(st == 200, "heartbeat: %d" % st)
    n1.wait_until(lambda: short(n1, "api.service.shoal") ==
                  ["127.0.1.1", "127.0.1.2", "127.0.1.3"], what="t3 passing after its heartbeat")
    n2.kill9()
    for a in (n1, n3):
        a.wait_until(lambda a=a: short(a, "api.service.shoal") == ["127.0.1.1", "127.0.1.3"],
                     what="n2's instance gone after kill -9")
        srv = short(a, "-t", "SRV", "api.service.shoal")
        check(not any(" 7002 " in s for s in srv), lambda: "SRV still has n2: %r" % srv)


@test("random datagrams to the DNS port are counted; the agent keeps answering")
def t_garbage(h):
    a = start(h, "n1")
    register(a, "g", "web", "127.0.0.5", 80)
    check(short(a, "web.service.shoal") == ["127.0.0.5"], "answers before")
    seed = random.randrange(1 << 30)
    h.note("garbage seed %d" % seed)
    rnd = random.Random(seed)

    def total():
        return sum(metric(a, "shoal_dns_responses_total", result=r)
                   for r in ("noerror", "nxdomain", "formerr", "refused", "notimp",
                             "truncated", "dropped"))
    base, dropped0 = total(), metric(a, "shoal_dns_responses_total", result="dropped")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    short_ones = 0
    N = 600
    for i in range(N):
        n = rnd.randrange(0, 12) if i % 3 == 0 else rnd.randrange(12, 700)
        short_ones += n < 12
        s.sendto(bytes(rnd.randrange(256) for _ in range(n)), ("127.0.0.1", a.dns_port))
        if i % 20 == 0:
            time.sleep(0.005)  # paced: loopback must not drop what we count
    s.close()
    a.wait_until(lambda: total() - base == N, what="all %d datagrams counted" % N)
    check(metric(a, "shoal_dns_responses_total", result="dropped") - dropped0 >= short_ones,
          "every header-less datagram dropped")
    check(short(a, "web.service.shoal") == ["127.0.0.5"], "answers after")
    check(a.running(), "agent alive")


@test("--dns off opens no DNS socket; a bad --dns is exit 2; a taken one exit 1")
def t_flags(h):
    port = free_port()
    a = h.agent("off", flags=FAST + ["--dns", "off"])
    check("DNS on" not in a.log_text(), "no DNS server with --dns off")
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", port))
    try:
        b = h.agent("busy", start=False, flags=FAST + ["--dns", "127.0.0.1:%d" % port])
        b.start(wait=False)
        rc = b.wait_exit(20)
        check(rc == 1 and "cannot serve DNS" in b.log_text(), lambda: b.describe())
    finally:
        busy.close()
    r = h.cli(["agent", "--dns", "localhost:53"])
    check(r.rc == 2 and "--dns" in r.err, lambda: repr(r))
    r = h.cli(["agent", "--dns-ttl", "soon"])
    check(r.rc == 2 and "--dns-ttl" in r.err, lambda: repr(r))
    # a bare number is seconds; sub-second TTLs are refused, not rounded to 0
    for bad in ("500ms", "1500ms"):
        r = h.cli(["agent", "--dns-ttl", bad])
        check(r.rc == 2 and "sub-second" in r.err, lambda: repr(r))
    for flag, bad in (("--dns-domain", "bad_name"), ("--dns-domain", "a..b"),
                      ("--dns-udp-answer-limit", "-1"), ("--datacenter", "a.b")):
        r = h.cli(["agent", flag, bad])
        check(r.rc == 2 and flag in r.err, lambda: repr(r))


@test("--dns-domain consul, --datacenter, --dns-ttl 5: Consul's names and whole-second TTLs")
def t_domain(h):
    port = free_port()
    a = h.agent("n1", flags=FAST + ["--dns", "127.0.0.1:%d" % port, "--dns-domain", "Consul.",
                                    "--datacenter", "east", "--dns-ttl", "5"])
    a.dns_port = port
    register(a, "w1", "web", "127.0.0.1", 8001, ["blue"])
    check(short(a, "web.service.consul") == ["127.0.0.1"], "web.service.consul")
    check(short(a, "web.service.east.consul") == ["127.0.0.1"], "the DC label")
    check(short(a, "blue.web.service.consul") == ["127.0.0.1"], "tag form")
    check(short(a, "n1.node.consul") == ["127.0.0.1"], "NODE.node")
    out = dig(a, "web.service.consul")
    check(all(r[1] == "5" for r in section(out, "ANSWER")), lambda: "TTL 5:\n" + out)
    out = dig(a, "web.service.shoal")
    check(header(out)[0] == "REFUSED", lambda: out)
    out = dig(a, "-t", "NS", "consul")
    check([r[4] for r in section(out, "ANSWER")] == ["ns.consul."] and
          ["ns.consul.", "A", "127.0.0.1"] in [r[:1] + r[3:] for r in section(out, "ADDITIONAL")],
          lambda: "NS at the apex:\n" + out)
    out = dig(a, "_tcp.service.consul")
    check(header(out)[0] == "NOERROR" and header(out)[2] == 0, lambda: "ENT:\n" + out)


if __name__ == "__main__":
    run_tests()

"""test_registry.py -- the replicated service registry with real agents and the CLI.

Checks docs/registry-interfaces.md end to end on loopback clusters of 3-5
agents (one cluster key, harness.FAST protocol settings, --sync-interval 2s):
register / deregister / heartbeat through `shoal`, replication to every
node, tombstones, TTL expiry and the owner's deregistration, --config-dir
with a broken file and SIGHUP, kill -9 and restart of an owner (nothing
acknowledged lost), graceful leave and death of an owner (--registry-reap),
rejections of bad input with nothing half-applied, `shoal watch` and
blocking queries, a late joiner and a restarted replica catching up through
anti-entropy (/v1/registry digests equal everywhere).

Timing assertions are only lower bounds measured from a moment before the
agent could have acted (slowness can only make them pass); upper bounds are
the generous deadlines of harness.wait_until.

Run: /usr/bin/python3 test_registry.py --shoal build/shoal [-k NAME] [--keep]
"""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from regwire import Injector, pb_instance  # noqa: E402
from harness import (DEADLINE, FAST, check, fail, hostport, http_request, run_tests,  # noqa: E402
                     test, wait_until)

SYNC = ["--sync-interval", "2s"]
REG = FAST + SYNC

INSTANCE_KEYS = {"id", "service", "address", "port", "tags", "meta", "status", "ttl_ms",
                 "registered_at", "last_heartbeat", "owner", "owner_status", "generation",
                 "version", "checks", "deregister_critical_after_ms"}
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# ---------------------------------------------------------------- diagnostics

def _registry_describer(a):
    """Added to every Agent.describe(): the agent's /v1/registry summary and
    digests, and /v1/instances?all=1 of the services the test focuses on."""
    if not a.running():
        return ""
    s = ""
    st, doc, raw, _ = http_request(a.http, "GET", "/v1/registry", timeout=3)
    if st != 200 or not isinstance(doc, dict):
        s += "  /v1/registry: status %s %r\n" % (st, raw[:300])
    else:
        s += "  /v1/registry: index=%s instances=%s tombstones=%s\n" % (
            doc.get("index"), doc.get("instances"), doc.get("tombstones"))
        for d in (doc.get("digests") or [])[:12]:
            s += "    digest %-8s gen=%s ver=%s hash=%s count=%s\n" % (
                d.get("owner"), d.get("generation"), d.get("version"), d.get("hash"),
                d.get("count"))
        stats = doc.get("stats")
        if stats:
            s += "    stats %s\n" % json.dumps(stats, sort_keys=True)
    for svc in getattr(a.h, "focus", ()):
        st, doc, raw, _ = http_request(a.http, "GET", "/v1/instances/%s?all=1" % svc, timeout=3)
        if st != 200 or not isinstance(doc, dict):
            s += "  /v1/instances/%s?all=1: status %s %r\n" % (svc, st, raw[:300])
            continue
        insts = doc.get("instances") or []
        s += "  /v1/instances/%s?all=1: index=%s, %d instance(s)\n" % (
            svc, doc.get("index"), len(insts))
        for i in insts[:25]:
            s += "    %-14s owner=%-4s %-8s owner_status=%-6s gen=%s ver=%s port=%s\n" % (
                i.get("id"), i.get("owner"), i.get("status"), i.get("owner_status"),
                i.get("generation"), i.get("version"), i.get("port"))
        if len(insts) > 25:
            s += "    ... %d more\n" % (len(insts) - 25)
    return s


harness.DESCRIBERS.append(_registry_describer)


# ---------------------------------------------------------------- helpers

def reg_cluster(h, n, extra=(), focus=(), per_node=None):
    """n agents n1..n with one cluster key and the registry's short settings
    (plus extra; per_node: name -> more flags), all joined through n1, all
    seeing each other alive. focus: services shown in failure reports."""
    h.focus = list(focus)
    h.key = h.keygen()
    h.flags = REG + list(extra)
    per_node = per_node or {}
    t0 = time.monotonic()
    nodes = []
    for k in range(1, n + 1):
        name = "n%d" % k
        nodes.append(h.agent(name, key=h.key, join=nodes[:1],
                             flags=h.flags + list(per_node.get(name, ()))))
    h.wait_view(nodes, {a.name: "alive" for a in nodes}, what="%d nodes to converge" % n)
    h.note("%d nodes started and converged in %.1f s" % (n, time.monotonic() - t0))
    return nodes


def late_agent(h, name, seed):
    return h.agent(name, key=h.key, join=[seed], flags=h.flags)


def shoal(h, a, *args, rc=0, timeout=30.0):
    """`shoal ARGS --http A`; checks the exit status (rc None: any)."""
    r = h.cli(list(args) + ["--http", a.http], timeout=timeout)
    if rc is not None:
        check(r.rc == rc, lambda: "%r\n  (wanted exit %d)\n%s" % (r, rc, a.describe()))
    return r


def cli_json(h, a, *args):
    r = shoal(h, a, *(list(args) + ["--format", "json"]))
    try:
        return json.loads(r.out)
    except ValueError as e:
        fail("%s: `shoal %s --format json` printed invalid JSON (%s):\n%s" % (
            a.name, " ".join(args), e, r.out[:2000]))


def cli_instances(h, a, name, *flags):
    doc = cli_json(h, a, "instances", name, *flags)
    check(isinstance(doc, list), lambda: "%s: `shoal instances %s --format json` is not an "
          "array: %r" % (a.name, name, doc))
    return doc


def api_instances(a, name, all=True):
    """(index, [instances]) from GET /v1/instances/NAME (?all=1)."""
    doc = a.get("/v1/instances/%s%s" % (name, "?all=1" if all else ""))
    check(isinstance(doc, dict) and isinstance(doc.get("instances"), list) and
          isinstance(doc.get("index"), int),
          lambda: "%s: GET /v1/instances/%s: not {index, instances}: %r" % (a.name, name, doc))
    return doc["index"], doc["instances"]


def ids(insts):
    return sorted(i["id"] for i in insts)


def by_id(insts):
    return {i["id"]: i for i in insts}


def api_register(a, body):
    doc = a.post("/v1/register", body)
    check(doc.get("registered") == body["id"] and isinstance(doc.get("version"), int),
          lambda: "%s: POST /v1/register %s: reply %r" % (a.name, body["id"], doc))
    return doc["version"]


def registry(a):
    doc = a.get("/v1/registry")
    check(isinstance(doc, dict) and isinstance(doc.get("digests"), list) and
          isinstance(doc.get("index"), int) and isinstance(doc.get("instances"), dict),
          lambda: "%s: GET /v1/registry: unexpected document %r" % (a.name, doc))
    return doc


def digests(doc):
    return [(d["owner"], d["generation"], d["version"], d["hash"], d["count"])
            for d in doc["digests"]]


def n_instances(doc):
    return sum(doc["instances"].values())


def own_version(a):
    """The owner's version counter as its own digest says (0 if none)."""
    for d in registry(a)["digests"]:
        if d["owner"] == a.name:
            return d["version"]
    return 0


def wait_instances(h, observers, name, pred, what, timeout=DEADLINE, all=True):
    """Waits until pred(observer, instances) holds on every observer."""
    def ok():
        return all_of(pred(o, api_instances(o, name, all)[1]) for o in observers)
    wait_until(ok, timeout, lambda: h.describe(observers),
               "%s (on %s)" % (what, ", ".join(o.name for o in observers)))


def all_of(it):
    for v in it:
        if not v:
            return False
    return True


def wait_ids(h, observers, name, want, what=None, timeout=DEADLINE, all=True):
    """Waits until every observer lists exactly the ids `want` for NAME."""
    want = sorted(want)
    wait_instances(h, observers, name, lambda o, insts: ids(insts) == want,
                   what or "%s instances %s%s" % (name, want, "" if all else " (passing)"),
                   timeout, all)


def ids_now(h, observers, name, want, what):
    """Checks (once, now) that every observer lists exactly `want` (all=1)."""
    want = sorted(want)
    got = {o.name: ids(api_instances(o, name)[1]) for o in observers}
    check(all(v == want for v in got.values()), lambda: "%s: want %s, got %s\n%s" % (
        what, want, got, h.describe(observers)))


def wait_converged(h, agents, what, count=None, timeout=DEADLINE):
    """Waits until every agent's /v1/registry digests are equal (and, with
    count, every agent holds that many instances). Returns the digests."""
    got = {}

    def ok():
        docs = [registry(a) for a in agents]
        ds = [digests(d) for d in docs]
        if any(d != ds[0] for d in ds):
            return False
        if count is not None and any(n_instances(d) != count for d in docs):
            return False
        got["d"] = ds[0]
        return True
    wait_until(ok, timeout, lambda: h.describe(agents), what)
    return got["d"]


def check_instance(i, where):
    check(isinstance(i, dict) and set(i) == INSTANCE_KEYS,
          lambda: "%s: instance keys %s, want %s: %r" % (
              where, sorted(i) if isinstance(i, dict) else i, sorted(INSTANCE_KEYS), i))
    check(isinstance(i["port"], int) and isinstance(i["tags"], list) and
          isinstance(i["meta"], dict) and i["status"] in ("passing", "warning", "critical") and
          isinstance(i["ttl_ms"], int) and isinstance(i["generation"], int) and
          isinstance(i["version"], int) and i["version"] >= 1 and
          isinstance(i["registered_at"], str) and ISO_RE.match(i["registered_at"]) and
          (i["last_heartbeat"] is None or ISO_RE.match(i["last_heartbeat"])) and
          i["owner_status"] in ("alive", "suspect", "dead", "left"),
          lambda: "%s: malformed instance %r" % (where, i))


def spec(i):
    """What the owner registered, as replicated (no health or times)."""
    return (i["id"], i["service"], i["address"], i["port"], sorted(i["tags"]),
            sorted(i["meta"].items()), i["ttl_ms"], i["owner"], i["generation"])


def register_args(iid, service, port, tags=(), meta=(), ttl=None, address="127.0.0.1"):
    a = ["register", "--service", service, "--id", iid, "--address", address,
         "--port", str(port)]
    for t in tags:
        a += ["--tag", t]
    for kv in meta:
        a += ["--meta", kv]
    if ttl:
        a += ["--ttl", ttl]
    return a


# ---------------------------------------------------------------- forged datagrams
# A test identity endorsed by the test's own cluster key sends registry
# gossip (Packet type 8) straight to agents: the way to deliver an old event
# late (tests/process/regwire.py).

# ---------------------------------------------------------------- (1) register

@test("register via the CLI on one node: listed on every node with every field; services counts")
def t_register(h):
    nodes = reg_cluster(h, 4, focus=["web", "api"])
    n1, n2, n3, n4 = nodes
    t0 = time.monotonic()
    shoal(h, n2, *register_args("web-1", "web", 8080, tags=["v1", "primary"],
                                meta=["version=1.2", "note=a = b", "desc=caf\u00e9 \u2615"]))
    wait_ids(h, nodes, "web", ["web-1"], "web-1 listed as passing everywhere", all=False)
    h.note("register on n2 -> listed passing on all 4 in %.2f s" % (time.monotonic() - t0))

    shoal(h, n3, *register_args("web-2", "web", 8081, tags=["v2"], address="localhost"))
    shoal(h, n4, *register_args("api-1", "api", 9000, meta=["tier=gold"]))
    wait_ids(h, nodes, "web", ["web-1", "web-2"], all=False)
    wait_ids(h, nodes, "api", ["api-1"], all=False)

    gens = {a.name: a.info()["generation"] for a in nodes}
    first = None
    for a in nodes:
        got = cli_instances(h, a, "web")
        for i in got:
            check_instance(i, "%s: shoal instances web" % a.name)
        check([(i["owner"], i["id"]) for i in got] == [("n2", "web-1"), ("n3", "web-2")],
              lambda: "%s: shoal instances web lists %r, want web-1 (n2) then web-2 (n3), "
              "sorted by (owner, id)" % (a.name, [(i["owner"], i["id"]) for i in got]))
        w1, w2 = got
        want1 = {"id": "web-1", "service": "web", "address": "127.0.0.1", "port": 8080,
                 "status": "passing", "ttl_ms": 0, "owner": "n2", "owner_status": "alive",
                 "generation": gens["n2"],
                 "meta": {"version": "1.2", "note": "a = b", "desc": "caf\u00e9 \u2615"}}
        bad = {k: (w1[k], v) for k, v in want1.items() if w1[k] != v}
        check(not bad, lambda: "%s: web-1 fields (got, want): %r" % (a.name, bad))
        check(sorted(w1["tags"]) == ["primary", "v1"],
              lambda: "%s: web-1 tags %r, want v1 and primary" % (a.name, w1["tags"]))
        check(w1["last_heartbeat"] is None,
              lambda: "%s: web-1 has no TTL, last_heartbeat %r" % (a.name, w1["last_heartbeat"]))
        check(w2["address"] == "localhost" and w2["port"] == 8081 and w2["tags"] == ["v2"] and
              w2["meta"] == {} and w2["owner"] == "n3" and w2["generation"] == gens["n3"],
              lambda: "%s: web-2 is %r" % (a.name, w2))
        # Every replica holds the same content, versions included.
        row = [(spec(i), i["version"], i["registered_at"], i["status"]) for i in got]
        if first is None:
            first = (a.name, row)
        check(row == first[1], lambda: "%s and %s differ on web:\n  %r\n  %r" % (
            first[0], a.name, first[1], row))

        # Filters.
        check(ids(cli_instances(h, a, "web", "--tag", "v1")) == ["web-1"] and
              ids(cli_instances(h, a, "web", "--tag", "v1", "--tag", "v2")) == [] and
              ids(cli_instances(h, a, "web", "--meta", "version=1.2")) == ["web-1"] and
              ids(cli_instances(h, a, "web", "--meta", "version=1.3")) == [] and
              ids(cli_instances(h, a, "nosuch")) == [],
              lambda: "%s: instance filters wrong: --tag v1 %s, --meta version=1.2 %s" % (
                  a.name, ids(cli_instances(h, a, "web", "--tag", "v1")),
                  ids(cli_instances(h, a, "web", "--meta", "version=1.2"))))

        svcs = cli_json(h, a, "services")
        want = {"services": [{"name": "api", "passing": 1, "total": 1},
                             {"name": "web", "passing": 2, "total": 2}]}
        check(svcs == want, lambda: "%s: shoal services --format json:\n  %r\n  want %r" % (
            a.name, svcs, want))
        rows = [l.split() for l in shoal(h, a, "services").out.splitlines()]
        check(["web", "2", "2"] in rows and ["api", "1", "1"] in rows,
              lambda: "%s: shoal services table lacks 'web 2 2' / 'api 1 1':\n%s" % (
                  a.name, shoal(h, a, "services").out))
        tab = shoal(h, a, "instances", "web").out
        line = [l for l in tab.splitlines() if l.split()[:1] == ["web-1"]]
        check(len(line) == 1 and "127.0.0.1:8080" in line[0] and "passing" in line[0] and
              "n2" in line[0], lambda: "%s: shoal instances web table:\n%s" % (a.name, tab))

    # The same spec again is a no-op; a changed one is a newer version everywhere.
    v = first[1][0][1]
    again = api_register(n2, {"id": "web-1", "service": "web", "address": "127.0.0.1",
                              "port": 8080, "tags": ["v1", "primary"],
                              "meta": {"version": "1.2", "note": "a = b",
                                       "desc": "caf\u00e9 \u2615"}})
    check(again == v, "registering web-1 again unchanged: version %d, was %d (not idempotent)"
          % (again, v))
    shoal(h, n2, *register_args("web-1", "web", 9090, tags=["v1"]))
    wait_instances(h, nodes, "web",
                   lambda o, insts: any(i["id"] == "web-1" and i["port"] == 9090 and
                                        i["version"] > v and i["tags"] == ["v1"] and
                                        i["meta"] == {} for i in insts),
                   "web-1 updated to port 9090, tags [v1], no meta, version > %d" % v)


# ---------------------------------------------------------------- (2) deregister

@test("deregister via the CLI: gone everywhere, the tombstone holds, re-register is newer")
def t_deregister(h):
    nodes = reg_cluster(h, 4, focus=["dr"])
    n1, n2 = nodes[0], nodes[1]
    shoal(h, n1, *register_args("d-1", "dr", 7001))
    shoal(h, n2, *register_args("d-2", "dr", 7002))
    wait_ids(h, nodes, "dr", ["d-1", "d-2"])
    v1 = by_id(api_instances(n1, "dr")[1])["d-1"]["version"]
    before = {a.name: registry(a)["tombstones"] for a in nodes}

    t0 = time.monotonic()
    shoal(h, n1, "deregister", "d-1")
    v_tomb = own_version(n1)
    check(v_tomb > v1, "n1's version %d after deregistering d-1 is not above d-1's %d" % (
        v_tomb, v1))
    wait_ids(h, nodes, "dr", ["d-2"], "d-1 gone everywhere (also with all=1)")
    h.note("deregister on n1 -> gone on all 4 in %.2f s" % (time.monotonic() - t0))
    for a in nodes:
        t = registry(a)["tombstones"]
        check(t >= before[a.name] + 1, "%s: /v1/registry tombstones %d, was %d before the "
              "deregistration" % (a.name, t, before[a.name]))
        check(cli_instances(h, a, "dr", "--all") and
              ids(cli_instances(h, a, "dr", "--all")) == ["d-2"],
              lambda: "%s: shoal instances dr --all: %r" % (a.name, cli_instances(h, a, "dr")))

    # The tombstone survives anti-entropy: every node takes part in at least
    # two more exchanges and d-1 stays gone.
    def exchanges(a):
        st = registry(a).get("stats") or {}
        check("syncs_started" in st and "syncs_served" in st,
              lambda: "%s: /v1/registry stats lack syncs_started/syncs_served: %r" % (a.name, st))
        return st["syncs_started"] + st["syncs_served"]
    base = {a.name: exchanges(a) for a in nodes}
    wait_until(lambda: all(exchanges(a) >= base[a.name] + 2 for a in nodes), DEADLINE,
               lambda: h.describe(nodes), "two more anti-entropy exchanges on every node")
    ids_now(h, nodes, "dr", ["d-2"], "d-1 still gone after anti-entropy")

    # An old event delivered late (d-1 live at its old version, and the
    # tombstone again; unsigned, as a relay cannot sign for n1) changes
    # nothing. A fresh instance of the sender's own, signed by it, rides in
    # the same datagram to show that the datagram was applied.
    d1_live = {"owner": "n1", "id": "d-1", "service": "dr", "address": "127.0.0.1",
               "port": 7001, "generation": n1.info()["generation"], "version": v1}
    d1_tomb = dict(d1_live, version=v_tomb, deleted=True)
    inj = Injector(h)
    try:
        for k, a in enumerate(nodes):
            probe = {"owner": "ghost", "id": "probe-%d" % k, "service": "drprobe",
                     "address": "127.0.0.1", "port": 1, "generation": 1, "version": 1}
            inj.gossip_raw(a, [pb_instance(d1_tomb), pb_instance(d1_live), inj.own(probe)])
        wait_instances(h, nodes, "drprobe",
                       lambda o, insts: "probe-%d" % nodes.index(o) in ids(insts),
                       "the forged datagram (old d-1, its tombstone, a probe) to be applied "
                       "(probe-K of owner ghost listed with all=1)", timeout=15)
    finally:
        inj.close()
    ids_now(h, nodes, "dr", ["d-2"], "d-1 still gone after its old event came again")

    # Not ours, or no longer there: 404 -> exit 1; nothing changes.
    r = shoal(h, n1, "deregister", "d-1", rc=1)
    r = shoal(h, n1, "deregister", "d-2", rc=1)
    st, doc, raw, _ = n1.request("POST", "/v1/deregister/d-2")
    check(st == 404 and isinstance(doc, dict) and "error" in doc,
          "POST /v1/deregister/d-2 on n1 (d-2 is n2's): status %s %r, want 404" % (st, raw))

    # Registering the same id again works, with a newer version than the tombstone.
    shoal(h, n1, *register_args("d-1", "dr", 7011))
    wait_instances(h, nodes, "dr",
                   lambda o, insts: "d-1" in by_id(insts) and by_id(insts)["d-1"]["port"] == 7011
                   and by_id(insts)["d-1"]["version"] > v_tomb,
                   "d-1 back everywhere on port 7011 with a version above the tombstone's %d"
                   % v_tomb)


# ---------------------------------------------------------------- (3) TTL

@test("TTL: starts critical, heartbeat -> passing, kept by heartbeats, expires, then deregistered")
def t_ttl(h):
    TTL = 2.0
    nodes = reg_cluster(h, 3, focus=["tick"])
    owner = nodes[1]

    shoal(h, owner, *register_args("t-1", "tick", 7100, ttl="2s"))
    wait_ids(h, nodes, "tick", ["t-1"], "t-1 present (all=1) everywhere")
    for a in nodes:
        check(cli_instances(h, a, "tick") == [],
              lambda: "%s: t-1 was never heartbeated but is passing: %r" % (
                  a.name, cli_instances(h, a, "tick")))
        got = cli_instances(h, a, "tick", "--all")
        check(len(got) == 1 and got[0]["status"] == "critical" and got[0]["ttl_ms"] == 2000,
              lambda: "%s: with --all want t-1 critical with ttl_ms 2000: %r" % (a.name, got))

    t0 = time.monotonic()
    shoal(h, owner, "heartbeat", "t-1")
    wait_ids(h, nodes, "tick", ["t-1"], "t-1 passing everywhere after a heartbeat", all=False)
    h.note("heartbeat -> passing on all 3 in %.2f s" % (time.monotonic() - t0))
    i = by_id(api_instances(owner, "tick")[1])["t-1"]
    check(i["last_heartbeat"] is not None, "owner: t-1 last_heartbeat null after a heartbeat: %r"
          % i)

    # Heartbeats every 0.5 s (a quarter of the TTL) keep it passing everywhere.
    # A sample is only judged if the last acknowledged heartbeat is less than
    # TTL - 0.5 s old when the sample's answer arrives (a stalled test is not a bug).
    # A stall of the test process between two heartbeats longer than the TTL
    # lets the owner expire t-1 for real (critical is then correct, and the
    # next heartbeat's passing takes a moment to spread): such a round is not
    # judged either.
    last_ack = time.monotonic()
    judged = 0
    end = time.monotonic() + 2.5 * TTL
    while time.monotonic() < end:
        time.sleep(0.5)
        sent = time.monotonic()
        lapsed = sent - last_ack >= TTL - 0.5
        shoal(h, owner, "heartbeat", "t-1")
        last_ack = time.monotonic()
        last_sent = sent
        for a in nodes:
            got = api_instances(a, "tick", all=False)[1]
            if not lapsed and time.monotonic() - last_ack < TTL - 0.5:
                judged += 1
                check(ids(got) == ["t-1"], lambda: "%s: t-1 not passing %.1f s after a "
                      "heartbeat (TTL 2 s)\n%s" % (a.name, time.monotonic() - last_ack,
                                                   h.describe(nodes)))
    check(judged >= 3, "only %d samples could be judged: the test process is too slow" % judged)

    # Stop: critical everywhere, never before the TTL since the last heartbeat.
    def critical_on(a):
        got = api_instances(a, "tick")[1]
        return len(got) == 1 and got[0]["status"] == "critical"
    wait_until(lambda: critical_on(owner), DEADLINE, lambda: h.describe(nodes),
               "t-1 critical on its owner after the TTL")
    gap = time.monotonic() - last_sent
    check(gap >= TTL - 0.25, "t-1 went critical %.2f s after its last heartbeat was sent; "
          "TTL is %.1f s" % (gap, TTL))
    wait_until(lambda: all(critical_on(a) for a in nodes), DEADLINE, lambda: h.describe(nodes),
               "t-1 critical everywhere after the TTL")
    for a in nodes:
        check(api_instances(a, "tick", all=False)[1] == [],
              "%s: critical t-1 still in the passing answer" % a.name)
    h.note("critical on the owner %.2f s after the last heartbeat (TTL 2 s)" % gap)

    # Two more TTLs: the owner deregisters it, everywhere.
    wait_ids(h, nodes, "tick", [], "t-1 deregistered everywhere 2 TTLs after going critical")
    gap = time.monotonic() - last_sent
    check(gap >= 3 * TTL - 0.25, "t-1 was deregistered %.2f s after its last heartbeat was "
          "sent; want 1 TTL to critical + 2 TTLs = %.1f s" % (gap, 3 * TTL))
    h.note("deregistered everywhere %.2f s after the last heartbeat (3 TTLs = 6 s)" % gap)
    shoal(h, owner, "heartbeat", "t-1", rc=1)

    # Heartbeat on a non-TTL instance: 400.
    shoal(h, owner, *register_args("t-2", "tick", 7101))
    st, doc, raw, _ = owner.request("POST", "/v1/heartbeat/t-2")
    check(st == 400 and isinstance(doc, dict) and "error" in doc,
          "heartbeat on t-2 (no TTL): status %s %r, want 400" % (st, raw))
    shoal(h, owner, "heartbeat", "t-2", rc=1)


# ---------------------------------------------------------------- (4) config dir

WEB_FILE = """# two web instances
[service]
id = cfg-web-1
service = cfgweb
address = 127.0.0.1
port = 7001
tag = v1
tag = file
meta.version = 1.2.3

[service]
id = cfg-web-2
service = cfgweb
address = 127.0.0.1
port = %d
"""
BROKEN_FILE = """# a bad port on line 6
[service]
id = cfg-broken
service = cfgweb
address = 127.0.0.1
port = 70000
"""
DB_FILE = """[service]
id = cfg-db-1
service = cfgdb
address = 127.0.0.2
port = 5432
"""
CACHE_FILE = """[service]
# a comment
id = cfg-cache-1
service = cfgcache
address = 127.0.0.3
port = 6379
tag = lru
"""
BAK_FILE = """[service]
id = cfg-bak
service = cfgweb
address = 127.0.0.1
port = 7999
"""


@test("--config-dir: good files load everywhere, a broken one is reported FILE:LINE; SIGHUP")
def t_config_dir(h):
    cdir = os.path.join(h.tmp, "conf.d")
    os.makedirs(cdir)

    def put(name, text):
        with open(os.path.join(cdir, name), "w") as f:
            f.write(text)
    put("a-web.service", WEB_FILE % 7002)
    put("b-broken.service", BROKEN_FILE)
    put("c-db.service", DB_FILE)
    put("x.service.bak", BAK_FILE)
    # Only n1 reads the directory.
    nodes = reg_cluster(h, 3, per_node={"n1": ["--config-dir", cdir]},
                        focus=["cfgweb", "cfgdb", "cfgcache"])
    n1 = nodes[0]

    def owned_by(insts, owner):
        return sorted(i["id"] for i in insts if i["owner"] == owner)

    wait_instances(h, nodes, "cfgweb",
                   lambda o, insts: owned_by(insts, "n1") == ["cfg-web-1", "cfg-web-2"],
                   "cfg-web-1 and cfg-web-2 of n1 everywhere")
    wait_instances(h, nodes, "cfgdb", lambda o, insts: owned_by(insts, "n1") == ["cfg-db-1"],
                   "cfg-db-1 of n1 everywhere")
    for a in nodes:
        got = cli_instances(h, a, "cfgweb")
        check("cfg-broken" not in ids(got) and "cfg-bak" not in ids(got),
              lambda: "%s: cfg-broken (bad port) or cfg-bak (not *.service) listed: %s" % (
                  a.name, ids(got)))
        w1 = by_id(got)["cfg-web-1"]
        check(w1["port"] == 7001 and sorted(w1["tags"]) == ["file", "v1"] and
              w1["meta"] == {"version": "1.2.3"} and w1["status"] == "passing",
              lambda: "%s: cfg-web-1 from the file is %r" % (a.name, w1))
    log = n1.log_text()
    check("b-broken.service:6" in log, lambda: "n1's log does not name b-broken.service:6 "
          "(the bad port's line):\n%s" % n1.log_tail(30))
    reports = log.count("b-broken.service:6")
    check(n1.running(), "n1 died")

    # An API registration next to the files.
    shoal(h, n1, *register_args("api-1", "cfgweb", 7500))
    wait_instances(h, nodes, "cfgweb", lambda o, insts: "api-1" in ids(insts), "api-1 everywhere")
    v_before = {i["id"]: i["version"] for i in api_instances(n1, "cfgweb")[1]}

    # Edit: c-db.service removed, d-cache.service added, cfg-web-2 moved.
    os.unlink(os.path.join(cdir, "c-db.service"))
    put("d-cache.service", CACHE_FILE)
    put("a-web.service", WEB_FILE % 7012)
    t0 = time.monotonic()
    n1.proc.send_signal(signal.SIGHUP)
    wait_instances(h, nodes, "cfgdb", lambda o, insts: insts == [],
                   "cfg-db-1 deregistered everywhere after SIGHUP (its file is gone)")
    wait_instances(h, nodes, "cfgcache", lambda o, insts: ids(insts) == ["cfg-cache-1"],
                   "cfg-cache-1 registered everywhere after SIGHUP")
    wait_instances(h, nodes, "cfgweb",
                   lambda o, insts: by_id(insts).get("cfg-web-2", {}).get("port") == 7012,
                   "cfg-web-2 on port 7012 everywhere after SIGHUP")
    h.note("SIGHUP -> changes applied on all 3 in %.2f s" % (time.monotonic() - t0))
    check(n1.running(), "n1 died on SIGHUP")
    for a in nodes:
        got = by_id(api_instances(a, "cfgweb")[1])
        check(sorted(got) == ["api-1", "cfg-web-1", "cfg-web-2"],
              lambda: "%s: cfgweb after SIGHUP: %s, want api-1, cfg-web-1, cfg-web-2" % (
                  a.name, sorted(got)))
        check(got["api-1"]["version"] == v_before["api-1"] and
              got["cfg-web-1"]["version"] == v_before["cfg-web-1"],
              lambda: "%s: SIGHUP changed untouched instances: versions api-1 %d->%d, "
              "cfg-web-1 %d->%d" % (a.name, v_before["api-1"], got["api-1"]["version"],
                                    v_before["cfg-web-1"], got["cfg-web-1"]["version"]))
        c = api_instances(a, "cfgcache")[1][0]
        check(c["address"] == "127.0.0.3" and c["port"] == 6379 and c["tags"] == ["lru"],
              lambda: "%s: cfg-cache-1 is %r" % (a.name, c))
    wait_until(lambda: n1.log_text().count("b-broken.service:6") > reports, 10,
               lambda: n1.log_tail(30), "the reload to report b-broken.service:6 again")


# ---------------------------------------------------------------- (5) kill -9 owner

@test("kill -9 and restart of an owner: no acknowledged registration lost, deregistered stays gone")
def t_owner_restart(h):
    nodes = reg_cluster(h, 3, focus=["kr", "kq"])
    n1, owner, n3 = nodes
    for k in range(1, 5):
        shoal(h, owner, *register_args("r-%d" % k, "kr", 7200 + k, tags=["t%d" % k]))
    shoal(h, owner, *register_args("q-1", "kq", 7300, ttl="1m"))
    shoal(h, owner, "deregister", "r-3")
    shoal(h, owner, *register_args("r-1", "kr", 7291, tags=["moved"]))  # an update
    wait_ids(h, nodes, "kr", ["r-1", "r-2", "r-4"])
    gen0 = owner.info()["generation"]
    # The last two acknowledged changes go straight before the crash: only
    # the data dir can bring them back.
    shoal(h, owner, *register_args("r-5", "kr", 7205, meta=["big=" + "x" * 3000]))
    shoal(h, owner, "deregister", "r-2")
    owner.kill9()
    t0 = time.monotonic()
    owner.start()
    gen1 = owner.info()["generation"]
    check(gen1 > gen0, "owner restarted with generation %d, was %d" % (gen1, gen0))

    def right(o, insts):
        mine = [i for i in insts if i["owner"] == owner.name]
        return (ids(mine) == ["r-1", "r-4", "r-5"] and
                all(i["generation"] == gen1 for i in mine))
    wait_instances(h, nodes, "kr", right,
                   "r-1, r-4, r-5 (not r-2, r-3) at the new generation %d everywhere" % gen1)
    wait_instances(h, nodes, "kq", lambda o, insts: ids(insts) == ["q-1"] and
                   insts[0]["generation"] == gen1 and insts[0]["ttl_ms"] == 60000,
                   "q-1 (TTL 1m) at the new generation everywhere")
    h.note("restart -> registry re-announced on all 3 in %.2f s" % (time.monotonic() - t0))
    for a in nodes:
        got = by_id(cli_instances(h, a, "kr", "--all"))
        check(got["r-1"]["port"] == 7291 and got["r-1"]["tags"] == ["moved"] and
              got["r-5"]["meta"] == {"big": "x" * 3000} and got["r-4"]["tags"] == ["t4"],
              lambda: "%s: restored content differs: r-1 %r, r-4 tags %r, r-5 meta size %d" % (
                  a.name, got["r-1"], got["r-4"]["tags"], len(json.dumps(got["r-5"]["meta"]))))
    # Re-registering after the restart keeps versions growing.
    vmax = max(i["version"] for i in api_instances(owner, "kr")[1])
    v = api_register(owner, {"id": "r-6", "service": "kr", "address": "127.0.0.1", "port": 7206})
    check(v > vmax, "r-6 registered after the restart with version %d, not above %d" % (v, vmax))


# ---------------------------------------------------------------- (6) leave / death

@test("leave (SIGTERM, shoal leave) removes the owner's instances; a dead owner's are reaped")
def t_leave_and_death(h):
    nodes = reg_cluster(h, 5, extra=["--registry-reap", "3s"], focus=["lv"])
    n1, n2, n3, n4, n5 = nodes
    for a, tag in ((n1, "s"), (n3, "g"), (n4, "h"), (n5, "k")):
        for k in (1, 2):
            shoal(h, a, *register_args("%s-%d" % (tag, k), "lv", 7400 + k))
    everything = ["g-1", "g-2", "h-1", "h-2", "k-1", "k-2", "s-1", "s-2"]
    wait_ids(h, nodes, "lv", everything, all=False)

    t0 = time.monotonic()
    rc = n3.term()
    check(rc == 0, "n3 exited with %s on SIGTERM" % rc)
    rest = [n1, n2, n4, n5]
    wait_ids(h, rest, "lv", ["h-1", "h-2", "k-1", "k-2", "s-1", "s-2"],
             "n3's g-1, g-2 gone everywhere (also with all=1) after SIGTERM")
    h.note("SIGTERM -> n3's instances gone on the other 4 in %.2f s" % (time.monotonic() - t0))

    t0 = time.monotonic()
    shoal(h, n4, "leave")
    rc = n4.wait_exit()
    check(rc == 0, "n4 exited with %s after shoal leave" % rc)
    rest = [n1, n2, n5]
    wait_ids(h, rest, "lv", ["k-1", "k-2", "s-1", "s-2"],
             "n4's h-1, h-2 gone everywhere after shoal leave")
    h.note("shoal leave -> n4's instances gone on the other 3 in %.2f s" % (time.monotonic() - t0))

    # kill -9: once an observer lists n5 dead, its passing answer has no k-*
    # at once; --all still shows them (owner_status dead) until the reap.
    obs = [n1, n2]
    n5.kill9()
    t_kill = time.monotonic()
    seen_dead_with_all = set()

    def dead_and_hidden():
        done = True
        for o in obs:
            if o.members().get("n5", (None,))[0] != "dead":
                done = False
                continue
            passing = ids(api_instances(o, "lv", all=False)[1])
            check(passing == ["s-1", "s-2"], lambda: "%s lists n5 dead but still serves %s as "
                  "passing\n%s" % (o.name, passing, h.describe(obs)))
            every = [i for i in api_instances(o, "lv")[1] if i["owner"] == "n5"]
            if every:
                check(ids(every) == ["k-1", "k-2"] and
                      all(i["owner_status"] == "dead" for i in every),
                      lambda: "%s: n5 is dead; --all shows %r" % (o.name, every))
                seen_dead_with_all.add(o.name)
            if o.name not in seen_dead_with_all:
                done = False  # wants to see it once (or it is already reaped: fails below)
                if not every:
                    fail("%s: n5's k-1, k-2 were reaped before they were ever seen with "
                         "owner_status dead (--registry-reap 3s)\n%s" % (o.name, h.describe(obs)))
        return done
    wait_until(dead_and_hidden, DEADLINE, lambda: h.describe(obs),
               "n1 and n2 to list n5 dead and hide k-1, k-2 from passing answers")
    h.note("kill -9 -> n5's instances hidden on n1, n2 in %.2f s" % (time.monotonic() - t_kill))
    for o in obs:
        svc = [s for s in o.get("/v1/services")["services"] if s["name"] == "lv"]
        check(svc and svc[0]["passing"] == 2, lambda: "%s: /v1/services lv %r, want passing 2 "
              "while n5 is dead" % (o.name, svc))
    wait_ids(h, obs, "lv", ["s-1", "s-2"], "n5's instances reaped (gone with all=1)")
    gap = time.monotonic() - t_kill
    check(gap >= 3.0 - 0.25, "n5's instances were reaped %.2f s after the kill; "
          "--registry-reap is 3 s" % gap)
    h.note("kill -9 -> reaped on n1, n2 in %.2f s (--registry-reap 3s)" % gap)


# ---------------------------------------------------------------- (7) rejections

def _base(**kw):
    b = {"id": "bad-1", "service": "rej", "address": "127.0.0.1", "port": 7600}
    for k, v in kw.items():
        if v is _DEL:
            b.pop(k, None)
        else:
            b[k] = v
    return b


_DEL = object()

# (label, body (bytes or object), field the error must name)
BAD_REGISTERS = [
    ("bad JSON", b'{"id": "bad-1", "service": "rej",', None),
    ("not an object", b'["bad-1"]', None),
    ("empty body", b"", None),
    ("no service", _base(service=_DEL), "service"),
    ("no id", _base(id=_DEL), "id"),
    ("no port", _base(port=_DEL), "port"),
    ("port 0", _base(port=0), "port"),
    ("port 70000", _base(port=70000), "port"),
    ("port -1", _base(port=-1), "port"),
    ("service with capitals and _", _base(service="Web_Svc"), "service"),
    ("service too long", _base(service="s" * 64), "service"),
    ("id with a space", _base(id="bad 1"), "id"),
    ("address with a space", _base(address="bad host"), "address"),
    ("33 tags", _base(tags=["t%d" % k for k in range(33)]), "tag"),
    ("tag with a space", _base(tags=["ok", "not ok"]), "tag"),
    ("tags not a list", _base(tags="v1"), "tag"),
    ("meta value of 4096 bytes", _base(meta={"k": "v" * 4096}), "meta"),
    ("65 meta pairs", _base(meta={"k%d" % k: "v" for k in range(65)}), "meta"),
    ("meta value a number", _base(meta={"k": 1}), "meta"),
    ("meta key with a space", _base(meta={"a b": "v"}), "meta"),
    ("ttl not a duration", _base(ttl="soon"), "ttl"),
    ("ttl negative", _base(ttl="-5s"), "ttl"),
    ("ttl negative ms", _base(ttl=-5), "ttl"),
    ("ttl a list", _base(ttl=[1]), "ttl"),
]


@test("API rejects bad input with 400 naming the field, nothing half-applied; 404s; CLI exit 2")
def t_rejections(h):
    nodes = reg_cluster(h, 3, focus=["rej"])
    owner = nodes[0]
    # A good instance whose id the bad updates below reuse.
    good = {"id": "good-1", "service": "rej", "address": "127.0.0.1", "port": 7601,
            "tags": ["v1"], "meta": {"k": "v"}}
    api_register(owner, good)
    wait_ids(h, nodes, "rej", ["good-1"])
    wait_converged(h, nodes, "digests equal before the bad requests")
    snap = {a.name: registry(a) for a in nodes}
    good_before = by_id(api_instances(owner, "rej")[1])["good-1"]

    cases = list(BAD_REGISTERS)
    # The same bad fields as an update of good-1: good-1 must stay as it was.
    cases += [("update: " + lbl, dict(body, id="good-1"), field)
              for lbl, body, field in BAD_REGISTERS
              if isinstance(body, dict) and "id" in body and field != "id"]
    problems = []
    for label, body, field in cases:
        st, doc, raw, _ = owner.request(
            "POST", "/v1/register", body,
            headers={"Content-Type": "application/json"} if isinstance(body, bytes) else None)
        if st != 400 or not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
            problems.append("%s: status %s body %r (want 400 {\"error\":...})" % (
                label, st, raw[:200]))
        elif field and field not in doc["error"].lower():
            problems.append("%s: error %r does not name '%s'" % (label, doc["error"], field))
    check(not problems, lambda: "POST /v1/register on %s:\n  %s" % (
        owner.name, "\n  ".join(problems)))

    # Nothing changed on the owner: same index, digests, counts; good-1 intact.
    now = registry(owner)
    for k in ("index", "instances", "tombstones", "digests"):
        check(now[k] == snap[owner.name][k], lambda: "%s: /v1/registry %s changed by rejected "
              "requests: %r -> %r" % (owner.name, k, snap[owner.name][k], now[k]))
    g = by_id(api_instances(owner, "rej")[1])
    check(list(g) == ["good-1"] and g["good-1"] == good_before,
          lambda: "%s: rej after rejected updates: %r\n  was %r" % (owner.name, g, good_before))

    for path, want in (("/v1/deregister/nope", 404), ("/v1/heartbeat/nope", 404),
                       ("/v1/heartbeat/good-1", 400)):
        st, doc, raw, _ = owner.request("POST", path)
        check(st == want and isinstance(doc, dict) and "error" in doc,
              "POST %s: status %s %r, want %d with an error" % (path, st, raw[:200], want))
    shoal(h, owner, "deregister", "nope", rc=1)
    shoal(h, owner, "heartbeat", "nope", rc=1)
    shoal(h, owner, "heartbeat", "good-1", rc=1)

    # CLI: bad input is a usage error (exit 2) naming the flag, before any request.
    for args, flag in (
            (register_args("c-1", "rej", 0), "--port"),
            (register_args("c-1", "rej", 70000), "--port"),
            (register_args("c-1", "Bad_Name", 7000), "--service"),
            (register_args("c 1", "rej", 7000), "--id"),
            (register_args("c-1", "rej", 7000, ttl="soon"), "--ttl"),
            (register_args("c-1", "rej", 7000, meta=["novalue"]), "--meta"),
            (register_args("c-1", "rej", 7000, tags=["a b"]), "--tag"),
            (register_args("c-1", "rej", 7000)[:-2], "--port"),
            (["deregister"], "ID")):
        r = shoal(h, owner, *args, rc=2)
        check(flag in r.err, lambda: "%r\n  (the message should name %s)" % (r, flag))

    # And nothing reached the replicas: a sentinel registered after the bad
    # requests arrives everywhere with the owner's version exactly one higher.
    v0 = [d for d in snap[owner.name]["digests"] if d["owner"] == owner.name][0]["version"]
    v = api_register(owner, {"id": "sentinel", "service": "rej", "address": "127.0.0.1",
                             "port": 7602})
    check(v == v0 + 1, "the first good registration after the rejected ones got version %d; "
          "the owner's version was %d (something was half-applied)" % (v, v0))
    wait_ids(h, nodes, "rej", ["good-1", "sentinel"])
    wait_converged(h, nodes, "digests equal after the sentinel", count=2)
    for a in nodes:
        d = [x for x in registry(a)["digests"] if x["owner"] == owner.name][0]
        check(d["version"] == v0 + 1 and d["count"] == 2,
              "%s: digest of %s %r, want version %d and 2 entries" % (a.name, owner.name, d,
                                                                      v0 + 1))
        check(by_id(api_instances(a, "rej")[1])["good-1"]["version"] == good_before["version"],
              "%s: good-1 changed version" % a.name)


# ---------------------------------------------------------------- (8) watch

class Watch:
    """`shoal watch NAME --format json` in the background; lines in a queue."""

    def __init__(self, h, a, name):
        self.argv = [h.shoal, "watch", name, "--format", "json", "--http", a.http]
        self.p = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, preexec_fn=harness._pdeathsig)
        self.q = queue.Queue()
        self.lines = []
        self.err = []
        threading.Thread(target=self._read, args=(self.p.stdout, self.q), daemon=True).start()
        threading.Thread(target=self._read, args=(self.p.stderr, None), daemon=True).start()

    def _read(self, f, q):
        for line in iter(f.readline, b""):
            s = line.decode(errors="replace").rstrip("\n")
            if q is not None:
                q.put(s)
            else:
                self.err.append(s)

    def describe(self):
        return "`%s`\n  stdout lines: %r\n  stderr: %r" % (
            " ".join(self.argv), self.lines[-10:], self.err[-10:])

    def wait_set(self, want, timeout=DEADLINE):
        """Reads lines until one is an array whose ids are `want`."""
        want = sorted(want)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail("shoal watch never printed the set %s within %.0f s\n%s" % (
                    want, timeout, self.describe()))
            try:
                s = self.q.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.p.poll() is not None:
                    fail("shoal watch exited with %s\n%s" % (self.p.returncode, self.describe()))
                continue
            self.lines.append(s)
            try:
                arr = json.loads(s)
            except ValueError:
                fail("shoal watch --format json printed a line that is not JSON: %r\n%s" % (
                    s, self.describe()))
            check(isinstance(arr, list), lambda: "watch line is not an array: %r" % s)
            if ids(arr) == want:
                return arr

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            fail("shoal watch did not exit within 10 s of SIGINT\n%s" % self.describe())
        return rc


def blocking_get(a, path, out):
    t0 = time.monotonic()
    try:
        st, doc, raw, _ = http_request(a.http, "GET", path, timeout=60)
        out["r"] = (st, doc, raw)
    except Exception as e:
        out["r"] = (None, None, repr(e).encode())
    out["t"] = time.monotonic() - t0


@test("shoal watch prints the set and every change made on other nodes; blocking queries")
def t_watch(h):
    nodes = reg_cluster(h, 3, focus=["wt"])
    n1, n2, n3 = nodes
    shoal(h, n2, *register_args("w-1", "wt", 7701))
    wait_ids(h, nodes, "wt", ["w-1"], all=False)

    w = Watch(h, n1, "wt")
    try:
        first = w.wait_set(["w-1"])
        check_instance(first[0], "shoal watch")
        t0 = time.monotonic()
        shoal(h, n3, *register_args("w-2", "wt", 7702))
        w.wait_set(["w-1", "w-2"])
        h.note("register on n3 -> printed by watch on n1 in %.2f s" % (time.monotonic() - t0))
        shoal(h, n2, "deregister", "w-1")
        w.wait_set(["w-2"])
    finally:
        rc = w.stop()
    check(rc == 0, "shoal watch exited with %s on SIGINT, want 0\n%s" % (rc, w.describe()))
    check(len(w.lines) >= 3, "watch printed %d lines" % len(w.lines))

    # Blocking query: waits while nothing changes, returns on a change.
    index, _ = api_instances(n1, "wt", all=False)
    out = {}
    th = threading.Thread(target=blocking_get,
                          args=(n1, "/v1/instances/wt?index=%d&wait=30s" % index, out),
                          daemon=True)
    th.start()
    th.join(1.0)
    check("r" not in out, lambda: "GET ?index=%d&wait=30s returned at once, with nothing "
          "changed: %r" % (index, out.get("r")))
    shoal(h, n3, *register_args("w-3", "wt", 7703))
    th.join(25)
    check("r" in out, lambda: "GET ?index=%d&wait=30s still blocked 25 s after w-3 was "
          "registered\n%s" % (index, h.describe(nodes)))
    st, doc, raw = out["r"]
    check(st == 200 and isinstance(doc, dict) and doc.get("index") != index and
          "w-3" in ids(doc.get("instances") or []),
          lambda: "blocking query after a change: status %s %r (index was %d)" % (
              st, raw[:500], index))
    h.note("blocking query returned %.2f s after it started (w-3 registered at ~1 s)" % out["t"])

    index = doc["index"]
    wait_ids(h, nodes, "wt", ["w-2", "w-3"], all=False)
    out = {}
    blocking_get(n1, "/v1/instances/wt?index=%d&wait=2s" % index, out)
    st, doc, raw = out["r"]
    check(st == 200 and isinstance(doc, dict) and doc.get("index") == index and
          ids(doc.get("instances") or []) == ["w-2", "w-3"],
          lambda: "blocking query with nothing changing: status %s %r (index %d)" % (
              st, raw[:500], index))
    check(out["t"] >= 2.0 - 0.3, "GET ?index=%d&wait=2s with nothing changing returned after "
          "%.2f s with the same index (should wait ~2 s)" % (index, out["t"]))


# ---------------------------------------------------------------- (9) late joiner

def _bulk_register(a, bodies, errs):
    try:
        for b in bodies:
            api_register(a, b)
    except Exception as e:  # reported by the caller
        errs.append("%s: %s" % (a.name, e))


@test("a node joining late receives ~300 instances (several-KB meta) by sync; digests equal")
def t_late_joiner(h):
    nodes = reg_cluster(h, 3, focus=[])
    bodies = {a.name: [] for a in nodes}
    big = {}
    for k in range(300):
        a = nodes[k % 3]
        b = {"id": "i-%03d" % k, "service": "svc-%d" % (k % 10), "address": "10.0.%d.%d" % (
            k // 250, k % 250), "port": 1000 + k, "tags": ["t%d" % (k % 4)],
             "meta": {"n": str(k)}}
        if k % 10 == 0:
            b["meta"] = {"n": str(k), "blob": ("%03d" % k) * 1000, "more": "m" * 3000}
            big[b["id"]] = b
        bodies[a.name].append(b)
    errs = []
    t0 = time.monotonic()
    ths = [threading.Thread(target=_bulk_register, args=(a, bodies[a.name], errs))
           for a in nodes]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    check(not errs and not any(t.is_alive() for t in ths), "bulk registration: %s" % errs)
    gone = ["i-%03d" % k for k in (1, 2, 3, 50, 51)]  # i-050 had a big meta
    for iid in gone:
        big.pop(iid, None)
    for iid in gone:
        owner = nodes[int(iid[2:]) % 3]
        owner.post("/v1/deregister/" + iid)
    h.note("300 registrations + 5 deregistrations through the API in %.1f s" % (
        time.monotonic() - t0))
    d = wait_converged(h, nodes, "295 instances and equal digests on n1..n3", count=295)
    check(sorted(x[0] for x in d) == ["n1", "n2", "n3"], "digest owners %r" % (d,))

    t0 = time.monotonic()
    n4 = late_agent(h, "n4", nodes[0])
    allnodes = nodes + [n4]
    wait_converged(h, allnodes, "the late joiner n4 to hold all 295 instances, digests equal",
                   count=295)
    h.note("late joiner received 295 instances in %.2f s after start" % (time.monotonic() - t0))
    stats = registry(n4).get("stats") or {}
    check(stats.get("sync_events_received", 0) > 0,
          "n4 converged but its stats show no events received by sync: %r" % stats)
    check(n4.get("/v1/services") == nodes[0].get("/v1/services"),
          "/v1/services differ between n4 and n1")
    for iid, b in big.items():
        got = by_id(api_instances(n4, b["service"])[1]).get(iid)
        check(got is not None and got["meta"] == b["meta"] and got["port"] == b["port"] and
              got["address"] == b["address"],
              lambda: "n4: %s (meta of %d bytes) arrived as %s" % (
                  iid, len(json.dumps(b["meta"])), "missing" if got is None else
                  "meta value sizes %r, port %r, address %r" % (
                      {k: len(v) for k, v in got["meta"].items()}, got["port"], got["address"])))
    for iid in gone:
        svc = "svc-%d" % (int(iid[2:]) % 10)
        check(iid not in by_id(api_instances(n4, svc)[1]), "n4 lists deregistered %s" % iid)


# ---------------------------------------------------------------- (10) replica restart

@test("kill -9 of a non-owner, changes while it is down, restart: it catches up")
def t_replica_catchup(h):
    nodes = reg_cluster(h, 4, focus=["cu"])
    n1, n2, n3, n4 = nodes
    for k in range(10):
        api_register(n1 if k % 2 else n2, {"id": "c-%d" % k, "service": "cu",
                                           "address": "127.0.0.1", "port": 7800 + k})
    wait_ids(h, nodes, "cu", ["c-%d" % k for k in range(10)])
    n4.kill9()
    for k in range(10, 30):
        api_register(n1 if k % 2 else n2, {"id": "c-%d" % k, "service": "cu",
                                           "address": "127.0.0.1", "port": 7800 + k})
    for k in (2, 3, 12, 13):
        (n1 if k % 2 else n2).post("/v1/deregister/c-%d" % k)
    for k in (4, 5):
        api_register(n1 if k % 2 else n2, {"id": "c-%d" % k, "service": "cu",
                                           "address": "127.0.0.1", "port": 8800 + k})
    want = ["c-%d" % k for k in range(30) if k not in (2, 3, 12, 13)]
    wait_ids(h, [n1, n2, n3], "cu", want)
    t0 = time.monotonic()
    n4.start()
    wait_converged(h, nodes, "restarted n4 to catch up: 26 instances, digests equal", count=26)
    h.note("restarted replica caught up in %.2f s" % (time.monotonic() - t0))
    got = by_id(api_instances(n4, "cu")[1])
    check(sorted(got) == sorted(want) and got["c-4"]["port"] == 8804 and
          got["c-5"]["port"] == 8805,
          lambda: "n4 after catching up: %s, c-4 port %s" % (sorted(got),
                                                            got.get("c-4", {}).get("port")))
    check([spec(i) + (i["version"],) for i in api_instances(n4, "cu")[1]] ==
          [spec(i) + (i["version"],) for i in api_instances(n1, "cu")[1]],
          "n4 and n1 list cu differently")


if __name__ == "__main__":
    run_tests()

"""test_regauth.py -- a node can speak only for itself, in the registry.

A test peer with a valid (endorsed) identity, "ghost", tries the registry
attacks of issue 8 against real agents: a tombstone at version 2^62 for
another owner's instance, an instance in another owner's name, a generation
of 2^64-1 for another owner, and 400,000 instances in another owner's name
over one TCP connection. Each is refused with a named reason, counted in
/v1/info and /metrics; no node's digests change; the victim's later
registrations arrive everywhere. Then scopes (a node allowed `web*` gets
403 for `payments`, and an event for `payments` signed with its own key is
refused by the others) and the per-owner caps (a valid owner's excess is
refused and counted, nothing held is disturbed).

Until certificates carry scopes, --test-scope / --test-peer-scope give them
(docs/registry-authority.md).

Run: /usr/bin/python3 test_regauth.py --shoal build/shoal [-k NAME] [--keep]
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ed25519  # noqa: E402
from harness import FAST, check, http_request, run_tests, test, wait_until  # noqa: E402
from regwire import (Injector, canonical, pb_bytes, pb_instance, pb_uint,  # noqa: E402
                     read_key_seed)

REG = FAST + ["--sync-interval", "2s"]
SYNC_DATA = 11


def cluster(h, n, per_node=None):
    h.key = h.keygen()
    per_node = per_node or {}
    nodes = []
    for k in range(1, n + 1):
        name = "n%d" % k
        nodes.append(h.agent(name, key=h.key, join=nodes[:1],
                             flags=REG + list(per_node.get(name, ()))))
    h.wait_view(nodes, {a.name: "alive" for a in nodes}, what="%d nodes to converge" % n)
    return nodes


def register(a, body):
    doc = a.post("/v1/register", body)
    check(doc.get("registered") == body["id"], lambda: "%s: register %r: %r" % (
        a.name, body["id"], doc))
    return doc["version"]


def instances(a, service):
    return a.get("/v1/instances/%s?all=1" % service)["instances"]


def digests(a, owners):
    """owner -> (generation, version, hash, count) from /v1/registry."""
    return {d["owner"]: (d["generation"], d["version"], d["hash"], d["count"])
            for d in a.get("/v1/registry")["digests"] if d["owner"] in owners}


def refused(a):
    return dict(a.info()["registry"]["refused"])


def metric(a, name, label):
    st, _, raw, _ = http_request(a.http, "GET", "/metrics")
    check(st == 200, "%s: GET /metrics: %s" % (a.name, st))
    text = raw.decode() if isinstance(raw, bytes) else raw
    for line in text.splitlines():
        if line.startswith('%s{reason="%s"}' % (name, label)):
            return int(float(line.split()[-1]))
    return None


def rss_kib(a):
    with open("/proc/%d/status" % a.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_everywhere(h, nodes, service, pred, what):
    wait_until(lambda: all(pred(instances(a, service)) for a in nodes), 30,
               lambda: h.describe(nodes), what)


def node_seed(a):
    """The node's own Ed25519 seed, from its data dir (as a thief would)."""
    seed = read_key_seed(os.path.join(a.data_dir, "identity.key"))
    check(seed is not None, "cannot read %s/identity.key" % a.data_dir)
    return seed


@test("registry attacks from a valid identity are refused by reason; nothing changes; "
      "the victim's later registrations arrive")
def t_attacks(h):
    nodes = cluster(h, 3)
    n1, n2, n3 = nodes
    v1 = register(n2, {"id": "v-1", "service": "vic", "address": "127.0.0.1", "port": 7001})
    register(n3, {"id": "w-1", "service": "vic", "address": "127.0.0.1", "port": 7002})
    wait_everywhere(h, nodes, "vic", lambda l: sorted(i["id"] for i in l) == ["v-1", "w-1"],
                    "v-1 and w-1 everywhere")
    owners = ("n1", "n2", "n3")
    wait_until(lambda: all(digests(a, owners) == digests(n1, owners) for a in nodes), 30,
               lambda: h.describe(nodes), "equal digests everywhere")
    before = {a.name: digests(a, owners) for a in nodes}
    ref0 = {a.name: refused(a) for a in nodes}
    gen2 = n2.info()["generation"]
    inj = Injector(h)
    try:
        for a in nodes:
            inj.hello(a)
        tomb = {"owner": "n2", "id": "v-1", "generation": gen2, "version": 2**62, "deleted": True}
        fake = {"owner": "n2", "id": "fake-1", "service": "vic", "address": "10.9.9.9",
                "port": 9, "generation": gen2, "version": v1 + 1}
        wipe = {"owner": "n2", "id": "v-1", "service": "vic", "address": "10.9.9.9",
                "port": 9, "generation": 2**64 - 1, "version": 1}
        for a in nodes:
            # Signed by ghost's key: forgeries. One per datagram, so each
            # is verified (a forgery ends its message).
            for ev in (tomb, fake, wipe):
                inj.gossip_raw(a, [pb_instance(ev, inj.sign(ev))])
            # Unsigned: refused before any signature work.
            inj.gossip_raw(a, [pb_instance(tomb), pb_instance(fake), pb_instance(wipe)])

        # 400,000 instances in n2's name over one TCP connection to n1.
        conn = inj.stream(n1)
        rss0 = rss_kib(n1)
        total, per_frame, t0 = 400000, 25000, time.monotonic()
        head = pb_bytes(1, "n2")
        tail = (pb_bytes(3, "vic") + pb_bytes(4, "10.9.9.9") + pb_uint(5, 9) + pb_uint(10, 1) +
                pb_uint(12, gen2) + pb_uint(13, 1))
        sent = 0
        for f in range(total // per_frame):
            # Even frames: a (wrong) signature on every event; odd: none.
            sig = pb_bytes(17, bytes(64)) if f % 2 == 0 else b""
            entries = []
            for k in range(per_frame):
                entries.append(head + pb_bytes(2, "x-%07d" % sent) + tail + sig)
                sent += 1
            inj.frame(conn, SYNC_DATA, entries, last=(sent == total))
        conn.close()
        h.note("ghost sent %d instances in n2's name to n1 over one connection in %.1f s"
               % (sent, time.monotonic() - t0))
    finally:
        inj.close()

    forged = ("bad_signature", "unsigned", "after_forgery")

    def n1_done():
        r = refused(n1)
        return sum(r[k] - ref0["n1"][k] for k in forged) >= total + 6
    wait_until(n1_done, 60, lambda: "n1 refused %r (before %r)" % (refused(n1), ref0["n1"]),
               "n1 to refuse all %d + 6 forged events" % total)
    h.note("n1 RSS %d -> %d KiB after the 400,000 forged instances" % (rss0, rss_kib(n1)))
    for a in nodes:
        r = refused(a)
        d = {k: r[k] - ref0[a.name][k] for k in r}
        # n2 never takes events in its own name from others (counted stale).
        check(a is n2 or (d["bad_signature"] >= 3 and d["unsigned"] >= 3),
              lambda: "%s: refusals %r, want >= 3 bad_signature and >= 3 unsigned" % (a.name, d))
        check(metric(a, "shoal_registry_events_refused_total", "bad_signature") ==
              r["bad_signature"], lambda: "%s: /metrics disagrees with /v1/info on "
              "bad_signature (%r)" % (a.name, r))
        check(digests(a, owners) == before[a.name],
              lambda: "%s: digests changed:\n  before %r\n  after  %r" % (
                  a.name, before[a.name], digests(a, owners)))
        got = sorted((i["owner"], i["id"], i["address"]) for i in instances(a, "vic"))
        check(got == [("n2", "v-1", "127.0.0.1"), ("n3", "w-1", "127.0.0.1")],
              lambda: "%s: vic is %r after the attacks" % (a.name, got))
    d1 = {k: refused(n1)[k] - ref0["n1"][k] for k in forged}
    h.note("n1 refusals: %r" % d1)
    check(d1["after_forgery"] > 0, "n1: no event refused as after_forgery: the 400,000 were "
          "each verified (%r)" % d1)

    # The victim's later registrations arrive, and members are untouched.
    v2 = register(n2, {"id": "v-1", "service": "vic", "address": "127.0.0.1", "port": 7011})
    register(n2, {"id": "v-2", "service": "vic", "address": "127.0.0.1", "port": 7012})
    wait_everywhere(h, nodes, "vic", lambda l: sorted((i["id"], i["port"]) for i in l) == [
        ("v-1", 7011), ("v-2", 7012), ("w-1", 7002)] and all(
            i["version"] >= v2 for i in l if i["owner"] == "n2"),
        "n2's later registrations (v-1 on 7011, v-2) everywhere")
    h.wait_view(nodes, {a.name: "alive" for a in nodes}, what="members unchanged")


@test("a node allowed web* gets 403 for payments; its payments event is refused by the others")
def t_scope(h):
    peer = ["--test-peer-scope", "n1=web*"]
    nodes = cluster(h, 3, {"n1": ["--test-scope", "web*"], "n2": peer, "n3": peer})
    n1, n2, n3 = nodes
    st, doc, raw, _ = n1.request("POST", "/v1/register", {
        "id": "pay-1", "service": "payments", "address": "127.0.0.1", "port": 1})
    check(st == 403 and isinstance(doc, dict) and "payments" in doc.get("error", "") and
          "web*" in doc["error"], "n1 register payments: %s %r, want 403 naming payments "
          "and the scope web*" % (st, raw))
    check(n1.get("/v1/instances/payments?all=1")["instances"] == [],
          "n1 holds payments after refusing it")
    register(n1, {"id": "web-1", "service": "web", "address": "127.0.0.1", "port": 80})
    wait_everywhere(h, nodes, "web", lambda l: [i["id"] for i in l] == ["web-1"],
                    "web-1 everywhere")

    # n1's own key signs a payments event (its key stolen, or n1 modified):
    # relayed by ghost, the others refuse it for n1's scope. The same key's
    # event for web-9 is accepted: the signature path works.
    seed, gen = node_seed(n1), n1.info()["generation"]
    pay = {"owner": "n1", "id": "pay-2", "service": "payments", "address": "127.0.0.1",
           "port": 2, "generation": gen, "version": 10**6}
    web = dict(pay, id="web-9", service="web-x")
    ref0 = {a.name: refused(a) for a in nodes}
    inj = Injector(h)
    try:
        for a in (n2, n3):
            inj.hello(a)
            inj.gossip_raw(a, [pb_instance(pay, ed25519.sign(seed, canonical(pay)))])
            inj.gossip_raw(a, [pb_instance(web, ed25519.sign(seed, canonical(web)))])
    finally:
        inj.close()
    wait_everywhere(h, [n2, n3], "web-x", lambda l: [i["id"] for i in l] == ["web-9"],
                    "web-9 (signed by n1's key, in scope) on n2 and n3")
    for a in (n2, n3):
        check(a.get("/v1/instances/payments?all=1")["instances"] == [],
              "%s holds n1's payments event" % a.name)
        d = refused(a)["out_of_scope"] - ref0[a.name]["out_of_scope"]
        check(d >= 1, "%s: out_of_scope refusals +%d, want >= 1" % (a.name, d))
        check(metric(a, "shoal_registry_events_refused_total", "out_of_scope") ==
              refused(a)["out_of_scope"], "%s: /metrics out_of_scope disagrees" % a.name)


@test("caps: a valid owner's excess is refused (413 on the owner, counted on replicas); "
      "nothing held is disturbed")
def t_caps(h):
    cap = ["--max-owner-instances", "20"]
    nodes = cluster(h, 3, {"n1": cap, "n2": cap, "n3": cap})
    n1, n2, n3 = nodes
    for k in range(20):
        register(n1, {"id": "c-%d" % k, "service": "cap", "address": "127.0.0.1",
                      "port": 1000 + k})
    st, doc, raw, _ = n1.request("POST", "/v1/register", {
        "id": "c-20", "service": "cap", "address": "127.0.0.1", "port": 2000})
    check(st == 413 and "max-owner-instances" in (doc or {}).get("error", ""),
          "21st registration on n1: %s %r, want 413 naming --max-owner-instances" % (st, raw))
    # Re-registering a held id is not a new entry: allowed at the cap.
    register(n1, {"id": "c-0", "service": "cap", "address": "127.0.0.1", "port": 999})
    wait_everywhere(h, nodes, "cap", lambda l: len(l) == 20 and any(
        i["id"] == "c-0" and i["port"] == 999 for i in l), "n1's 20 everywhere")

    # ghost (a valid identity) sends 60 of its own, signed, over one
    # connection: n2 keeps its first 20 and refuses 40.
    ref0 = refused(n2)
    inj = Injector(h)
    evs = [{"owner": "ghost", "id": "g-%02d" % k, "service": "capg", "address": "127.0.0.1",
            "port": 3000 + k, "generation": 1, "version": k + 1} for k in range(60)]
    try:
        conn = inj.stream(n2)
        inj.frame(conn, SYNC_DATA, [inj.own(e) for e in evs])
        wait_until(lambda: len(instances(n2, "capg")) == 20 and
                   refused(n2)["owner_instances"] - ref0["owner_instances"] == 40, 30,
                   lambda: "n2 capg %d, refused %r" % (len(instances(n2, "capg")), refused(n2)),
                   "n2 to hold 20 of ghost's and refuse 40")
        # An update of a held one still fits.
        upd = dict(evs[0], port=4000, version=100)
        inj.frame(conn, SYNC_DATA, [inj.own(upd)])
        wait_until(lambda: any(i["id"] == "g-00" and i["port"] == 4000
                               for i in instances(n2, "capg")), 30, None,
                   "n2 to apply ghost's update of g-00")
        conn.close()
    finally:
        inj.close()
    check(sorted(i["id"] for i in instances(n2, "capg")) == ["g-%02d" % k for k in range(20)],
          "n2 holds other ghost instances than the first 20")
    check(len(instances(n2, "cap")) == 20, "n2's copy of n1's instances changed")
    check(metric(n2, "shoal_registry_events_refused_total", "owner_instances") ==
          refused(n2)["owner_instances"], "n2: /metrics owner_instances disagrees")


if __name__ == "__main__":
    run_tests()

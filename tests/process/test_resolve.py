"""test_resolve.py -- load balancing through the agent: GET /v1/resolve,
POST /v1/release and `shoal resolve`, with real agents.

Two agents with one cluster key: instances are registered on n1 and
resolved on n2 (its own replica), so every pick also shows replication.
web-1 and web-3 have weight 1, web-2 meta weight=3, and a TTL instance
web-ttl never gets a heartbeat (critical), so it must never be picked.

Round-robin is deterministic per key: any 5 consecutive picks of one key
are one whole cycle (1 + 3 + 1). Random outcomes are only asserted where a
correct agent fails with negligible probability (computed at each check).

Run: /usr/bin/python3 test_resolve.py --shoal build/shoal [-k NAME] [--keep]
"""

import collections
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, http_request, run_tests, test, wait_until  # noqa: E402

REG = FAST + ["--sync-interval", "2s"]
WEIGHTS = {"web-1": 1, "web-2": 3, "web-3": 1}


def shoal(h, a, *args, rc=0):
    r = h.cli(list(args) + ["--http", a.http])
    if rc is not None:
        check(r.rc == rc, lambda: "%r\n  (wanted exit %d)\n%s" % (r, rc, a.describe()))
    return r


def setup(h, ttl=True):
    """n1, n2 joined; web-1..3 (+ critical web-ttl) registered on n1 and
    passing on n2. Returns (n1, n2)."""
    key = h.keygen()
    n1 = h.agent("n1", key=key, flags=REG)
    n2 = h.agent("n2", key=key, join=[n1], flags=REG)
    h.wait_view([n1, n2], {"n1": "alive", "n2": "alive"})
    for i, (iid, w) in enumerate(sorted(WEIGHTS.items())):
        args = ["register", "--service", "web", "--id", iid, "--address", "127.0.0.1",
                "--port", str(8001 + i), "--tag", "blue" if iid != "web-3" else "green"]
        if w != 1:
            args += ["--meta", "weight=%d" % w]
        shoal(h, n1, *args)
    if ttl:
        shoal(h, n1, "register", "--service", "web", "--id", "web-ttl", "--address",
              "127.0.0.1", "--port", "8009", "--ttl", "1m")

    def replicated():
        st, doc, _, _ = http_request(n2.http, "GET", "/v1/instances/web?all=1")
        if st != 200:
            return False
        ids = {i["id"]: i["status"] for i in doc["instances"]}
        want = {k: "passing" for k in WEIGHTS}
        if ttl:
            want["web-ttl"] = "critical"
        return ids == want
    wait_until(replicated, describe=n2.describe, what="web-* replicated to n2")
    return n1, n2


def resolve(a, query="", status=200):
    st, doc, raw, _ = http_request(a.http, "GET", "/v1/resolve/web" + query)
    check(st == status, lambda: "GET /v1/resolve/web%s: %s %r (wanted %d)" % (query, st, raw,
                                                                              status))
    return doc


def cli_pick(h, a, *args):
    r = shoal(h, a, "resolve", "web", "--format", "json", *args)
    doc = json.loads(r.out)
    return doc["instance"]["id"]


@test("round-robin via CLI and API: every 5 picks are one weighted cycle (1+3+1), "
      "the critical TTL instance is never picked")
def t_round_robin(h):
    n1, n2 = setup(h)
    # CLI: the key is the caller's address, 127.0.0.1, shared by all runs
    picks = [cli_pick(h, n2) for _ in range(10)]
    for k in range(0, 10, 5):
        c = collections.Counter(picks[k:k + 5])
        check(c == WEIGHTS, lambda: "CLI picks %r: cycle %r is not %r" % (picks, c, WEIGHTS))
    # the table form: ADDRESS:PORT first
    r = shoal(h, n2, "resolve", "web")
    lines = r.out.strip().splitlines()
    check(len(lines) == 2 and lines[0].split()[:3] == ["ADDRESS:PORT", "ID", "OWNER"] and
          lines[1].split()[0].startswith("127.0.0.1:800") and lines[1].split()[2] == "n1" and
          lines[1].split()[3] == "round-robin" and lines[1].split()[4] == "3",
          lambda: "table output: %r" % r.out)
    # API with an explicit key: its own counter, from any starting point
    for key in ("a", "b"):
        ids = [resolve(n2, "?key=" + key)["instance"]["id"] for _ in range(15)]
        for k in range(0, 15, 5):
            c = collections.Counter(ids[k:k + 5])
            check(c == WEIGHTS, lambda: "key %s picks %r not weighted cycles" % (key, ids))
        doc = resolve(n2, "?key=%s&strategy=round-robin" % key)
        check(doc["strategy"] == "round-robin" and doc["candidates"] == 3 and doc["key"] == key,
              lambda: "resolve answer %r" % doc)
    # tag filter: only web-3 is green
    check(all(cli_pick(h, n2, "--tag", "green") == "web-3" for _ in range(3)),
          lambda: "--tag green picked another instance")
    check(all(resolve(n2, "?meta=weight:3")["instance"]["id"] == "web-2" for _ in range(3)),
          lambda: "meta=weight:3 picked another instance")
    # every strategy, many picks: web-ttl (critical) never comes back
    for s in ("round-robin", "random", "least-conn", "ip-hash"):
        for k in range(20):
            doc = resolve(n2, "?strategy=%s&client=10.0.0.%d&key=t" % (s, k))
            check(doc["instance"]["id"] in WEIGHTS and doc["instance"]["status"] == "passing",
                  lambda: "%s picked %r" % (s, doc["instance"]))


@test("ip-hash: one client always gets the same instance, other clients get others; "
      "CLI --client-ip and API client= agree")
def t_ip_hash(h):
    n1, n2 = setup(h, ttl=False)
    first = resolve(n2, "?strategy=ip-hash&client=192.0.2.1")["instance"]["id"]
    for _ in range(10):
        got = resolve(n2, "?strategy=ip-hash&client=192.0.2.1")
        check(got["instance"]["id"] == first and got["client"] == "192.0.2.1",
              lambda: "192.0.2.1 moved from %s to %r" % (first, got))
    for _ in range(3):
        got = cli_pick(h, n2, "--strategy", "ip-hash", "--client-ip", "192.0.2.1")
        check(got == first, lambda: "CLI --client-ip 192.0.2.1 gave %s, API %s" % (got, first))
    # 200 other clients: a correct ip-hash sends each elsewhere with
    # probability >= 2/5 (web-2 takes 3/5), so all landing on `first` has
    # p <= 0.6^200 ~ 1e-44.
    others = collections.Counter(
        resolve(n2, "?strategy=ip-hash&client=198.51.100.%d" % k)["instance"]["id"]
        for k in range(200))
    check(len(others) >= 2 and set(others) <= set(WEIGHTS),
          lambda: "200 clients all on %r" % others)
    # weight 3 draws the most clients: with 200 clients at probabilities
    # 3/5, 1/5, 1/5, P(web-2 count <= either other's) = 2.1e-11 (exact
    # multinomial sum); an unweighted hash fails this about 2/3 of the time.
    check(others["web-2"] > max(others["web-1"], others["web-3"]),
          lambda: "ip-hash ignores weights: %r" % others)


@test("no passing instance: CLI exit 1 with the message, API 503; unknown service too; "
      "bad strategy 400 / exit 2")
def t_none_passing(h):
    key = h.keygen()
    n1 = h.agent("n1", key=key, flags=REG)
    shoal(h, n1, "register", "--service", "web", "--id", "web-ttl", "--address", "127.0.0.1",
          "--port", "8009", "--ttl", "1m")
    for name in ("web", "nothing"):
        r = shoal(h, n1, "resolve", name, rc=1)
        check("no passing instance of %s" % name in r.err and not r.out,
              lambda: "resolve %s: %r" % (name, r))
        st, doc, raw, _ = http_request(n1.http, "GET", "/v1/resolve/" + name)
        check(st == 503 and doc == {"error": "no passing instance of %s" % name},
              lambda: "GET /v1/resolve/%s: %s %r" % (name, st, raw))
    st, doc, raw, _ = http_request(n1.http, "GET", "/v1/resolve/web?strategy=fastest")
    check(st == 400 and "unknown strategy" in doc["error"], lambda: "%s %r" % (st, raw))
    st, doc, raw, _ = http_request(n1.http, "GET", "/v1/resolve/web?index=3")
    check(st == 400 and "unknown query parameter" in doc["error"], lambda: "%s %r" % (st, raw))
    r = shoal(h, n1, "resolve", "web", "--strategy", "fastest", rc=2)
    check("bad --strategy" in r.err, lambda: repr(r))
    # once it heartbeats it passes and is picked
    shoal(h, n1, "heartbeat", "web-ttl")
    check(cli_pick(h, n1) == "web-ttl", lambda: "web-ttl not picked once passing")


@test("least-conn through the API: held picks spread by weight, released ones are refilled")
def t_least_conn(h):
    n1, n2 = setup(h)
    held = collections.Counter()
    for k in range(10):
        doc = resolve(n2, "?strategy=least-conn&key=lc")
        iid = doc["instance"]["id"]
        held[iid] += 1
        check(doc["active"] == held[iid], lambda: "active %r, held %r" % (doc, held))
    # each pick takes the smallest (active+1)/weight: after 10 held picks
    # every instance is within its weight of 10*w/5 (2, 6, 2)
    for iid, w in WEIGHTS.items():
        check(abs(held[iid] - 10 * w / 5) <= w, lambda: "held after 10 picks: %r" % held)
    # another key has its own counts
    check(resolve(n2, "?strategy=least-conn&key=other")["active"] == 1,
          lambda: "key 'other' sees the leases of 'lc'")
    # release every lease of web-2: the next 5 picks must all be web-2, since
    # (a2+1)/3 < 2 <= (a+1)/1 of web-1 and web-3 (each holds >= 1) for a2 <= 4
    n = held["web-2"]
    for k in range(n):
        st, doc, raw, _ = http_request(n2.http, "POST", "/v1/release/web/web-2?key=lc")
        check(st == 200 and doc == {"released": True, "active": n - k - 1},
              lambda: "release %d: %s %r" % (k, st, raw))
    st, doc, raw, _ = http_request(n2.http, "POST", "/v1/release/web/web-2?key=lc")
    check(st == 404, lambda: "release with no lease left: %s %r" % (st, raw))
    st, doc, raw, _ = http_request(n2.http, "POST", "/v1/release/web/web-1?key=nobody")
    check(st == 404, lambda: "release for an unknown key: %s %r" % (st, raw))
    st, doc, raw, _ = http_request(n2.http, "POST", "/v1/release/web/web-1?key=lc&owner=n9")
    check(st == 404, lambda: "release naming another owner: %s %r" % (st, raw))
    for k in range(5):
        doc = resolve(n2, "?strategy=least-conn&key=lc")
        check(doc["instance"]["id"] == "web-2" and doc["active"] == k + 1,
              lambda: "pick %d after releasing web-2: %r" % (k, doc))
    st, doc, raw, _ = http_request(n2.http, "POST", "/v1/release/web/web-1?key=lc&owner=n1")
    check(st == 200 and doc["active"] == held["web-1"] - 1, lambda: "%s %r" % (st, raw))


if __name__ == "__main__":
    run_tests()

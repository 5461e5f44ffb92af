"""test_consul.py -- the Consul-compatible API with Debian's python3-consul.

Real agents on loopback and the unmodified `consul` module (python3-consul
0.7.1) as the client: catalog.services(), agent.service.register() with
Check.http against a real backend and with Check.ttl, agent.check.ttl_pass
/ ttl_fail, health.service(passing=True), a blocking health.service(index=)
that returns on a change (and waits out `wait` when nothing changes), an
instance registered on one agent seen through another, the change index
kept across a restart with a client's blocking loop carrying on, the
headers, errors and refusals (other dc, bad filter, script checks), and
GET /v1/sd/prometheus (http_sd format, service and tag filters).

Run: /usr/bin/python3 test_consul.py --shoal build/shoal [-k NAME] [--keep]
"""

import http.server
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, fail, free_port, run_tests, test, wait_until  # noqa: E402

try:
    import consul  # Debian's python3-consul, under /usr/bin/python3
except ImportError:
    consul = None


def client(a):
    if consul is None:
        fail("python3-consul is not importable: run with /usr/bin/python3 "
             "(apt-get install python3-consul)")
    host, port = a.http.rsplit(":", 1)
    return consul.Consul(host=host, port=int(port))


class Backend:
    """A real HTTP server answering GET / with a settable status."""

    def __init__(self):
        self.status = 200
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def passing_ids(c, name, **kw):
    _, entries = c.health.service(name, passing=True, **kw)
    return sorted(e["Service"]["ID"] for e in entries)


@test("python-consul registers with an HTTP check; passing only once the backend answers")
def t_register_http(h):
    a = h.agent("n1")
    c = client(a)
    be = Backend()
    try:
        be.status = 500
        ok = c.agent.service.register("web", service_id="web-1", address="127.0.0.1",
                                      port=be.port, tags=["v1", "primary"],
                                      check=consul.Check.http("http://127.0.0.1:%d/" % be.port,
                                                              "200ms", timeout="100ms"))
        check(ok is True, "register returned %r" % ok)
        idx, svcs = c.catalog.services()
        check(svcs == {"web": ["v1", "primary"]}, "catalog.services() = %r" % (svcs,))
        check(int(idx) > 0, "X-Consul-Index %r" % idx)
        # failing backend: listed by health, not as passing
        _, all_entries = c.health.service("web")
        check(len(all_entries) == 1, "health.service = %r" % all_entries)
        e = all_entries[0]
        check(e["Node"]["Node"] == "n1" and e["Service"]["Port"] == be.port and
              e["Service"]["Tags"] == ["v1", "primary"], "entry %r" % e)
        check([x["CheckID"] for x in e["Checks"]] == ["serfHealth", "service:web-1"],
              "checks %r" % e["Checks"])
        check(passing_ids(c, "web") == [], "a failing backend is passing")
        be.status = 200
        wait_until(lambda: passing_ids(c, "web") == ["web-1"], 15,
                   what="web-1 passing once the backend answers 200")
        check(passing_ids(c, "web", tag="v1") == ["web-1"], "tag=v1")
        check(passing_ids(c, "web", tag="nope") == [], "tag=nope")
        checks = c.agent.checks()
        check(checks["service:web-1"]["Status"] == "passing" and
              checks["service:web-1"]["Type"] == "http", "agent.checks() %r" % checks)
        svc = c.agent.services()
        check(svc["web-1"]["Service"] == "web" and svc["web-1"]["Address"] == "127.0.0.1",
              "agent.services() %r" % svc)
        check(c.agent.service.deregister("web-1") is True, "deregister")
        _, svcs = c.catalog.services()
        check(svcs == {}, "after deregister: %r" % (svcs,))
    finally:
        be.close()


@test("TTL check: ttl_pass makes it passing, ttl_fail critical, ttl_warn warning")
def t_ttl(h):
    a = h.agent("n1")
    c = client(a)
    check(c.agent.service.register("api", service_id="api-1", address="127.0.0.1", port=9090,
                                   check=consul.Check.ttl("30s")), "register")
    check(passing_ids(c, "api") == [], "a new TTL check starts critical")
    check(c.agent.check.ttl_pass("service:api-1") is True, "ttl_pass")
    check(passing_ids(c, "api") == ["api-1"], "after ttl_pass")
    check(c.agent.check.ttl_warn("service:api-1") is True, "ttl_warn")
    _, e = c.health.service("api")
    check(e[0]["Checks"][1]["Status"] == "warning", "after ttl_warn: %r" % e[0]["Checks"])
    check(c.agent.check.ttl_fail("service:api-1") is True, "ttl_fail")
    check(passing_ids(c, "api") == [], "after ttl_fail")
    # the native view agrees
    doc = a.get("/v1/instances/api?all=1")
    check(doc["instances"][0]["status"] == "critical", "native view %r" % doc)
    # a PUT of check/update with a body
    st, _, raw, _ = a.request("PUT", "/v1/agent/check/update/service:api-1",
                              json.dumps({"Status": "passing", "Output": "fine"}))
    check(st == 200, "check/update: %s %r" % (st, raw))
    check(passing_ids(c, "api") == ["api-1"], "after check/update passing")
    # unknown check ids are 404 (python-consul: returns False)
    st, _, raw, _ = a.request("PUT", "/v1/agent/check/pass/service:nope", "")
    check(st == 404 and b"Unknown check ID" in raw, "unknown check: %s %r" % (st, raw))


@test("blocking health.service(index=) returns on a change and waits out `wait` otherwise")
def t_blocking(h):
    a = h.agent("n1")
    c = client(a)
    c.agent.service.register("db", service_id="db-1", address="127.0.0.1", port=5432)
    idx, entries = c.health.service("db")
    check(len(entries) == 1, "db-1 listed: %r" % entries)
    # nothing changes: the query waits about `wait` and returns the same index
    t0 = time.monotonic()
    idx2, _ = c.health.service("db", index=idx, wait="1s")
    dt = time.monotonic() - t0
    check(idx2 == idx and 0.8 < dt < 5, "idle wait: index %s -> %s after %.2f s" % (idx, idx2, dt))
    # a change of another service does not wake it
    result = {}

    def waiter():
        t = time.monotonic()
        result["r"] = c.health.service("db", index=idx, wait="20s")
        result["dt"] = time.monotonic() - t

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    time.sleep(0.5)
    c.agent.service.register("other", service_id="other-1", address="127.0.0.1", port=1)
    time.sleep(0.5)
    check("r" not in result, "woken by another service's change: %r" % result)
    c.agent.service.register("db", service_id="db-2", address="127.0.0.1", port=5433)
    th.join(10)
    check("r" in result, "the blocking query did not return within 10 s of the change")
    idx3, entries = result["r"]
    check(int(idx3) > int(idx), "index did not grow: %s -> %s" % (idx, idx3))
    check(sorted(e["Service"]["ID"] for e in entries) == ["db-1", "db-2"], "entries %r" % entries)
    check(result["dt"] < 5, "returned after %.2f s" % result["dt"])
    # headers on a raw request
    st, _, _, hdrs = a.request("GET", "/v1/catalog/services")
    check(st == 200 and hdrs.get("X-Consul-KnownLeader") == "true" and
          "X-Consul-LastContact" in hdrs and int(hdrs["X-Consul-Index"]) >= int(idx3),
          "headers %r" % hdrs)


@test("an instance registered on one agent is served by another's Consul API")
def t_cluster(h):
    n1, n2 = h.cluster(2)
    c1, c2 = client(n1), client(n2)
    c1.agent.service.register("web", service_id="web-1", address="127.0.0.9", port=80,
                              tags=["blue"])
    wait_until(lambda: c2.catalog.services()[1] == {"web": ["blue"]}, 15,
               what="n2's catalog to list web")
    _, cat = c2.catalog.service("web")
    check(len(cat) == 1 and cat[0]["Node"] == "n1" and cat[0]["ServiceAddress"] == "127.0.0.9"
          and cat[0]["ServicePort"] == 80 and cat[0]["Address"] == "127.0.0.1",
          "catalog.service on n2: %r" % cat)
    check(passing_ids(c2, "web") == ["web-1"], "n2 health passing")
    # agent/services is the local agent's only
    check(c2.agent.services() == {}, "n2's agent.services() = %r" % c2.agent.services())
    _, nodes = c2.catalog.nodes()
    check(sorted(n["Node"] for n in nodes) == ["n1", "n2"], "nodes %r" % nodes)
    _, node = c2.catalog.node("n1")
    check(list(node["Services"]) == ["web-1"], "catalog.node(n1) %r" % node)
    check(sorted(m["Name"] for m in c2.agent.members()) == ["n1", "n2"], "members")
    check(c2.catalog.datacenters() == ["dc1"], "datacenters")
    check(c2.status.leader() != "" and len(c2.status.peers()) == 1, "status")
    # n1 killed: its instance leaves passing answers on n2
    n1.kill9()
    wait_until(lambda: passing_ids(c2, "web") == [], 30, what="n2 to drop web-1 of dead n1")
    _, e = c2.health.service("web")
    check(e and e[0]["Checks"][0]["CheckID"] == "serfHealth" and
          e[0]["Checks"][0]["Status"] == "critical", "serfHealth of dead n1: %r" % e)


@test("the change index never goes backward across a restart; a blocking loop carries on")
def t_restart_index(h):
    a = h.agent("n1")
    c = client(a)
    for i in range(5):
        c.agent.service.register("web", service_id="web-%d" % i, address="127.0.0.1",
                                 port=8000 + i)
    before, _ = c.health.service("web")
    seen = []
    stop = threading.Event()

    def loop():
        idx = None
        while not stop.is_set():
            try:
                idx, entries = c.health.service("web", index=idx, wait="2s")
                seen.append((int(idx), sorted(e["Service"]["ID"] for e in entries)))
            except Exception:
                time.sleep(0.1)  # the agent is restarting

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        wait_until(lambda: seen, 10, what="the loop's first answer")
        a.term()
        a.start()
        after, entries = c.health.service("web")
        check(int(after) >= int(before), "index went backward: %s -> %s" % (before, after))
        check(len(entries) == 5, "restored instances: %r" % entries)
        c.agent.service.register("web", service_id="web-new", address="127.0.0.1", port=8100)
        wait_until(lambda: seen and "web-new" in seen[-1][1], 15,
                   what="the blocking loop to see web-new after the restart")
        idxs = [i for i, _ in seen]
        check(all(x <= y for x, y in zip(idxs, idxs[1:])),
              "the loop saw the index go backward: %r" % idxs)
    finally:
        stop.set()
        th.join(5)
    # a corrupt index file stops the start with a message naming it
    a.term()
    with open(os.path.join(a.data_dir, "index"), "w") as f:
        f.write("garbage\n")
    a.start(wait=False)
    rc = a.wait_exit(20)
    check(rc != 0 and "index" in a.log_tail(10), "corrupt index: rc %s\n%s" % (rc, a.log_tail(10)))


@test("Consul parameters, errors and refusals")
def t_errors(h):
    a = h.agent("n1")
    c = client(a)

    def req(method, path, body=None):
        st, _, raw, hdrs = a.request(method, path, body)
        return st, raw.decode(errors="replace"), hdrs

    c.agent.service.register("web", service_id="web-1", address="127.0.0.1", port=80,
                             tags=["a"])
    # accepted parameters
    for qs in ("dc=dc1", "stale", "consistent", "cached", "token=x", "near=_agent",
               "passing=1&tag=a&tag=a"):
        st, body, _ = req("GET", "/v1/health/service/web?" + qs)
        check(st == 200 and "web-1" in body, "?%s: %s %s" % (qs, st, body[:200]))
    st, body, _ = req("GET", "/v1/health/service/web?dc=dc9")
    check(st == 500 and "No path to datacenter" in body, "other dc: %s %s" % (st, body))
    st, body, _ = req("GET", "/v1/health/service/web?stale&consistent")
    check(st == 400, "stale+consistent: %s %s" % (st, body))
    # filters
    st, body, _ = req("GET", "/v1/health/service/web?filter=" +
                      "Service.Tags%20contains%20%22a%22%20and%20Node.Node%20%3D%3D%20n1")
    check(st == 200 and "web-1" in body, "filter match: %s %s" % (st, body[:200]))
    st, body, _ = req("GET", "/v1/health/service/web?filter=%22b%22%20in%20Service.Tags")
    check(st == 200 and json.loads(body) == [], "filter no match: %s %s" % (st, body[:200]))
    st, body, _ = req("GET", "/v1/health/service/web?filter=Service.Port%20%3E%2010")
    check(st == 400 and "filter" in body, "unsupported filter: %s %s" % (st, body))
    st, body, _ = req("GET", "/v1/health/service/web?filter=" + "not%20" * 900 + "a%20is%20empty")
    check(st == 400 and "nested" in body, "deep filter: %s %s" % (st, body[:200]))
    st, body, _ = req("GET", "/v1/health/service/web?filter=" + "(" * 2000)
    check(st == 400, "deep parentheses: %s %s" % (st, body[:200]))
    st, body, _ = req("GET", "/v1/health/service/web?index=1&wait=banana")
    check(st == 400, "bad wait: %s %s" % (st, body))
    # refusals name the field
    for bad, word in (({"Name": "x", "Port": 1, "Check": {"Args": ["/bin/true"],
                                                          "Interval": "10s"}}, "Args"),
                      ({"Name": "x"}, "Port"),
                      ({"Port": 1}, "name"),
                      ({"Name": "x", "Port": 1, "Color": "red"}, "Color"),
                      ({"Name": "x", "Port": 1, "Check": {"HTTP": "http://127.0.0.1:1/"}},
                       "Interval"),
                      ({"Name": "x", "Port": 1, "Check": {"TCP": "127.0.0.1:1",
                                                          "Interval": "10 s"}}, "Interval"),
                      ({"Name": "Bad_Name", "Port": 1}, "service"),
                      ({"Name": "x", "Port": 1, "Check": {"HTTP": "ftp://x", "Interval": "1s"}},
                       "check"),
                      ({"Name": "x", "Port": 1, "Connect": {"Native": True}}, "Connect")):
        st, body, _ = req("PUT", "/v1/agent/service/register", json.dumps(bad))
        check(st == 400 and word.lower() in body.lower(), "%r -> %s %s" % (bad, st, body))
    st, body, _ = req("PUT", "/v1/agent/service/register", "{not json")
    check(st == 400 and "decode" in body, "bad JSON: %s %s" % (st, body))
    # nothing half-applied
    _, svcs = c.catalog.services()
    check(svcs == {"web": ["a"]}, "after refusals: %r" % (svcs,))
    # snake_case and nanosecond numbers, Weights -> meta weight, the check's deregister
    st, body, _ = req("PUT", "/v1/agent/service/register", json.dumps({
        "name": "lb", "id": "lb-1", "address": "127.0.0.2", "port": 81,
        "weights": {"Passing": 3, "Warning": 1},
        "checks": [{"ttl": "10s", "deregister_critical_service_after": "90m"},
                   {"tcp": "127.0.0.1:1", "interval": 5000000000,
                    "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3}]}))
    check(st == 200, "snake_case register: %s %s" % (st, body))
    inst = a.get("/v1/instances/lb?all=1")["instances"][0]
    check(inst["meta"].get("weight") == "3" and inst["ttl_ms"] == 10000 and
          inst["deregister_critical_after_ms"] == 5400000 and
          inst["checks"][0]["interval_ms"] == 5000, "translated: %r" % inst)
    checks = c.agent.checks()
    check("service:lb-1:1" in checks and checks["service:lb-1:1"]["Type"] == "ttl" and
          checks["service:lb-1:2"]["Type"] == "tcp", "check ids %r" % list(checks))
    # methods and unknown endpoints
    st, body, _ = req("DELETE", "/v1/agent/services")
    check(st == 405, "DELETE agent/services: %s" % st)
    st, body, _ = req("GET", "/v1/kv/foo")
    check(st == 404 and "not supported" in body, "kv: %s %s" % (st, body))
    # native paths keep working next to Consul's
    check(a.get("/v1/services")["services"][0]["name"] in ("lb", "web"), "native /v1/services")


@test("GET /v1/sd/prometheus: one http_sd group per passing instance, filtered")
def t_http_sd(h):
    a = h.agent("n1")
    c = client(a)
    c.agent.service.register("web", service_id="web-1", address="10.0.0.1", port=80,
                             tags=["v1", "x"])
    c.agent.service.register("web", service_id="web-2", address="10.0.0.2", port=80,
                             tags=["v2"])
    st, _, raw, _ = a.request("PUT", "/v1/agent/service/register", json.dumps({
        "Name": "db", "ID": "db-1", "Address": "fd00::1", "Port": 5432,
        "Meta": {"zone": "eu-1", "x.y": "z"}}))
    check(st == 200, "register db: %r" % raw)
    c.agent.service.register("api", service_id="api-1", address="10.0.0.3", port=81,
                             check=consul.Check.ttl("30s"))  # critical: not a target
    groups = a.get("/v1/sd/prometheus")
    targets = sorted(t for g in groups for t in g["targets"])
    check(targets == ["10.0.0.1:80", "10.0.0.2:80", "[fd00::1]:5432"], "targets %r" % targets)
    db = [g for g in groups if g["targets"] == ["[fd00::1]:5432"]][0]["labels"]
    check(db == {"__meta_shoal_service": "db", "__meta_shoal_node": "n1",
                 "__meta_shoal_tags": "", "__meta_shoal_status": "passing",
                 "__meta_shoal_id": "db-1", "__meta_shoal_meta_zone": "eu-1",
                 "__meta_shoal_meta_x_y": "z"}, "db labels %r" % db)
    web1 = [g for g in groups if g["targets"] == ["10.0.0.1:80"]][0]["labels"]
    check(web1["__meta_shoal_tags"] == ",v1,x,", "tags label %r" % web1)
    only = a.get("/v1/sd/prometheus?service=web&tag=v2")
    check([g["targets"] for g in only] == [["10.0.0.2:80"]], "service+tag: %r" % only)
    check(a.get("/v1/sd/prometheus?service=nothing") == [], "unknown service: []")
    check(len(a.get("/v1/sd/prometheus?all=1")) == 4, "all=1 includes the critical one")
    st, _, raw, _ = a.request("GET", "/v1/sd/prometheus?service=Bad_Name")
    check(st == 400, "bad service name: %s %r" % (st, raw))


@test("Consul JSON service definitions in --config-dir; unreadable files reported by name")
def t_json_files(h):
    d = os.path.join(h.tmp, "services.d")
    os.makedirs(d)

    def write(name, doc):
        with open(os.path.join(d, name), "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))

    write("web.json", {"service": {"name": "web", "id": "web-1", "port": 8080, "tags": ["v1"],
                                   "meta": {"zone": "eu"},
                                   "check": {"ttl": "30s"}}})
    write("many.json", {"services": [
        {"Name": "db", "ID": "db-1", "Address": "10.0.0.7", "Port": 5432},
        {"Name": "db", "ID": "db-2", "Address": "10.0.0.8", "Port": 5432,
         "Checks": [{"TCP": "10.0.0.8:5432", "Interval": "10s", "Timeout": "1s"}]}]})
    write("native.service", "[service]\nid = q-1\nservice = queue\naddress = 10.0.0.9\nport = 1\n")
    write("broken.json", '{"service": {"name": "x", ')
    write("script.json", {"service": {"name": "s", "port": 1,
                                      "check": {"args": ["/bin/true"], "interval": "1s"}}})
    write("zdup.json", {"service": {"name": "web", "id": "web-1", "port": 9}})
    write("web.hcl", 'service { name = "web" }')
    os.symlink(os.path.join(d, "missing-target"), os.path.join(d, "gone.json"))
    a = h.agent("n1", flags=FAST + ["--config-dir", d])
    c = client(a)
    _, svcs = c.catalog.services()
    check(svcs == {"web": ["v1"], "db": [], "queue": []}, "catalog %r" % (svcs,))
    svc = c.agent.services()
    check(svc["web-1"]["Address"] == "127.0.0.1" and svc["web-1"]["Meta"] == {"zone": "eu"},
          "no Address: the node's: %r" % svc["web-1"])
    log = a.log_text()
    for needle in ("broken.json:1: not valid JSON", "script.json:0: service: Check.args",
                   "zdup.json:0: service: id 'web-1' is already defined at",
                   "web.hcl: not a *.service or *.json file", "gone.json:0: cannot read"):
        check(needle in log, "log lacks %r:\n%s" % (needle, a.log_tail(30)))
    # reload: a definition removed from a file is deregistered
    write("many.json", {"services": [
        {"Name": "db", "ID": "db-1", "Address": "10.0.0.7", "Port": 5432}]})
    a.proc.send_signal(harness.signal.SIGHUP)
    wait_until(lambda: sorted(c.agent.services()) == ["db-1", "q-1", "web-1"], 15,
               what="db-2 deregistered after SIGHUP")


if __name__ == "__main__":
    run_tests()

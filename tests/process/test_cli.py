"""test_cli.py -- the shoal CLI and the HTTP API against real agents.

Checks docs/interfaces.md: `members`/`info` output (table and JSON), `join`
through the CLI, exit statuses (0 ok, 1 agent unreachable or error, 2 usage),
`keygen`, `shoal agent` flag validation, and the HTTP API's rejections
(400/404/405/413 with {"error":...}), with http.client, a raw socket and curl.

Run: /usr/bin/python3 test_cli.py --shoal build/shoal [-k NAME]
"""

import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import check, fail, free_port, hostport, run_tests, test  # noqa: E402

INFO_KEYS = {"name", "addr", "generation", "incarnation", "health", "members", "packets",
             "bytes", "drops", "protocol", "joining", "cluster_key", "registry", "version",
             "build", "uptime_s", "addresses"}
INFO_SUB = {
    "members": {"alive", "suspect", "dead", "left"},
    "packets": {"in", "out"},
    "bytes": {"in", "out"},
    "drops": {"too_large", "truncated", "unsigned", "bad_signature", "not_endorsed",
              "replay", "decode", "invalid"},
    "protocol": {"probes_sent", "probes_failed", "ping_reqs_sent", "suspicions", "refutes",
                 "deaths", "conflicts", "updates_applied", "pushpulls", "probe_suspicions",
                 "stale_claims", "fallback_pings", "fallback_acks"},
}
MEMBER_KEYS = {"name", "addr", "status", "incarnation", "generation"}


def check_members_doc(doc, where):
    check(isinstance(doc, dict) and set(doc) == {"members"} and isinstance(doc["members"], list),
          "%s: not {\"members\":[...]}: %r" % (where, doc))
    for m in doc["members"]:
        check(isinstance(m, dict) and set(m) == MEMBER_KEYS,
              "%s: member keys %r, want %r" % (where, sorted(m), sorted(MEMBER_KEYS)))
        check(isinstance(m["name"], str) and isinstance(m["addr"], str) and
              m["status"] in ("alive", "suspect", "dead", "left") and
              isinstance(m["incarnation"], int) and isinstance(m["generation"], int),
              "%s: bad member %r" % (where, m))
    names = [m["name"] for m in doc["members"]]
    check(names == sorted(names), "%s: members not sorted by name: %s" % (where, names))


def check_info_doc(doc, where):
    check(isinstance(doc, dict) and set(doc) == INFO_KEYS,
          "%s: /v1/info keys %r, want %r" % (where, sorted(doc or {}), sorted(INFO_KEYS)))
    for k, sub in INFO_SUB.items():
        check(isinstance(doc[k], dict) and set(doc[k]) == sub,
              "%s: info.%s keys %r, want %r" % (where, k, sorted(doc[k]), sorted(sub)))
        check(all(isinstance(v, int) and v >= 0 for v in doc[k].values()),
              "%s: info.%s has non-counter values %r" % (where, k, doc[k]))
    check(isinstance(doc["joining"], bool) and isinstance(doc["cluster_key"], bool),
          "%s: joining/cluster_key not booleans: %r %r" % (where, doc["joining"],
                                                            doc["cluster_key"]))


def stable_json(h, a, args, path):
    """Runs `shoal ARGS` and GET path until both give the same document
    (state may move between the two); returns (cli doc, api doc)."""
    last = None
    for _ in range(5):
        api1 = a.get(path)
        r = h.cli(args)
        check(r.rc == 0, lambda: "%r" % r)
        try:
            doc = json.loads(r.out)
        except ValueError as e:
            fail("`%s` printed invalid JSON (%s):\n%s" % (" ".join(args), e, r.out[:2000]))
        api2 = a.get(path)
        if doc == api1 or doc == api2:
            return doc, api1
        last = (doc, api1, api2)
        time.sleep(0.3)
    return last[0], last[1]


def usage_error(r, what):
    check(r.rc == 2, lambda: "%s: want exit 2 (usage error)\n%r" % (what, r))
    check(r.err.strip(), lambda: "%s: exit 2 but no message on stderr\n%r" % (what, r))


def unreachable(h):
    """An HTTP address nobody listens on."""
    return "127.0.0.1:%d" % free_port()


# ---------------------------------------------------------------- members / info

@test("members prints a table and --format json prints the API's object")
def t_members(h):
    key = h.keygen()
    nodes = h.cluster(3, key)
    a = nodes[0]
    r = h.cli(["members", "--http", a.http])
    check(r.rc == 0, lambda: "%r" % r)
    lines = r.out.splitlines()
    for m in a.members_list():
        row = [l for l in lines if m["name"] in l.split() and m["addr"] in l]
        check(len(row) == 1 and "alive" in row[0] and str(m["incarnation"]) in row[0].split(),
              lambda: "table has no single row with %s %s alive %s:\n%s" % (
                  m["name"], m["addr"], m["incarnation"], r.out))
    check(len(lines) >= 3, "table has fewer lines than members:\n" + r.out)

    doc, api = stable_json(h, a, ["members", "--format", "json", "--http", a.http], "/v1/members")
    check_members_doc(doc, "`members --format json`")
    check(doc == api, "`members --format json` differs from GET /v1/members:\n  cli %r\n  api %r"
          % (doc, api))
    check(sorted(m["name"] for m in doc["members"]) == ["n1", "n2", "n3"],
          "members json lists %r" % doc)

    # $SHOAL_HTTP_ADDR is the default --http; --http wins over it.
    r = h.cli(["info", "--format", "json"], env={"SHOAL_HTTP_ADDR": nodes[1].http})
    check(r.rc == 0 and json.loads(r.out)["name"] == "n2",
          lambda: "with SHOAL_HTTP_ADDR=%s, want n2's info: %r" % (nodes[1].http, r))
    r = h.cli(["members", "--format", "json", "--http", a.http],
              env={"SHOAL_HTTP_ADDR": unreachable(h)})
    check(r.rc == 0, lambda: "--http should win over SHOAL_HTTP_ADDR: %r" % r)
    r = h.cli(["members", "--format", "yaml", "--http", a.http])
    usage_error(r, "members --format yaml")


@test("info prints this node's state; --format json is the API's object")
def t_info(h):
    key = h.keygen()
    nodes = h.cluster(3, key)
    a = nodes[1]
    api = a.info()
    check_info_doc(api, "GET /v1/info")
    check(api["name"] == "n2" and api["addr"] == a.addr and api["members"]["alive"] == 3 and
          api["cluster_key"] is True and api["joining"] is False,
          "GET /v1/info: %r" % api)
    check(api["packets"]["in"] > 0 and api["packets"]["out"] > 0 and api["bytes"]["in"] > 0,
          "GET /v1/info counts no traffic: %r" % api)
    r = h.cli(["info", "--http", a.http])
    check(r.rc == 0 and "n2" in r.out and a.addr in r.out,
          lambda: "info table lacks name/address: %r" % r)
    # The issue: self, members by status, health, packets and bytes, drops by
    # reason. Labels may use spaces for underscores.
    text = r.out.lower().replace("_", " ")
    for word in ["alive", "health", "packets", "bytes"] + sorted(INFO_SUB["drops"]):
        check(word.replace("_", " ") in text,
              lambda: "info table does not show %s: %r" % (word, r))
    r = h.cli(["info", "--format", "json", "--http", a.http])
    check(r.rc == 0, lambda: "%r" % r)
    try:
        doc = json.loads(r.out)
    except ValueError as e:
        fail("`info --format json` printed invalid JSON (%s): %r" % (e, r))
    check_info_doc(doc, "`info --format json`")
    check(doc["name"] == "n2" and doc["generation"] == api["generation"],
          "`info --format json`: %r" % doc)


@test("join through the CLI: a lone agent joins the cluster")
def t_join_cli(h):
    key = h.keygen()
    nodes = h.cluster(2, key)
    lone = h.agent("n3", key=key)
    check(list(lone.members()) == ["n3"], "a lone agent should only know itself")
    r = h.cli(["join", nodes[0].addr, nodes[1].addr, "--http", lone.http])
    check(r.rc == 0, lambda: "%r" % r)
    everyone = nodes + [lone]
    h.wait_view(everyone, {a.name: "alive" for a in everyone})


# ---------------------------------------------------------------- errors

@test("usage errors exit 2 with a message")
def t_usage(h):
    a = h.agent("n1", key=h.keygen())
    for args in (["members", "--bogus", "--http", a.http],
                 ["frobnicate"],
                 ["join", "--http", a.http],
                 ["keygen"],
                 ["members", "--http"],
                 ["info", "--format", "xml", "--http", a.http],
                 ["leave", "extra", "--http", a.http]):
        usage_error(h.cli(args), "`shoal %s`" % " ".join(args))
    check(a.running(), "the agent died\n" + a.describe())
    for args in (["version"], ["help"], ["members", "--help"], ["agent", "--help"]):
        r = h.cli(args)
        check(r.rc == 0 and (r.out + r.err).strip(), lambda: "%r" % r)
    r = h.cli(["version"])
    check(any(c.isdigit() for c in r.out), lambda: "version prints no version: %r" % r)


@test("a bad address is refused with a message and changes nothing")
def t_bad_addr(h):
    key = h.keygen()
    nodes = h.cluster(2, key)
    a = nodes[0]
    before = a.members()
    for bad in ("not-an-addr", "127.0.0.1", "127.0.0.1:99999", "300.1.2.3:80", "127.0.0.1:0",
                "127.0.0.1:80x"):
        r = h.cli(["join", bad, "--http", a.http])
        check(r.rc in (1, 2) and r.err.strip(),
              lambda: "`shoal join %s`: want exit 1 or 2 with a message\n%r" % (bad, r))
    for bad in ("nonsense", "127.0.0.1", "127.0.0.1:99999"):
        r = h.cli(["members", "--http", bad])
        check(r.rc in (1, 2) and r.err.strip(),
              lambda: "`shoal members --http %s`: want exit 1 or 2 with a message\n%r" % (bad, r))
    check(a.members() == before, "a refused join changed the view: %r -> %r" % (
        before, a.members()))


@test("no agent listening: exit 1 and 'cannot reach agent'")
def t_unreachable(h):
    addr = unreachable(h)
    for args in (["members"], ["members", "--format", "json"], ["info"],
                 ["join", "127.0.0.1:7946"], ["leave"]):
        r = h.cli(args + ["--http", addr])
        check(r.rc == 1 and "cannot reach agent" in r.err and addr in r.err,
              lambda: "want exit 1 and 'cannot reach agent at %s':\n%r" % (addr, r))
        check(not r.out.strip(), lambda: "prints to stdout on failure: %r" % r)
    r = h.cli(["members"], env={"SHOAL_HTTP_ADDR": addr})
    check(r.rc == 1 and "cannot reach agent" in r.err and addr in r.err,
          lambda: "with SHOAL_HTTP_ADDR=%s: %r" % (addr, r))


@test("keygen --out writes a 0600 key and refuses to overwrite")
def t_keygen(h):
    path = os.path.join(h.tmp, "k1")
    r = h.cli(["keygen", "--out", path])
    check(r.rc == 0, lambda: "%r" % r)
    check(os.path.isfile(path), "keygen created no file")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check(mode == 0o600, "key file mode %o, want 600" % mode)
    with open(path, "rb") as f:
        first = f.read()
    check(len(first) >= 32, "key file is only %d bytes" % len(first))
    r = h.cli(["keygen", "--out", path])
    check(r.rc != 0 and r.err.strip(), lambda: "second keygen to the same path: %r" % r)
    with open(path, "rb") as f:
        check(f.read() == first, "keygen overwrote an existing key")
    other = os.path.join(h.tmp, "k2")
    check(h.cli(["keygen", "--out", other]).rc == 0, "keygen k2 failed")
    with open(other, "rb") as f:
        check(f.read() != first, "two keygens wrote the same key")
    r = h.cli(["keygen", "--out", os.path.join(h.tmp, "no", "such", "dir", "k")])
    check(r.rc != 0 and r.err.strip(), lambda: "keygen into a missing directory: %r" % r)


@test("shoal agent with a bad flag or value exits 2 naming the flag")
def t_agent_flags(h):
    key = h.keygen()
    cases = [("--probe-interval", "bogus"), ("--probe-timeout", "-5"),
             ("--gossip-interval", "10parsecs"), ("--name", "bad name!"), ("--name", "x" * 64),
             ("--bind", "nonsense"), ("--http", "127.0.0.1:99999"), ("--join", "nowhere"),
             ("--gossip-fanout", "abc"), ("--suspicion-mult", "-1"),
             ("--log-level", "loud"), ("--frobnicate", "1")]
    for flag, value in cases:
        d = os.path.join(h.tmp, "d" + h.uniq())
        argv = ["agent", "--name", "x1", "--bind", "127.0.0.1:%d" % free_port(),
                "--http", "127.0.0.1:%d" % free_port(), "--data-dir", d,
                "--cluster-key", key, flag, value]
        if flag == "--name":
            argv = ["agent"] + argv[3:]
        r = h.cli(argv, timeout=15)
        usage_error(r, "`shoal agent ... %s %s`" % (flag, value))
        check(flag.lstrip("-") in r.err, lambda: "the message does not name %s: %r" % (flag, r))
    # A flag that needs a value, given none.
    r = h.cli(["agent", "--data-dir", os.path.join(h.tmp, "dz"), "--probe-interval"], timeout=15)
    usage_error(r, "`shoal agent --probe-interval` (no value)")


@test("a second agent on a data dir in use refuses to start")
def t_datadir_lock(h):
    key = h.keygen()
    a = h.agent("n1", key=key)
    r = h.cli(["agent", "--name", "n1b", "--bind", "127.0.0.1:%d" % free_port(),
               "--http", "127.0.0.1:%d" % free_port(), "--data-dir", a.data_dir,
               "--cluster-key", key], timeout=15)
    check(r.rc == 1 and r.err.strip(), lambda: "want exit 1 with a message: %r" % r)
    check(a.running() and a.info()["name"] == "n1", "the first agent suffered\n" + a.describe())


# ---------------------------------------------------------------- HTTP API

def raw_http(addr, data, timeout=10.0):
    """Sends raw bytes, returns (status, body) of the first response, reading
    until the server closes or Content-Length is satisfied. A server that
    stops reading early (413) may reset the send; the response still counts."""
    host, port = hostport(addr)
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length" and len(body) >= int(v):
                        return int(head.split()[1]), body[:int(v)]
        if not buf:
            return None, b""
        return int(buf.split()[1]), buf.partition(b"\r\n\r\n")[2]
    finally:
        s.close()


@test("HTTP API: bad body 400, unknown path 404, wrong method 405, huge body 413")
def t_http_errors(h):
    key = h.keygen()
    nodes = h.cluster(2, key)
    a = nodes[0]
    before = a.members()

    def expect(method, path, body, status, what):
        st, doc, raw, hdrs = a.request(method, path, body)
        check(st == status, "%s: %s %s -> %s %r (want %d)" % (what, method, path, st, raw[:300],
                                                              status))
        check(isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"],
              "%s: body is not {\"error\":\"...\"}: %r" % (what, raw[:300]))
        ctype = {k.lower(): v for k, v in hdrs.items()}.get("content-type", "")
        check("application/json" in ctype, "%s: Content-Type %r" % (what, ctype))

    for body, what in ((b"not json", "not JSON"), (b"{\"addrs\":[", "cut JSON"),
                       (b"", "empty body"), (b"[]", "an array"), (b"{}", "no addrs"),
                       (b"{\"addrs\":\"127.0.0.1:1\"}", "addrs not a list"),
                       (b"{\"addrs\":[]}", "no address"),
                       (b"{\"addrs\":[42]}", "a number"),
                       (b"{\"addrs\":[\"nowhere\"]}", "a bad address"),
                       (b"{\"addrs\":[\"127.0.0.1:99999\"]}", "a bad port")):
        expect("POST", "/v1/join", body, 400, "join with " + what)
    expect("GET", "/v1/nope", None, 404, "unknown path")
    expect("GET", "/", None, 404, "root")
    expect("POST", "/v1/members", b"{}", 405, "POST members")
    expect("GET", "/v1/join", None, 405, "GET join")
    expect("DELETE", "/v1/info", None, 405, "DELETE info")
    expect("GET", "/v1/leave", None, 405, "GET leave")

    # A body over 1 MiB: 413, and the agent goes on serving.
    host = a.http
    big = b"{\"addrs\":[\"" + b"x" * (1024 * 1024 + 100) + b"\"]}"
    st, body = raw_http(host, b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        b"application/json\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    check(st == 413, "a %d-byte body got status %s %r (want 413)" % (len(big), st, body[:200]))
    # Garbage instead of HTTP: 400 (or a closed connection), never a crash.
    st, body = raw_http(host, b"\x00\x01GARBAGE\r\n\r\n")
    check(st in (None, 400), "garbage request got %s %r" % (st, body[:200]))
    # Keep-alive: two requests on one connection.
    hh, pp = hostport(host)
    c = http.client.HTTPConnection(hh, pp, timeout=10)
    try:
        for _ in range(2):
            c.request("GET", "/v1/info")
            r = c.getresponse()
            check(r.status == 200 and json.loads(r.read())["name"] == "n1",
                  "keep-alive request failed: %s" % r.status)
    finally:
        c.close()
    check(a.running(), "the agent died\n" + a.describe())
    check(a.members() == before, "rejected requests changed the view: %r -> %r" % (
        before, a.members()))


@test("curl GET /v1/members")
def t_curl(h):
    curl = shutil.which("curl")
    check(curl, "curl is not installed")
    key = h.keygen()
    nodes = h.cluster(2, key)
    a = nodes[1]
    p = subprocess.run([curl, "-sS", "--fail", "--max-time", "10", "http://%s/v1/members" % a.http],
                       capture_output=True, timeout=30)
    check(p.returncode == 0, "curl exit %d: %s" % (p.returncode, p.stderr.decode()))
    doc = json.loads(p.stdout)
    check_members_doc(doc, "curl /v1/members")
    check([m["name"] for m in doc["members"]] == ["n1", "n2"] and
          all(m["status"] == "alive" for m in doc["members"]), "curl /v1/members: %r" % doc)
    p = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                        "-X", "POST", "-H", "Content-Type: application/json", "-d", "{oops",
                        "http://%s/v1/join" % a.http], capture_output=True, timeout=30)
    check(p.stdout == b"400", "curl POST bad JSON: %r %r" % (p.stdout, p.stderr))


if __name__ == "__main__":
    run_tests()

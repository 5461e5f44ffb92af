"""test_ui_http.py -- the web UI's HTTP side, without a browser.

The embedded files (content types, ETag and 304, immutable hashed names,
the security headers, nothing fetched from elsewhere, no innerHTML in the
script) and GET /v1/cluster, the page's blocking query: it answers at once
without an index, waits while nothing changes, and is answered when the
registry changes or a member dies. test_ui.py drives the page itself in
chromium; this file runs under ASan too.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, http_request, run_tests, test  # noqa: E402


def get(a, path, headers=None, method="GET"):
    st, doc, raw, hdrs = http_request(a.http, method, path, headers=headers)
    return st, doc, raw, {k.lower(): v for k, v in hdrs.items()}


@test("the UI's files are embedded and served with content types, ETags and cache policy")
def ui_files(h):
    a = h.agent("u1")
    st, _, _, hd = get(a, "/ui")
    check(st == 301 and hd.get("location") == "/ui/", "GET /ui: %s %r" % (st, hd))

    st, _, index, hd = get(a, "/ui/")
    check(st == 200 and hd["content-type"] == "text/html; charset=utf-8", "GET /ui/: %s %r" % (st, hd))
    check(hd.get("cache-control") == "no-cache" and re.fullmatch(r'"[0-9a-f]{16}"', hd.get("etag", "")),
          "index caching headers %r" % hd)
    csp = hd.get("content-security-policy", "")
    check("script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp, "CSP %r" % csp)
    check(hd.get("x-content-type-options") == "nosniff", "nosniff missing: %r" % hd)
    html = index.decode()
    names = re.findall(r'(?:src|href)="(app\.[0-9a-f]{16}\.(?:js|css))"', html)
    check(len(names) == 2, "index.html names %r" % names)
    check("@APP_" not in html, "a placeholder was left in index.html")
    # nothing from another origin: no absolute URL in any attribute, no CSS url()
    check(not re.search(r'(?:src|href)="(?:https?:)?//', html), "index.html loads from elsewhere")

    etag = hd["etag"]
    for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
        st, _, raw, hd2 = get(a, "/ui/", {"If-None-Match": inm})
        check(st == 304 and raw == b"" and hd2.get("etag") == etag,
              "If-None-Match %r: %s %r %r" % (inm, st, raw[:40], hd2))
    st, _, raw, _ = get(a, "/ui/", {"If-None-Match": '"0000000000000000"'})
    check(st == 200 and raw == index, "a stale ETag got %s" % st)
    st, _, raw, hd2 = get(a, "/ui/", method="HEAD")
    check(st == 200 and raw == b"" and hd2.get("content-length") == str(len(index)), "HEAD /ui/: %s %r" % (st, hd2))

    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
    for n in names:
        st, _, body, hd = get(a, "/ui/" + n)
        check(st == 200 and hd["content-type"] == types[n.rsplit(".", 1)[1]], "GET %s: %s %r" % (n, st, hd))
        check(hd.get("cache-control") == "public, max-age=31536000, immutable", "%s cache %r" % (n, hd))
        check(hd.get("etag") == '"%s"' % n.split(".")[1], "%s: the ETag is the name's hash: %r" % (n, hd))
        text = body.decode()
        check("url(" not in text and "@import" not in text, "%s loads from elsewhere" % n)
        if n.endswith(".js"):
            # data reaches the DOM only as text: the script never parses HTML
            for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                check(bad not in text, "app.js uses %s" % bad)
            check(not re.search(r"fetch\(['\"]https?:", text), "app.js fetches from elsewhere")

    st, _, body, hd = get(a, "/ui/favicon.svg")
    check(st == 200 and hd["content-type"] == "image/svg+xml" and body.startswith(b"<svg")
          and hd.get("cache-control") == "no-cache", "favicon: %s %r" % (st, hd))

    st, _, _, _ = get(a, "/ui/app.0000000000000000.js")
    check(st == 404, "an unknown file: %s" % st)
    st, _, _, _ = get(a, "/ui/../v1/info")
    check(st in (400, 404), "a dot-dot path: %s" % st)
    st, doc, _, _ = get(a, "/ui/", method="POST")
    check(st == 405, "POST /ui/: %s %r" % (st, doc))
    st, doc, _, _ = get(a, "/v1/cluster", method="DELETE")
    check(st == 405, "DELETE /v1/cluster: %s %r" % (st, doc))


def cluster(a, qs=""):
    st, doc, raw, _ = http_request(a.http, "GET", "/v1/cluster" + qs, timeout=30)
    check(st == 200 and isinstance(doc, dict), "GET /v1/cluster%s: %s %r" % (qs, st, raw[:300]))
    return doc


class Blocking:
    """A GET /v1/cluster?index=I&wait=D sent now, answered in a thread."""

    def __init__(self, a, index, wait="20s"):
        self.doc = None
        self.at = None
        self.t0 = time.monotonic()

        def run():
            self.doc = cluster(a, "?index=%d&wait=%s" % (index, wait))
            self.at = time.monotonic() - self.t0
        self.th = threading.Thread(target=run, daemon=True)
        self.th.start()
        time.sleep(0.3)  # let it reach the agent and wait there
        check(self.th.is_alive(), "the blocking query was answered at once: %r" % self.doc)

    def result(self, timeout=30):
        self.th.join(timeout)
        check(not self.th.is_alive(), "the blocking query was never answered")
        return self.doc


@test("GET /v1/cluster blocks until the registry changes or a member dies")
def cluster_blocking(h):
    n1, n2, n3 = h.cluster(3)
    c = cluster(n1)
    check(c["self"] == "n1", "self %r" % c.get("self"))
    check(sorted((m["name"], m["status"]) for m in c["members"]) ==
          [("n1", "alive"), ("n2", "alive"), ("n3", "alive")], "members %r" % c["members"])
    for m in c["members"]:
        check({"addr", "incarnation", "generation", "changed_ms_ago"} <= set(m), "member fields %r" % m)
    check(c["services"] == [], "services %r" % c["services"])
    i0 = c["index"]

    # nothing changes: it waits for `wait`, then answers the same
    t0 = time.monotonic()
    same = cluster(n1, "?index=%d&wait=400ms" % i0)
    check(same["index"] == i0 and time.monotonic() - t0 >= 0.35, "an idle wait came back early: %r" % same)
    # an index that is not the current one answers at once
    t0 = time.monotonic()
    cluster(n1, "?index=%d&wait=20s" % (i0 + 1000))
    check(time.monotonic() - t0 < 5, "an index from elsewhere waited")

    # a registration on n2 wakes n1's waiter, with per-service health counts
    b = Blocking(n1, i0)
    n2.post("/v1/register", {"id": "web-1", "service": "web", "address": "10.0.0.5", "port": 80})
    n2.post("/v1/register", {"id": "web-2", "service": "web", "address": "10.0.0.6", "port": 80,
                             "ttl": "1h"})  # a TTL instance starts critical
    c = b.result()
    check(c["index"] > i0, "index did not move: %r" % c)
    h.note("registry change answered after %.2f s" % b.at)

    def counts():
        s = cluster(n1)["services"]
        return s and s[0] == {"name": "web", "passing": 1, "warning": 0, "critical": 1, "total": 2, "served": 1}
    from harness import wait_until
    wait_until(counts, 20, lambda: repr(cluster(n1)), "web: 1 passing, 1 critical on n1")

    # kill -9 n3: the waiter is answered with n3 suspect or dead
    i1 = cluster(n1)["index"]
    b = Blocking(n1, i1, wait="60s")
    n3.kill9()
    c = b.result(60)
    st = {m["name"]: m["status"] for m in c["members"]}
    check(st["n3"] in ("suspect", "dead") and c["index"] > i1, "after kill -9 of n3: %r" % st)
    h.note("kill -9 of n3: n1's waiter answered after %.2f s with n3 %s" % (b.at, st["n3"]))

    for qs, why in (("?index=abc", "index"), ("?index=1&wait=11m", "wait"), ("?wait=xyz", "wait"),
                    ("?foo=1", "unknown"), ("?index=99999999999999999999999", "index"),
                    ("?index=1&index=2", "once"), ("?wait=1s&wait=2s", "once"), ("?index=", "index")):
        st, doc, _, _ = http_request(n1.http, "GET", "/v1/cluster" + qs)
        check(st == 400 and why in doc.get("error", ""), "GET /v1/cluster%s: %s %r" % (qs, st, doc))


if __name__ == "__main__":
    run_tests()

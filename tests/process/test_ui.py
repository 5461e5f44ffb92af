# ctest-labels: heavy
"""test_ui.py -- the web UI (/ui/) in a real browser against a real cluster.

Debian's chromium, headless, driven through python3-selenium and
chromium-driver (run with /usr/bin/python3; as root chromium needs
--no-sandbox; the profile is a temp dir; loopback only). Three agents; the
page is opened on n1 and never reloaded while the cluster changes under it:
an instance registered on n2 appears, its HTTP check failing turns it
critical, metadata holding markup is shown as text and runs nothing, and a
kill -9 of n3 shows n3 suspect, then dead. A screenshot of each page is
written to BUILD/ui-screenshots/ (BUILD = the directory of --shoal).

Times from a change to the page showing it are printed as notes, never
asserted (the machine is shared).
"""

import http.client
import http.server
import os
import socketserver
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAST, check, fail, run_tests, test, wait_until  # noqa: E402

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - reported as a failure below
    webdriver = None

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Suspicion lasts at least 8 * 200 ms here, so the page has time to show it
# (FAST's multiplier of 4 gives 800 ms, which a 50 ms DOM poll still sees,
# but with less room on a loaded machine).
UI_FLAGS = [f for f in FAST]
UI_FLAGS[UI_FLAGS.index("--suspicion-mult") + 1] = "8"

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


class Backend:
    """An HTTP health-check target whose answer the test switches."""

    def __init__(self):
        self.status = 200
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"backend says %d" % outer.status
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a check that timed out and hung up: not the test's business

        self.srv = S(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def browser(tmp):
    if webdriver is None:
        fail("python3-selenium is not importable (run with /usr/bin/python3)")
    for p in (CHROMIUM, CHROMEDRIVER):
        check(os.access(p, os.X_OK), "%s is missing (apt-get install chromium chromium-driver)" % p)
    o = Options()
    o.binary_location = CHROMIUM
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--user-data-dir=" + tmp, "--window-size=1360,1000", "--no-first-run",
              "--disable-extensions", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--disable-default-apps", "--hide-scrollbars"]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def js(d, script, *args):
    return d.execute_script(script, *args)


def text_of(d, css):
    """textContent of the first element matching css, or None."""
    return js(d, "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def shot(h, d, name):
    out = os.path.join(os.path.dirname(h.shoal), "ui-screenshots")
    os.makedirs(out, exist_ok=True)
    # the whole page: a viewport as tall as the document (at most 4000 px)
    height = js(d, "return Math.max(300, Math.ceil(document.querySelector('main')"
                   ".getBoundingClientRect().bottom + window.scrollY + 8));")
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1360, "height": min(int(height), 4000), "deviceScaleFactor": 1, "mobile": False})
    path = os.path.join(out, name + ".png")
    check(d.save_screenshot(path), "screenshot %s was not written" % path)
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    h.note("screenshot %s" % path)


def wait_dom(h, d, pred, what, timeout=30.0, interval=0.05):
    wait_until(pred, timeout, lambda: "page: %s\n%s" % (
        js(d, "return document.querySelector('main').innerText.slice(0, 3000);"),
        h.describe()), what, interval=interval)


@test("the UI follows a 3-agent cluster live: alive members, a new instance, a failing check, escaped metadata, kill -9")
def ui_live(h):
    nodes = h.cluster(3, flags=UI_FLAGS)
    n1, n2, n3 = nodes
    backend = Backend()
    profile = tempfile.mkdtemp(prefix="ui-profile-", dir=h.tmp)
    d = browser(profile)
    try:
        t0 = time.monotonic()
        d.get("http://%s/ui/" % n1.http)
        wait_dom(h, d, lambda: text_of(d, "#count-alive") == "3", "the overview to show 3 alive members")
        h.note("first render with 3 alive members %.2f s after opening the page" % (time.monotonic() - t0))
        check(text_of(d, "#count-suspect") == "0" and text_of(d, "#count-dead") == "0",
              lambda: "overview shows suspect %r dead %r" % (text_of(d, "#count-suspect"), text_of(d, "#count-dead")))
        check(len(d.find_elements(By.CSS_SELECTOR, "#member-grid .m.alive")) == 3, "the grid has 3 alive squares")
        check("n1" in (text_of(d, "#agent-facts") or ""), "the agent card names n1")
        wait_dom(h, d, lambda: "drops.bad_signature" in (text_of(d, "#counters-zero") or ""),
                 "drop counters from /v1/info (all 0, folded)")
        check("all " in (text_of(d, "#counters") or ""), "the counters card says all are 0")
        shot(h, d, "overview")

        # The service page is open before the service exists, and stays open.
        d.get("http://%s/ui/#/service/web" % n1.http)
        wait_dom(h, d, lambda: "no instances" in (text_of(d, "#instances-table") or ""),
                 "the empty service page")
        marker = js(d, "window.__still_same_page = 1; return 1;")
        body = {"id": "web-1", "service": "web", "address": "10.0.0.5", "port": 8080,
                "tags": ["v1", "primary"],
                "meta": {"version": "1.2.3", "note": EVIL, "zone": "eu-1"},
                "checks": [{"http": "http://127.0.0.1:%d/health" % backend.port,
                            "interval": "200ms", "timeout": "100ms"}]}
        n2.post("/v1/register", body)
        t_reg = time.monotonic()
        wait_dom(h, d, lambda: text_of(d, '#instances-table tr[data-id="web-1"] .status') == "passing",
                 "web-1 (registered on n2) to show passing on n1's open page")
        h.note("registered on n2 -> passing on n1's page: %.2f s (check interval 200 ms)" % (time.monotonic() - t_reg))
        check(js(d, "return window.__still_same_page;") == marker, "the page was reloaded")

        # Metadata is shown as text and runs nothing.
        meta = text_of(d, '#instances-table tr[data-id="web-1"] .meta') or ""
        check(EVIL in meta, lambda: "metadata not shown verbatim: %r" % meta)
        check(not d.find_elements(By.CSS_SELECTOR, "#instances-table script, #instances-table img"),
              "metadata became elements")
        check(js(d, "return window.__pwned === undefined;"), "metadata ran as script")
        tags = text_of(d, '#instances-table tr[data-id="web-1"] .tags')
        check(tags == "v1primary", "tags %r" % tags)
        # its raw JSON, shown in place, is text too
        d.find_element(By.CSS_SELECTOR, '#instances-table tr[data-id="web-1"] button.link').click()
        wait_dom(h, d, lambda: '"owner": "n2"' in (text_of(d, "#instances-table pre.raw") or ""), "raw JSON")
        check(js(d, "return window.__pwned === undefined;"), "raw JSON ran as script")
        shot(h, d, "service")

        # The check fails: critical on the page, with the check's output.
        backend.status = 500
        t_fail = time.monotonic()

        def n2_critical():
            doc = n1.get("/v1/instances/web?all=1")
            return any(i["status"] == "critical" for i in doc["instances"])
        wait_dom(h, d, lambda: text_of(d, '#instances-table tr[data-id="web-1"] .status') == "critical",
                 "web-1 to turn critical on the page")
        h.note("backend fails -> critical on the page: %.2f s" % (time.monotonic() - t_fail))
        check(n2_critical(), "the page says critical before n1's API does")
        checks = text_of(d, '#instances-table tr[data-id="web-1"] .checks') or ""
        check("critical" in checks and "127.0.0.1:%d" % backend.port in checks,
              lambda: "check cell %r" % checks)
        d.find_element(By.CSS_SELECTOR, "#instance-filter-status option[value='']")
        js(d, "const s = document.getElementById('instance-filter-status'); s.value = 'passing';"
              "s.dispatchEvent(new Event('change'));")
        wait_dom(h, d, lambda: not d.find_elements(By.CSS_SELECTOR, '#instances-table tr[data-id="web-1"]'),
                 "the status filter to hide the critical instance")
        js(d, "const s = document.getElementById('instance-filter-status'); s.value = '';"
              "s.dispatchEvent(new Event('change'));")
        check(js(d, "return window.__still_same_page;") == marker, "the page was reloaded")

        # Services list (navigation inside the page, no reload).
        js(d, "location.hash = '#/services';")
        wait_dom(h, d, lambda: text_of(d, '#services-table tr[data-service="web"] td:nth-child(4)') == "1",
                 "the services page to list web with 1 critical")
        shot(h, d, "services")

        # kill -9 n3: suspect, then dead, on the members page.
        js(d, "location.hash = '#/members';")
        wait_dom(h, d, lambda: text_of(d, '#members-table tr[data-name="n3"] .status') == "alive",
                 "n3 alive on the members page")
        n3.kill9()
        t_kill = time.monotonic()
        seen = []

        def n3_status():
            s = text_of(d, '#members-table tr[data-name="n3"] .status')
            if s and (not seen or seen[-1][0] != s):
                seen.append((s, time.monotonic() - t_kill))
            return s
        wait_dom(h, d, lambda: n3_status() == "dead", "n3 to show dead", timeout=60)
        statuses = [s for s, _ in seen]
        check("suspect" in statuses and statuses.index("suspect") < statuses.index("dead"),
              lambda: "n3 went %r on the page, not suspect then dead" % seen)
        h.note("after kill -9 of n3 the page showed: %s" % ", ".join("%s at %.2f s" % x for x in seen))
        check("dead" in (js(d, "return document.querySelector('#members-table tr[data-name=\"n3\"]').className;") or ""),
              "the dead row is not highlighted")
        check(js(d, "return window.__still_same_page;") == marker, "the page was reloaded")
        # the name filter
        js(d, "const i = document.getElementById('member-filter-name'); i.value = 'n2';"
              "i.dispatchEvent(new Event('input'));")
        wait_dom(h, d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#members-table tbody tr")) == 1,
                 "the name filter to keep one member")
        js(d, "const i = document.getElementById('member-filter-name'); i.value = '';"
              "i.dispatchEvent(new Event('input'));")
        wait_dom(h, d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#members-table tbody tr")) == 3,
                 "all three members again")
        shot(h, d, "members")

        js(d, "location.hash = '#/overview';")
        wait_dom(h, d, lambda: text_of(d, "#count-dead") == "1" and text_of(d, "#count-alive") == "2",
                 "the overview to count 2 alive and 1 dead")
        check(len(d.find_elements(By.CSS_SELECTOR, "#member-grid .m.dead")) == 1, "the grid has 1 dead square")
        shot(h, d, "overview-after-kill")

        # the browser console saw no errors (a CSP violation would show here)
        errs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        check(not errs, lambda: "browser console errors: %r" % errs)
    finally:
        d.quit()
        backend.close()


class TokenProxy:
    """Stands in for an agent with an HTTP token (issue 9 adds that to the
    agent): /v1/* wants `Authorization: Bearer TOKEN`, else 401; the page's
    own files pass. Everything is forwarded to the real agent."""

    def __init__(self, agent, token):
        self.seen = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                auth = self.headers.get("Authorization")
                if self.path.startswith("/v1/"):
                    outer.seen.append(auth)
                    if auth != "Bearer " + token:
                        return self.answer(401, "application/json", b'{"error":"token required"}', {})
                host, port = agent.http.rsplit(":", 1)
                c = http.client.HTTPConnection(host, int(port), timeout=90)
                try:
                    c.request("GET", self.path)
                    r = c.getresponse()
                    body = r.read()
                    self.answer(r.status, r.getheader("Content-Type") or "application/octet-stream",
                                body, {k: v for k, v in r.getheaders()
                                       if k.lower() in ("etag", "cache-control", "content-security-policy")})
                finally:
                    c.close()

            def answer(self, status, ctype, body, extra):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the page dropped a blocking query

        self.srv = S(("127.0.0.1", 0), H)
        self.addr = "127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@test("behind a token the page asks for it, keeps it in sessionStorage only and sends it as Bearer")
def ui_token(h):
    a = h.agent("t1")
    proxy = TokenProxy(a, "s3cret")
    d = browser(tempfile.mkdtemp(prefix="ui-profile-", dir=h.tmp))
    try:
        d.get("http://%s/ui/" % proxy.addr)
        wait_dom(h, d, lambda: js(d, "return !document.getElementById('token-dialog').hidden;"),
                 "the token dialog")
        check(text_of(d, "#count-alive") == "–", "data shown without a token")
        d.find_element(By.ID, "token-input").send_keys("wrong")
        d.find_element(By.CSS_SELECTOR, "#token-form button").click()
        wait_dom(h, d, lambda: "refused" in (text_of(d, "#token-error") or "") and
                 js(d, "return !document.getElementById('token-dialog').hidden;"),
                 "the dialog again, saying the token was refused")
        d.find_element(By.ID, "token-input").send_keys("s3cret")
        d.find_element(By.CSS_SELECTOR, "#token-form button").click()
        wait_dom(h, d, lambda: text_of(d, "#count-alive") == "1", "the overview with the token")
        check(js(d, "return document.getElementById('token-dialog').hidden;"), "the dialog stayed open")
        check(js(d, "return sessionStorage.getItem('shoal-token');") == "s3cret", "not in sessionStorage")
        check(js(d, "return localStorage.length;") == 0 and js(d, "return document.cookie;") == "",
              "the token leaked into localStorage or a cookie")
        check("Bearer wrong" in proxy.seen and "Bearer s3cret" in proxy.seen and proxy.seen[0] is None,
              lambda: "Authorization headers seen: %r" % proxy.seen[:10])
        shot(h, d, "token-overview")
    finally:
        d.quit()
        proxy.close()


if __name__ == "__main__":
    run_tests()

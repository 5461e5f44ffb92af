"""test_fleet.py -- running shoal as a fleet: config files, the environment,
--print-config, --help from the flag table, joins that fail with a reason,
JSON logs, /v1/info and /metrics additions, and every bad-input case of
issue 12 with its message and exit status.

The DNS-seeded cluster is in test_fleet_dns.py (it needs a mount namespace).

Run: /usr/bin/python3 test_fleet.py --shoal build/shoal [-k NAME]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import FAST, check, free_port, http_request, run_tests, test  # noqa: E402


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def expect(r, rc, *patterns):
    """r exited rc and stderr matches every regex."""
    check(r.rc == rc, lambda: "want exit %d: %r" % (rc, r))
    for p in patterns:
        check(re.search(p, r.err), lambda: "stderr lacks /%s/: %r" % (p, r))


def print_config(h, args, env=None):
    r = h.cli(["agent", "--print-config"] + args, env=env)
    check(r.rc == 0, lambda: "--print-config failed: %r" % r)
    rows = {}
    for line in r.out.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split(None, 2)
        rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return rows


# ---------------------------------------------------------------- configuration

@test("sources merge: defaults < config files < environment < flags, with where each came from")
def t_precedence(h):
    d = os.path.join(h.tmp, "conf.d")
    os.makedirs(d)
    write(os.path.join(d, "10-base.json"), json.dumps({
        "name": "from-file", "data_dir": "/tmp/d-file", "probe-interval": "2s",
        "retry-join": ["seeds.example:7946", "10.0.0.2:7946"], "gossip_fanout": 5,
        "http": "127.0.0.1:7001"}))
    write(os.path.join(d, "20-over.json"), json.dumps({"probe_interval": 3000}))
    write(os.path.join(d, "ignored.txt"), "not json, not read")
    rows = print_config(h, ["--config-file", d, "--http", "127.0.0.1:7003"],
                        env={"SHOAL_HTTP": "127.0.0.1:7002", "SHOAL_NAME": "from-env"})
    check(rows["name"] == ("from-env", "environment SHOAL_NAME"), rows["name"])
    check(rows["http"] == ("127.0.0.1:7003", "flag --http"), rows["http"])
    check(rows["data-dir"][0] == "/tmp/d-file" and
          rows["data-dir"][1].endswith('10-base.json: key "data_dir"'), rows["data-dir"])
    check(rows["probe-interval"][0] == "3000" and "20-over.json" in rows["probe-interval"][1],
          rows["probe-interval"])
    check(rows["retry-join"][0] == "seeds.example:7946,10.0.0.2:7946", rows["retry-join"])
    check(rows["gossip-fanout"][0] == "5", rows["gossip-fanout"])
    check(rows["bind"] == ("127.0.0.1:7946", "default"), rows["bind"])
    # Repeatable flags from the environment are comma-separated; flags win whole.
    rows = print_config(h, ["--config-file", d, "--retry-join", "a.example:1"],
                        env={"SHOAL_RETRY_JOIN": "b.example:2,c.example:3"})
    check(rows["retry-join"] == ("a.example:1", "flag --retry-join"), rows["retry-join"])
    rows = print_config(h, ["--config-file", d], env={"SHOAL_RETRY_JOIN": "b.example:2,c.example:3",
                                                      "SHOAL_CONFIG_FILE": "/nonexistent"})
    check(rows["retry-join"] == ("b.example:2,c.example:3", "environment SHOAL_RETRY_JOIN"),
          rows["retry-join"])


@test("an agent runs from a config file alone and the environment")
def t_file_only(h):
    port, hport = free_port(), free_port()
    data = os.path.join(h.tmp, "data")
    conf = write(os.path.join(h.tmp, "a.json"), json.dumps({
        "name": "cf1", "bind": "127.0.0.1:%d" % port, "data_dir": data,
        "probe-interval": "200ms", "probe-timeout": "100ms", "dns": "off"}))
    log = open(os.path.join(h.tmp, "log"), "wb")
    env = dict(os.environ, SHOAL_HTTP="127.0.0.1:%d" % hport)
    p = subprocess.Popen([h.shoal, "agent", "--config-file", conf], env=env, stdout=log,
                         stderr=log)
    try:
        def up():
            st, doc, _, _ = http_request("127.0.0.1:%d" % hport, "GET", "/v1/info", timeout=2)
            return st == 200 and doc
        from harness import wait_until
        doc = wait_until(up, 20, what="the agent from a.json to answer")
        check(doc["name"] == "cf1", doc)
        check(doc["addresses"] == {"bind": "127.0.0.1:%d" % port,
                                   "http": "127.0.0.1:%d" % hport, "dns": None}, doc)
        check(os.path.exists(os.path.join(data, "identity.key")), "data_dir from the file unused")
    finally:
        p.terminate()
        p.wait(10)
        log.close()


@test("config file mistakes name the file, the key and the reason (exit 2)")
def t_file_errors(h):
    def run(obj_text, *patterns, env=None):
        path = write(os.path.join(h.tmp, "bad-%s.json" % h.uniq()), obj_text)
        r = h.cli(["agent", "--config-file", path, "--data-dir", h.tmp], env=env)
        expect(r, 2, re.escape(path), *patterns)
    run('{"nmae": "x"}', r'key "nmae": unknown key')
    run('{"probe_interval": "soon"}', r'key "probe_interval": bad value \'soon\' for '
        r'--probe-interval: expected a duration')
    run('{"name": "bad name!"}', r'key "name": bad value .* must be 1-63')
    run('{"name": ["a", "b"]}', r'key "name": --name takes one value, not an array')
    run('{"retry-join": [true]}', r'key "retry-join": item 0: expected a string or an integer')
    run('{"probe-interval": 1.5}', r'expected a string or an integer, got a fraction')
    run('{"retry-join": ["nohost"]}', r'bad value \'nohost\' for --retry-join: expected HOST:PORT')
    run('{"config-file": "x.json"}', r'--config-file cannot be set in a config file')
    run('{"data-dir": "/a", "data_dir": "/b"}', r'already set in this file')
    run('{"name": "a", "name": "b"}', r'duplicate object key')
    run('[1, 2]', r'expected a JSON object of flag names, got an array')
    run('{"name": ', r'line 1 column')
    # probe-timeout >= probe-interval names where the timeout came from
    run('{"probe-timeout": "2s"}', r'key "probe-timeout": bad value \'2s\' for --probe-timeout: '
        r'must be shorter than --probe-interval')
    r = h.cli(["agent", "--config-file", os.path.join(h.tmp, "missing.json")])
    expect(r, 2, r"missing.json: No such file or directory")
    r = h.cli(["agent", "--data-dir", h.tmp], env={"SHOAL_GOSSIP_FANOUT": "lots"})
    expect(r, 2, r"SHOAL_GOSSIP_FANOUT: bad value 'lots' for --gossip-fanout: expected a whole")
    r = h.cli(["agent"], env={"SHOAL_DATA_DIR": ""})
    expect(r, 2, r"SHOAL_DATA_DIR: bad value '' for --data-dir: must not be empty")


@test("a FIFO as a config file or in a config directory is refused or skipped, never waited on")
def t_fifo(h):
    d = os.path.join(h.tmp, "conf.d")
    os.makedirs(d)
    os.mkfifo(os.path.join(d, "00-fifo.json"))
    write(os.path.join(d, "10-a.json"), '{"name": "after-fifo"}')
    r = h.cli(["agent", "--print-config", "--config-file", d], timeout=10)
    check(r.rc == 0 and re.search(r"00-fifo.json: skipped: not a regular file", r.err),
          lambda: "%r" % r)
    check(re.search(r"^name\s+after-fifo", r.out, re.M), lambda: "%r" % r)
    r = h.cli(["agent", "--config-file", os.path.join(d, "00-fifo.json")], timeout=10)
    expect(r, 2, r"00-fifo.json: not a regular file")


@test("--help describes every flag of the table, with defaults; -dev names itself")
def t_help(h):
    r = h.cli(["agent", "--help"])
    check(r.rc == 0, lambda: "%r" % r)
    flags = re.findall(r"^  --([a-z0-9-]+)", r.out, re.M)
    check(len(flags) >= 30, lambda: "too few flags listed: %r" % flags)
    check("(no description)" not in r.out, lambda: "a flag has no description:\n" + r.out)
    for f in ("config-file", "print-config", "retry-join", "retry-max", "log-format", "join"):
        check(f in flags, "--%s missing from --help" % f)
    check(re.search(r"--bind IP:PORT .*\(default 127\.0\.0\.1:7946\)", r.out), r.out)
    # every flag listed is also accepted as a SHOAL_ variable and a file key
    rows = print_config(h, [])
    for f in flags:
        if f not in ("help", "print-config"):
            check(f in rows, "--%s not in --print-config" % f)
    # the bad-argument messages of issue 12 name the argument itself
    expect(h.cli(["agent", "-dev"]), 2, r"unknown flag '-dev'")
    expect(h.cli(["agent", "--name", "t1", "-dev"]), 2, r"unknown flag '-dev'")
    expect(h.cli(["agent", "--name", "t1", "stray"]), 2, r"unexpected argument 'stray'")
    expect(h.cli(["agent", "--nmae", "t1"]), 2, r"unknown flag '--nmae'")
    expect(h.cli(["agent", "--name"]), 2, r"--name needs a value")
    expect(h.cli(["agent", "--print-config=yes"]), 2, r"--print-config takes no value")


# ---------------------------------------------------------------- keys

@test("key file errors say permission denied, a directory, or the expected format (exit 1)")
def t_key_errors(h):
    key = h.keygen()
    data = os.path.join(h.tmp, "data-nobody")
    os.makedirs(data)
    os.chmod(data, 0o777)
    os.chmod(h.tmp, 0o711)  # nobody may pass through to its data dir
    os.chmod(key, 0o600)  # root's; nobody cannot read it
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv:
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", h.shoal, "agent",
                "--name", "k1", "--data-dir", data, "--cluster-key", key,
                "--bind", "127.0.0.1:%d" % free_port(), "--http", "127.0.0.1:%d" % free_port(),
                "--dns", "off"]
        p = subprocess.run(argv, capture_output=True, timeout=20)
        err = p.stderr.decode()
        check(p.returncode == 1 and "cannot load cluster key" in err and
              "Permission denied" in err, lambda: "exit %d: %s" % (p.returncode, err))
    else:
        h.note("not root or no setpriv: the permission case was not run")
    garbage = write(os.path.join(h.tmp, "garbage.key"), "hello\n")
    base = ["agent", "--name", "k2", "--data-dir", os.path.join(h.tmp, "d2"), "--dns", "off",
            "--bind", "127.0.0.1:%d" % free_port(), "--http", "127.0.0.1:%d" % free_port()]
    expect(h.cli(base + ["--cluster-key", garbage]), 1,
           r"cannot load cluster key '.*garbage.key': not a key file of this kind: expected "
           r"one line 'shoal-cluster-key-v1 <44 base64 characters>'")
    expect(h.cli(base + ["--cluster-key", h.tmp]), 1, r"cannot load cluster key .*: is a directory")
    d3 = os.path.join(h.tmp, "d3")
    os.makedirs(os.path.join(d3, "identity.key"))
    base[4] = d3
    expect(h.cli(base), 1, r"identity.key: is a directory")


# ---------------------------------------------------------------- joins

@test("shoal join to an address where nothing listens exits 1 with the reason")
def t_join_fails(h):
    a = h.agent("j1", flags=FAST + ["--dns", "off"])
    dead = "127.0.0.1:%d" % free_port()
    t0 = time.monotonic()
    r = h.cli(["join", dead, "--wait", "1500ms", "--http", a.http])
    expect(r, 1, r"no answer within 1\.5s from " + re.escape(dead))
    check(time.monotonic() - t0 < 15, "join took too long")
    r = h.cli(["join", "no-such-host.invalid:7946", "--wait", "1s", "--http", a.http])
    expect(r, 1, r"cannot resolve no-such-host\.invalid")
    expect(h.cli(["join", "bad host:1", "--http", a.http]), 2, r"bad address 'bad host:1'")
    expect(h.cli(["join", "x:1", "--wait", "2m", "--http", a.http]), 2, r"--wait")
    # the agent logged the failed attempt and did not claim to have joined
    check(re.search(r"api join attempt 1 of 1 through %s failed: no answer" % re.escape(dead),
                    a.log_text()), lambda: a.log_tail())
    check(a.info()["members"]["alive"] == 1, "a failed join changed the view")
    # a join that works: through a host name, exit 0
    b = h.agent("j2", flags=FAST + ["--dns", "off"])
    port = b.bind.rsplit(":", 1)[1]
    r = h.cli(["join", "localhost:" + port, "--http", a.http])
    check(r.rc == 0 and "joined through 127.0.0.1:" + port in r.out, lambda: "%r" % r)
    h.wait_view([a, b], {"j1": "alive", "j2": "alive"})
    # the API refuses what the CLI refuses
    st, doc, _, _ = a.request("POST", "/v1/join", {"addrs": ["bad host:1"]})
    check(st == 400 and "addrs[0]" in doc["error"], (st, doc))
    st, doc, _, _ = a.request("POST", "/v1/join", {"addrs": ["x:1"], "wait": "2m"})
    check(st == 400 and "wait" in doc["error"], (st, doc))
    st, doc, _, _ = a.request("POST", "/v1/join", {"addrs": ["x:1"], "extra": 1})
    check(st == 400 and "extra" in doc["error"], (st, doc))


@test("--retry-join logs every failed attempt with its reason and gives up after --retry-max")
def t_retry_max(h):
    dead = "127.0.0.1:%d" % free_port()
    a = h.agent("r1", flags=FAST + ["--dns", "off", "--retry-join", dead, "--retry-join",
                                    "no-such-host.invalid:1", "--retry-max", "2",
                                    "--retry-interval", "100ms"])
    rc = a.wait_exit(30)
    check(rc == 1, lambda: "exit %s\n%s" % (rc, a.log_tail()))
    log = a.log_text()
    check(re.search(r"retry-join attempt 1 through .* failed: no answer within 2\.5s from " +
                    re.escape(dead) + r"; cannot resolve no-such-host\.invalid", log), log)
    check("retry-join attempt 2 of 2" in log and "giving up" in log, log)
    check("could not join the cluster" in log, log)
    # --join alone keeps running after its attempts
    b = h.agent("r2", flags=FAST + ["--dns", "off", "--join", dead, "--retry-max", "1"])
    b.wait_until(lambda: "running alone" in b.log_text(), 20, "give up and run alone")
    check(b.running(), "--join alone must not stop the agent")


# ---------------------------------------------------------------- checks (one rule)

@test("TCP check targets must be IP:PORT in the API as in the CLI; CLI names timeout >= interval")
def t_check_rules(h):
    a = h.agent("c1", flags=FAST + ["--dns", "off"])
    st, doc, _, _ = a.request("POST", "/v1/register", {
        "id": "db-1", "service": "db", "address": "10.0.0.1", "port": 5432,
        "checks": [{"tcp": "db.local:5432"}]})
    check(st == 400 and "IP:PORT" in doc["error"] and "host name" in doc["error"], (st, doc))
    base = ["register", "--service", "db", "--id", "db-1", "--address", "10.0.0.1", "--port",
            "5432", "--http", a.http]
    expect(h.cli(base + ["--check-tcp", "db.local:5432"]), 2, r"bad --check-tcp 'db.local:5432'")
    expect(h.cli(base + ["--check-tcp", "127.0.0.1:5432", "--interval", "1s", "--timeout",
                         "1s"]), 2, r"check 1 \(--check-tcp 127\.0\.0\.1:5432.*timeout must .*"
           r"less than its interval")
    expect(h.cli(base + ["--check-http", "http://127.0.0.1:1/", "--interval", "1s",
                         "--timeout", "5s"]), 2, r"check 1 .*--timeout 5000ms")
    check(a.get("/v1/instances/db?all=1")["instances"] == [], "something was registered")


@test("service files: a FIFO in --config-dir is skipped with a log line; the agent starts")
def t_config_dir_fifo(h):
    d = os.path.join(h.tmp, "svc")
    os.makedirs(d)
    os.mkfifo(os.path.join(d, "pipe.service"))
    write(os.path.join(d, "web.service"),
          "[service]\nid = web-1\nservice = web\naddress = 10.0.0.5\nport = 80\n")
    a = h.agent("f1", flags=FAST + ["--dns", "off", "--config-dir", d])
    check("pipe.service: skipped: not a regular file" in a.log_text(), lambda: a.log_tail())
    check(len(a.get("/v1/instances/web")["instances"]) == 1, "web-1 not loaded")


# ---------------------------------------------------------------- logs, info, metrics

@test("--log-format json writes one object per line with ts, level, subsystem, msg, fields")
def t_json_logs(h):
    a = h.agent("l1", flags=FAST + ["--dns", "off", "--log-format", "json"])
    b = h.agent("l2", flags=FAST + ["--dns", "off"], join=[a])
    h.wait_view([a, b], {"l1": "alive", "l2": "alive"})
    lines = [l for l in a.log_text().splitlines() if not l.startswith("===")]
    check(len(lines) >= 3, lines)
    for l in lines:
        doc = json.loads(l)
        check(set(doc) == {"ts", "level", "subsystem", "msg", "fields"}, doc)
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", doc["ts"]), doc)
        check(doc["fields"]["node"] == "l1" and doc["fields"]["pid"] == a.proc.pid, doc)
    check(any(json.loads(l)["subsystem"] == "swim" and "l2" in json.loads(l)["msg"]
              for l in lines), "no swim line about l2")


@test("/v1/info has version, build, uptime_s, addresses; /metrics has build and process figures")
def t_info_metrics(h):
    a = h.agent("m1", flags=FAST + ["--dns", "127.0.0.1:%d" % free_port()])
    doc = a.info()
    ver = h.cli(["version"]).out.split()[1]
    check(doc["version"] == ver, doc)
    check(isinstance(doc["build"], str) and doc["build"], doc)
    check(isinstance(doc["uptime_s"], int) and doc["uptime_s"] >= 0, doc)
    check(set(doc["addresses"]) == {"bind", "http", "dns"} and doc["addresses"]["http"] == a.http
          and doc["addresses"]["bind"] == a.bind and doc["addresses"]["dns"], doc)
    time.sleep(1.1)
    check(a.info()["uptime_s"] >= 1, "uptime does not move")
    st, _, raw, _ = a.request("GET", "/metrics")
    text = raw.decode()
    check(re.search(r'^shoal_build_info\{version="%s",build="[^"]+"\} 1$' % re.escape(ver), text,
                    re.M), text[-2000:])
    rss = re.search(r"^process_resident_memory_bytes (\d+)$", text, re.M)
    fds = re.search(r"^process_open_fds (\d+)$", text, re.M)
    cpu = re.search(r"^process_cpu_seconds_total ([0-9.]+)$", text, re.M)
    check(rss and fds and cpu, text[-2000:])
    with open("/proc/%d/status" % a.proc.pid) as f:
        vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
    check(abs(int(rss.group(1)) - vmrss) < 8 * 1024 * 1024, (rss.group(1), vmrss))
    nfd = len(os.listdir("/proc/%d/fd" % a.proc.pid))
    check(abs(int(fds.group(1)) - nfd) <= 3, (fds.group(1), nfd))
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=raw, capture_output=True)
        out = (p.stdout + p.stderr).decode()
        check("error" not in out.lower(), out)


if __name__ == "__main__":
    run_tests()

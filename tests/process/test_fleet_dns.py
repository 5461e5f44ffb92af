"""test_fleet_dns.py -- a 3-agent cluster started from config files alone,
seeded by a DNS name, with a seed down at first.

The name is served by /etc/hosts inside this test's own mount namespace
(the file re-runs itself under `unshare -m` and bind-mounts a temp file over
/etc/hosts), so nothing outside the test sees it. seeds.shoal.test first
names 127.0.0.11 only (n1, not started yet); n2 (127.0.0.12) and n3 retry,
logging each failure; then the name gains 127.0.0.12 and n3 joins n2 at its
next attempt (the name is resolved again at every attempt); then n1 starts
and all three converge.

Run (as root): /usr/bin/python3 test_fleet_dns.py --shoal build/shoal
"""

import json
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Agent, check, free_port, run_tests, test  # noqa: E402

NAME = "seeds.shoal.test"
HOSTS = None  # the file bind-mounted over /etc/hosts


def reexec_in_mount_namespace():
    if os.environ.get("SHOAL_TEST_MOUNTNS") == "1":
        return
    if os.geteuid() != 0:
        print("ok skipped: needs root for a private mount namespace (unshare -m)")
        print("1 passed, 0 failed")
        sys.exit(0)
    env = dict(os.environ, SHOAL_TEST_MOUNTNS="1")
    os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable] +
               sys.argv, env)


def set_hosts(*ips):
    # Rewritten in place: the bind mount holds this inode.
    with open(HOSTS, "w") as f:
        f.write("127.0.0.1 localhost\n")
        for ip in ips:
            f.write("%s %s\n" % (ip, NAME))


class FileAgent(Agent):
    """An agent whose every setting comes from one config file."""

    def __init__(self, h, name, settings):
        super().__init__(h, name, bind=settings["bind"], http="127.0.0.1:%d" % free_port())
        self.conf = os.path.join(h.tmp, name + ".json")
        settings = dict(settings, name=name, http=self.http, data_dir=self.data_dir)
        with open(self.conf, "w") as f:
            json.dump(settings, f)

    def argv(self):
        return [self.h.shoal, "agent", "--config-file", self.conf]


@test("3 agents from config files join through a DNS name; failed attempts are logged")
def t_dns_seeded(h):
    global HOSTS
    HOSTS = os.path.join(h.tmp, "hosts")
    set_hosts("127.0.0.11")
    subprocess.run(["mount", "--bind", HOSTS, "/etc/hosts"], check=True)
    try:
        port = free_port("127.0.0.11")
        common = {
            "retry-join": ["%s:%d" % (NAME, port)],
            "retry-interval": "200ms", "retry-max-interval": "1s",
            "probe-interval": "200ms", "probe-timeout": "100ms", "gossip-interval": "50ms",
            "pushpull-interval": "2s", "dns": "off", "log-level": "info",
        }
        n1 = FileAgent(h, "n1", dict(common, bind="127.0.0.11:%d" % port))
        n2 = FileAgent(h, "n2", dict(common, bind="127.0.0.12:%d" % port))
        n3 = FileAgent(h, "n3", dict(common, bind="127.0.0.1:%d" % free_port()))
        h.agents += [n1, n2, n3]
        n2.start()
        n3.start()
        seed1 = re.escape("127.0.0.11:%d" % port)
        for a in (n2, n3):
            a.wait_until(lambda a=a: re.search(
                r"retry-join attempt 1 through %s:%d failed: no answer within 2\.5s from %s" % (
                    re.escape(NAME), port, seed1), a.log_text()), 20, "a logged failed attempt")
        check(n2.info()["members"]["alive"] == 1 and n3.info()["members"]["alive"] == 1,
              "joined with no seed up")
        # The name now also names n2: n3's next attempt finds it.
        set_hosts("127.0.0.11", "127.0.0.12")
        h.wait_view([n2, n3], {"n2": "alive", "n3": "alive"}, timeout=30,
                    what="n3 to join n2 once the name names it")
        check(re.search(r"retry-join attempt \d+: 127\.0\.0\.12:%d answered" % port,
                        n3.log_text()), lambda: n3.log_tail())
        # The first seed comes up: everyone converges.
        n1.start()
        h.wait_view([n1, n2, n3], {"n1": "alive", "n2": "alive", "n3": "alive"}, timeout=40,
                    what="all three alive everywhere")
        for a in (n1, n2, n3):
            a.wait_until(lambda a=a: "joined the cluster through" in a.log_text(), 20,
                         "the joiner to finish")
        fails = len(re.findall(r"retry-join attempt \d+ .* failed", n2.log_text()))
        h.note("n2 logged %d failed attempts before n1 came up" % fails)
    finally:
        subprocess.run(["umount", "/etc/hosts"])


if __name__ == "__main__":
    reexec_in_mount_namespace()
    run_tests()

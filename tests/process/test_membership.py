"""test_membership.py -- SWIM membership with real agents on loopback.

Each behaviour starts its own cluster (4-6 agents, one cluster key, the short
protocol settings of harness.FAST) and checks every node's /v1/members:
join through one seed, kill -9 detection, graceful leave (SIGTERM and
`shoal leave`), restart under the same name, a node with another cluster
key kept out, garbage and tampered datagrams survived, a name conflict.

Run: /usr/bin/python3 test_membership.py --shoal build/shoal [-k NAME]
"""

import base64
import itertools
import os
import select
import socket
import stat
import sys
import time

sys.dont_write_bytecode = True  # keep tests/process/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ed25519  # noqa: E402
from harness import (DEADLINE, check, fail, hostport, test, wait_until,  # noqa: E402
                     run_tests, free_port)

REASONS = ["too_large", "truncated", "unsigned", "bad_signature", "not_endorsed",
           "replay", "decode", "invalid"]


def statuses(observers, name):
    """name's status in each observer's view ({observer: status or None})."""
    return {o.name: o.members().get(name, (None,))[0] for o in observers}


# ---------------------------------------------------------------- (1) join

@test("five nodes join through one seed and every node sees all five alive")
def t_join(h):
    key = h.keygen()
    nodes = h.cluster(5, key)
    infos = {a.name: a.info() for a in nodes}
    for a in nodes:
        ms = a.members_list()
        names = [m["name"] for m in ms]
        check(names == sorted(names), "%s: /v1/members not sorted by name: %s" % (a.name, names))
        for m in ms:
            peer = next(b for b in nodes if b.name == m["name"])
            check(m["addr"] == peer.addr, "%s lists %s at %s, but it is bound to %s" % (
                a.name, m["name"], m["addr"], peer.addr))
            check(m["generation"] == infos[peer.name]["generation"],
                  "%s lists %s with generation %s, its own /v1/info says %s" % (
                      a.name, peer.name, m["generation"], infos[peer.name]["generation"]))
        i = infos[a.name]
        check(i["name"] == a.name and i["addr"] == a.addr,
              "%s: /v1/info name/addr %r/%r" % (a.name, i["name"], i["addr"]))
        check(i["members"]["alive"] == 5 and i["cluster_key"] is True,
              "%s: /v1/info members %r cluster_key %r" % (a.name, i["members"], i["cluster_key"]))
        drops = {k: v for k, v in i["drops"].items() if v}
        check(not drops, "%s dropped legitimate cluster traffic: %r" % (a.name, drops))


# ---------------------------------------------------------------- (2) kill -9

@test("kill -9 of one node: every other node marks it dead, and nobody else")
def t_kill(h):
    key = h.keygen()
    nodes = h.cluster(5, key)
    victim = nodes[2]
    others = [a for a in nodes if a is not victim]
    victim.kill9()
    t0 = time.monotonic()
    wrongly_dead = []

    def detected():
        ok = True
        for o in others:
            ms = o.members()
            for name, (st, _, _) in ms.items():
                if name != victim.name and st == "dead":
                    wrongly_dead.append((o.name, name))
            if ms.get(victim.name, (None,))[0] != "dead":
                ok = False
            if any(ms.get(b.name, (None,))[0] != "alive" for b in others):
                ok = False
        if wrongly_dead:
            fail("live nodes declared dead (observer, member): %s\n%s" % (
                sorted(set(wrongly_dead)), h.describe(others)))
        return ok
    wait_until(detected, DEADLINE, lambda: h.describe(others),
               "every other node to see %s dead and the rest alive" % victim.name)
    h.note("kill -9 detected by all 4 others in %.1f s" % (time.monotonic() - t0))
    for o in others:
        i = o.info()
        check(i["members"]["dead"] == 1 and i["members"]["alive"] == 4,
              "%s: /v1/info members %r" % (o.name, i["members"]))


# ---------------------------------------------------------------- (3) leave

@test("graceful leave by SIGTERM and by `shoal leave`: others see left, exit 0")
def t_leave(h):
    key = h.keygen()
    nodes = h.cluster(5, key)
    by_term, by_cli = nodes[3], nodes[4]
    stay = nodes[:3]

    def seen_left(gone, observers):
        def ok():
            sts = statuses(observers, gone.name)
            bad = {o: s for o, s in sts.items() if s == "dead"}
            if bad:
                fail("%s left gracefully but is listed dead by %s\n%s" % (
                    gone.name, sorted(bad), h.describe(observers)))
            return all(s == "left" for s in sts.values())
        return ok

    t0 = time.monotonic()
    rc = by_term.term(timeout=30)
    check(rc == 0, "%s exited with %s after SIGTERM (want 0)\n%s" % (
        by_term.name, rc, by_term.describe()))
    wait_until(seen_left(by_term, stay + [by_cli]), DEADLINE,
               lambda: h.describe(stay + [by_cli]), "%s to be seen left" % by_term.name)
    h.note("SIGTERM leave: exit + seen left by all in %.1f s" % (time.monotonic() - t0))

    t0 = time.monotonic()
    r = h.cli(["leave", "--http", by_cli.http])
    check(r.rc == 0, lambda: "`shoal leave` failed: %r" % r)
    rc = by_cli.wait_exit(timeout=30)
    check(rc == 0, "%s exited with %s after `shoal leave` (want 0)\n%s" % (
        by_cli.name, rc, by_cli.describe()))
    wait_until(seen_left(by_cli, stay), DEADLINE, lambda: h.describe(stay),
               "%s to be seen left" % by_cli.name)
    h.note("`shoal leave`: exit + seen left by all in %.1f s" % (time.monotonic() - t0))
    h.wait_view(stay, {"n1": "alive", "n2": "alive", "n3": "alive",
                       by_term.name: "left", by_cli.name: "left"})


# ---------------------------------------------------------------- (4) restart

@test("restart under the same name and data dir: alive with a higher generation everywhere")
def t_restart(h):
    key = h.keygen()
    nodes = h.cluster(5, key)
    slow, quick = nodes[1], nodes[3]          # restarted after / before detection
    for a in (slow, quick):
        kpath = os.path.join(a.data_dir, "identity.key")
        check(os.path.exists(kpath), "%s: no identity.key in its data dir" % a.name)
        mode = stat.S_IMODE(os.stat(kpath).st_mode)
        check(mode == 0o600, "%s: identity.key has mode %o, want 600" % (a.name, mode))
        check(os.path.exists(os.path.join(a.data_dir, "generation")),
              "%s: no generation file in its data dir" % a.name)
    gen0 = {a.name: a.info()["generation"] for a in (slow, quick)}

    # quick: kill -9 and start again at once, same name, data dir and ports.
    quick.kill9()
    quick.start()
    gq = quick.info()["generation"]
    check(gq > gen0[quick.name], "%s restarted with generation %s, before %s" % (
        quick.name, gq, gen0[quick.name]))
    t0 = time.monotonic()
    h.wait_view(nodes, {a.name: "alive" for a in nodes} | {quick.name: lambda v: v == ("alive", v[1], gq)},
                what="everyone to see %s alive at its new generation %d" % (quick.name, gq))
    h.note("quick restart seen everywhere in %.1f s" % (time.monotonic() - t0))
    t_quick = time.monotonic()

    # slow: kill -9, wait until everyone has declared it dead, then restart.
    slow.kill9()
    others = [a for a in nodes if a is not slow]
    t0 = time.monotonic()

    def slow_dead_quick_alive():
        ok = True
        for o in others:
            ms = o.members()
            q = ms.get(quick.name)
            if q is None or q[2] != gq or q[0] == "dead":
                fail("%s lists restarted %s as %r (want alive at generation %d)\n%s" % (
                    o.name, quick.name, q, gq, h.describe(others)))
            ok = ok and ms.get(slow.name, (None,))[0] == "dead"
        return ok
    wait_until(slow_dead_quick_alive, DEADLINE, lambda: h.describe(others),
               "everyone to see %s dead" % slow.name)
    h.note("kill -9 seen dead everywhere in %.1f s" % (time.monotonic() - t0))
    slow.start()
    gs = slow.info()["generation"]
    check(gs > gen0[slow.name], "%s restarted with generation %s, before %s" % (
        slow.name, gs, gen0[slow.name]))
    t0 = time.monotonic()
    h.wait_view(nodes, {a.name: "alive" for a in nodes} | {
        slow.name: lambda v: v[0] == "alive" and v[2] == gs,
        quick.name: lambda v: v[0] == "alive" and v[2] == gq},
        what="everyone to see %s alive at generation %d (over its dead self)" % (slow.name, gs))
    h.note("restart after death seen alive everywhere in %.1f s" % (time.monotonic() - t0))

    # The old selves' suspicions have had time to expire (max suspicion
    # timeout is 6 * 4 * 200 ms = 4.8 s): nobody may have buried the new ones.
    left = 5.5 - (time.monotonic() - t_quick)
    if left > 0:
        time.sleep(left)
    for o in nodes:
        ms = o.members()
        for a, g in ((quick, gq), (slow, gs)):
            check(ms.get(a.name, (None,))[0] == "alive" and ms[a.name][2] == g,
                  lambda: "%s lists %s as %r later on (want alive, generation %d)\n%s" % (
                      o.name, a.name, ms.get(a.name), g, h.describe(nodes)))


# ---------------------------------------------------------------- (5) cluster key

@test("a node with another cluster key (or none) stays out and changes no view")
def t_foreign_key(h):
    key = h.keygen()
    nodes = h.cluster(4, key)
    seeds = nodes[:2]
    base = {a.name: a.drops()["not_endorsed"] for a in nodes}
    views = {a.name: a.members() for a in nodes}

    other = h.keygen("other.key")
    intruder = h.agent("intruder", key=other, join=seeds)
    t0 = time.monotonic()

    def still_out(*strangers):
        for a in nodes:
            ms = a.members()
            check(not any(s.name in ms for s in strangers),
                  lambda: "%s lists an outsider: %r\n%s" % (a.name, ms, h.describe(nodes)))
        return True

    wait_until(lambda: still_out(intruder) and
               all(a.drops()["not_endorsed"] > base[a.name] for a in seeds),
               DEADLINE, lambda: h.describe(seeds + [intruder]),
               "both seeds to count the intruder's datagrams as not_endorsed")
    h.note("not_endorsed counted after %.1f s" % (time.monotonic() - t0))
    # The other way round: a member asked to join the intruder.
    nodes[2].post("/v1/join", {"addrs": [intruder.addr]})
    wait_until(lambda: still_out(intruder) and intruder.drops()["not_endorsed"] > 0, DEADLINE,
               lambda: h.describe([nodes[2], intruder]),
               "the intruder to drop the member's datagrams as not_endorsed")

    # A node with no cluster key at all (open) joining the keyed cluster.
    def refused(a):
        d = a.drops()
        return d["not_endorsed"] + d["unsigned"]
    base_open = {a.name: refused(a) for a in seeds}
    keyless = h.agent("keyless", join=seeds)
    wait_until(lambda: still_out(intruder, keyless) and
               all(refused(a) > base_open[a.name] for a in seeds), DEADLINE, lambda: h.describe(seeds + [keyless]),
               "both seeds to drop the keyless node's datagrams")

    # Let several join retries and push-pull rounds (every 2 s) go by.
    deadline = time.monotonic() + 4.5
    while True:
        for a in nodes:
            ms = a.members()
            check(ms == views[a.name] or (set(ms) == set(views[a.name]) and all(
                ms[n][0] == "alive" for n in ms)),
                lambda: "%s's view changed: %r -> %r\n%s" % (a.name, views[a.name], ms,
                                                             h.describe(nodes)))
        iv = intruder.members()
        check(list(iv) == ["intruder"] and iv["intruder"][0] == "alive",
              lambda: "the intruder's own view should hold only itself: %r\n%s" % (
                  iv, intruder.describe()))
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    for a in nodes:
        check(a.running(), "%s is not running\n%s" % (a.name, a.describe()))


# ---------------------------------------------------------------- (6) datagrams
# Envelope (src/wire/wire.h): magic "SH" | version 1 | flags | pk 32 | cert 64 |
# seq 8 | signature 64 | payload; the signature covers bytes 0..107 and the
# payload; the cert is the cluster key's signature over "shoal-cert-v1" || pk.

ENV = 172
OFF_FLAGS, OFF_PK, OFF_CERT, OFF_SEQ, OFF_SIG = 3, 4, 36, 100, 108
MAX_DGRAM = 1400


def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_uint(field, v):
    return pb_varint(field << 3) + pb_varint(v)


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(b)) + b


def pb_fields(buf):
    """Top-level fields of a protobuf message: [(field, value)]."""
    out, i = [], 0
    while i < len(buf):
        key, i = _pb_read_varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _pb_read_varint(buf, i)
        elif wt == 2:
            n, i = _pb_read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((f, v))
    return out


def _pb_read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def pb_member_update(name, addr, gen, inc, status, frm):
    ip, port = hostport(addr)
    a = pb_uint(1, 4) + pb_bytes(2, socket.inet_aton(ip)) + pb_uint(3, port)
    return (pb_bytes(1, name) + pb_bytes(2, a) + pb_uint(3, gen) + pb_uint(4, inc) +
            pb_uint(5, status) + pb_bytes(6, frm))


def seal(seed, cert, seq, payload, flags=1):
    pk = ed25519.public_key(seed)
    hdr = b"SH\x01" + bytes([flags]) + pk + cert + seq.to_bytes(8, "big")
    return hdr + ed25519.sign(seed, hdr + payload) + payload


def read_key_seed(path):
    """The 32-byte seed in a cluster key file, if the text holds one as a
    base64 or hex word; None otherwise."""
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    for word in text.split():
        for dec in (lambda w: base64.b64decode(w, validate=True), bytes.fromhex):
            try:
                b = dec(word)
            except ValueError:
                continue
            if len(b) in (32, 64):
                return b[:32]
    return None


def drop_delta(before, after):
    return {r: after.get(r, 0) - before.get(r, 0) for r in REASONS}


def assignable(items_ok, delta):
    """Can each dropped datagram be charged to one of its acceptable reasons
    so that the counters grew by exactly delta? (Gale/Hall condition.)"""
    if sum(delta.values()) != len(items_ok) or any(v < 0 for v in delta.values()):
        return False
    for k in range(1, len(REASONS) + 1):
        for S in itertools.combinations(REASONS, k):
            s = set(S)
            need = sum(1 for ok in items_ok if ok <= s)
            if need > sum(delta[r] for r in S):
                return False
    return True


class Injector:
    """Sends datagrams from one plain UDP socket and checks the targets'
    drop counters group by group. Flow-controlled: at most CHUNK datagrams
    per target are in flight before the target has counted them, so no
    socket buffer ever overflows (every datagram must be counted)."""

    CHUNK = 12

    def __init__(self, h, sock, targets):
        self.h, self.sock, self.targets = h, sock, targets
        self.log = []

    def send(self, data, target):
        self.sock.sendto(data, hostport(target.addr))

    def group(self, label, items, targets=None):
        """items: [(datagram, acceptable reasons, description)], each sent once
        to each target; each must be dropped exactly once, for a reason it
        allows."""
        targets = targets or self.targets
        before = {t.name: t.drops() for t in targets}
        sent = 0
        for i in range(0, len(items), self.CHUNK):
            chunk = items[i:i + self.CHUNK]
            for data, _, _ in chunk:
                for t in targets:
                    self.send(data, t)
            sent += len(chunk)
            wait_until(lambda: all(sum(drop_delta(before[t.name], t.drops()).values()) >= sent
                                   for t in targets), 20,
                       lambda: self._explain(label, items[:sent], targets, before),
                       "%s: each target to count the first %d datagrams as drops" % (label, sent))
        time.sleep(0.15)  # anything counted twice shows up now
        oks = [frozenset(ok) for _, ok, _ in items]
        for t in targets:
            d = drop_delta(before[t.name], t.drops())
            if not assignable(oks, d):
                fail("%s: %s's drop counters grew by %s\n%s" % (
                    label, t.name, {r: v for r, v in d.items() if v},
                    self._explain(label, items, [t], before)))
        self.log.append("%s: %d datagrams x %d targets" % (label, len(items), len(targets)))

    def _explain(self, label, items, targets, before):
        s = "  sent (per target), with the drop reasons each allows:\n"
        for data, ok, desc in items:
            s += "    %-48s len %4d -> %s\n" % (desc, len(data), "|".join(sorted(ok)))
        for t in targets:
            try:
                s += "  %s drops grew by %s\n" % (t.name, {
                    r: v for r, v in drop_delta(before[t.name], t.drops()).items() if v})
            except Exception as e:
                s += "  %s: /v1/info failed: %r\n" % (t.name, e)
        return s + self.h.describe(targets)


def snapshot(a):
    """name -> (addr, status, generation, incarnation) in a's view."""
    return {m["name"]: (m["addr"], m["status"], m["generation"], m["incarnation"])
            for m in a.members_list()}


def recv_datagrams(sock, want, timeout):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([sock], [], [], left)
        if r:
            data, src = sock.recvfrom(65536)
            got.append((data, src))
    return got


@test("random and tampered datagrams are dropped by reason and change no view")
def t_datagrams(h):
    rng = h.rng
    h.note("seed %d (SHOAL_SEED=%d replays it)" % (h.rng_seed, h.rng_seed))
    key = h.keygen()
    nodes = h.cluster(5, key)

    # A plain UDP socket posing as a seed: a new agent joining through it
    # sends us genuine signed push-pull requests.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", free_port()))
        trap = "127.0.0.1:%d" % sock.getsockname()[1]
        cap = h.agent("cap", key=key, join=[trap])
        got = recv_datagrams(sock, 2, 15)  # the first at once, the next after ~1 s
        check(got, lambda: "no datagram from an agent joining through %s within 15 s\n%s" % (
            trap, cap.describe()))
        caps = [d for d, src in got]
        for d in caps:
            check(len(d) >= ENV and d[:3] == b"SH\x01", "captured datagram does not look like "
                  "a shoal envelope: %r" % d[:8])
            f = dict(pb_fields(d[ENV:]))
            check(f.get(1) == 6 and f.get(4) == b"cap",
                  "captured datagram is not a push-pull request from cap: %r" % f)
            check(ed25519.verify(d[OFF_PK:OFF_PK + 32], d[:OFF_SIG] + d[ENV:], d[OFF_SIG:ENV]),
                  "captured datagram's signature does not verify as wire.h describes it")

        # Now let cap really join, so its own datagrams are old news to all.
        cap.post("/v1/join", {"addrs": [nodes[0].addr]})
        everyone = nodes + [cap]
        h.wait_view(everyone, {a.name: "alive" for a in everyone})
        views = {a.name: snapshot(a) for a in everyone}
        targets = nodes
        inj = Injector(h, sock, targets)
        D = max(caps, key=len)
        check(len(D) + 1 <= MAX_DGRAM, "captured datagram unexpectedly large (%d)" % len(D))

        def flip(i, mask=0x01):
            b = bytearray(D)
            b[i] ^= mask
            return bytes(b)

        # 1. garbage: random bytes, random lengths 0..2000 (never "SH" first).
        items = []
        lens = [0, 1, 2, 3, 4, 100, ENV - 1, ENV, ENV + 1, MAX_DGRAM, MAX_DGRAM + 1, 2000]
        lens += [rng.randrange(0, 2001) for _ in range(40)]
        for n in lens:
            b = bytes(rng.getrandbits(8) for _ in range(n))
            if b[:2] == b"SH":
                b = b"XH" + b[2:]
            ok = {"too_large"} if n > MAX_DGRAM else {"truncated", "unsigned"}
            items.append((b, ok, "garbage"))
        inj.group("garbage", items, everyone)

        # 2. single flipped bits and bytes in every part of a real datagram.
        sig_only = {"bad_signature"}
        items = [(flip(0), {"unsigned"}, "magic[0]"), (flip(1, 0xFF), {"unsigned"}, "magic[1]"),
                 (flip(2), {"unsigned"}, "version"),
                 (flip(OFF_FLAGS, 0x80), {"unsigned", "bad_signature", "not_endorsed"}, "flags 0x80"),
                 (flip(OFF_FLAGS, 0x01), {"unsigned", "bad_signature", "not_endorsed"}, "flags 0x01")]
        for i in (OFF_PK, OFF_PK + 17, OFF_CERT - 1):
            items.append((flip(i), {"bad_signature", "not_endorsed"}, "pk byte %d" % i))
        for i in (OFF_CERT, OFF_CERT + 31, OFF_SEQ - 1):
            items.append((flip(i), {"bad_signature", "not_endorsed"}, "cert byte %d" % i))
        for i in (OFF_SEQ, OFF_SEQ + 7):
            items.append((flip(i), sig_only, "seq byte %d" % i))
        for i in (OFF_SIG, OFF_SIG + 32, ENV - 1):
            items.append((flip(i), sig_only, "signature byte %d" % i))
        for i in sorted({ENV, (ENV + len(D)) // 2, len(D) - 1}):
            items.append((flip(i), sig_only, "payload byte %d" % i))
        for _ in range(6):
            i = rng.randrange(0, len(D))
            items.append((flip(i, 1 << rng.randrange(8)),
                          set(REASONS) - {"too_large", "truncated", "replay", "decode", "invalid"},
                          "random bit in byte %d" % i))
        inj.group("flipped", items)

        # 3. truncated and extended copies.
        items = [(D[:2], {"truncated", "unsigned"}, "first 2 bytes")]
        for n in (4, OFF_SIG, ENV - 1):
            items.append((D[:n], {"truncated"}, "first %d bytes" % n))
        items.append((D[:ENV], {"bad_signature", "truncated"}, "envelope without payload"))
        items.append((D[:-1], {"bad_signature", "truncated"}, "last byte cut"))
        items.append((D + b"\x00", sig_only, "one byte appended"))
        items.append((D + bytes(MAX_DGRAM - len(D)), sig_only, "padded to %d" % MAX_DGRAM))
        items.append((D + bytes(MAX_DGRAM + 1 - len(D)), {"too_large"}, "padded to %d" % (MAX_DGRAM + 1)))
        items.append((D + os.urandom(2000 - len(D)), {"too_large"}, "padded to 2000"))
        inj.group("truncated/extended", items)

        # 4. replays: every captured datagram, unmodified, twice. The first copy
        #    may pass (the sequence number can be new to a target that never
        #    saw it); the second is a replay; nothing may change.
        before = {t.name: t.drops() for t in targets}
        for t in targets:
            for d in caps:
                inj.send(d, t)
                inj.send(d, t)
        n = len(caps)
        wait_until(lambda: all(drop_delta(before[t.name], t.drops())["replay"] >= n
                               for t in targets), 20,
                   lambda: "".join("  %s drops grew by %s\n" % (t.name, {
                       r: v for r, v in drop_delta(before[t.name], t.drops()).items() if v})
                       for t in targets) + h.describe(targets),
                   "each target to count the resent captures as replays")
        time.sleep(0.15)
        for t in targets:
            d = drop_delta(before[t.name], t.drops())
            others = {r: v for r, v in d.items() if v and r != "replay"}
            check(n <= d["replay"] <= 2 * n and not others,
                  "%s: %d captures sent twice each; drops grew by %s" % (
                      t.name, n, {r: v for r, v in d.items() if v}))
        inj.log.append("replays: %d captures x2 x %d targets" % (n, len(targets)))

        # 5. signed by a key of our own, so the payload itself is tested: an
        #    identity endorsed with the cluster key file, and forgeries.
        crafted(h, inj, key, D, nodes)

        # Nothing changed: every agent runs, every view is as before.
        time.sleep(0.5)
        for a in everyone:
            check(a.running(), "%s died\n%s" % (a.name, a.describe()))
            ms = snapshot(a)
            was = views[a.name]
            same = set(ms) == set(was) and all(
                ms[n][:3] == was[n][:3] and ms[n][3] >= was[n][3] for n in ms)
            check(same, lambda: "%s's view changed:\n  before %r\n  after  %r\n%s" % (
                a.name, was, ms, h.describe(everyone)))
        for line in inj.log:
            h.note(line)
    finally:
        sock.close()


def crafted(h, inj, key, D, nodes):
    cap_pk, cap_cert = D[OFF_PK:OFF_PK + 32], D[OFF_CERT:OFF_SEQ]
    cseed = read_key_seed(key)
    ctx = b"shoal-cert-v1"
    if cseed is None or not ed25519.verify(ed25519.public_key(cseed), ctx + cap_pk, cap_cert):
        h.note("SKIPPED signed-payload checks: cannot read a seed from the cluster key file "
               "that endorses the captured datagram's sender")
        return
    rng = h.rng
    ghost = bytes(rng.getrandbits(8) for _ in range(32))
    gpk = ed25519.public_key(ghost)
    gcert = ed25519.sign(cseed, ctx + gpk)
    stranger = bytes(rng.getrandbits(8) for _ in range(32))
    frm = pb_bytes(4, "ghost")
    invalid_type = pb_uint(1, 99) + frm
    invalid_name = pb_uint(1, 5) + pb_bytes(4, "bad name!")
    broken = pb_uint(1, 5) + b"\x22\x64ab"  # field 4 claims 100 bytes, has 2

    # A forged gossip: "n2 is dead" at a high incarnation, said by n1.
    n1, n2 = nodes[0], nodes[1]
    g2 = n2.info()["generation"]
    forged = (pb_uint(1, 5) + pb_bytes(4, n1.name) +
              pb_bytes(7, pb_member_update(n2.name, n2.addr, g2, 1000, 2, n1.name)))

    def fill_to(payload, total):
        # pads a payload with unknown field 15 so the datagram is `total` bytes
        for pad in range(total, 0, -1):
            p = payload + pb_bytes(15, bytes(pad))
            if ENV + len(p) == total:
                return p
        raise ValueError(total)

    seq = iter(range(1000, 10**6))
    items = [
        (seal(ghost, gcert, next(seq), invalid_type), {"invalid"}, "endorsed, type 99"),
        (seal(ghost, gcert, next(seq), invalid_name), {"invalid"}, "endorsed, bad from name"),
        (seal(ghost, gcert, next(seq), broken), {"decode"}, "endorsed, broken protobuf"),
        (seal(ghost, gcert, next(seq), fill_to(invalid_type, MAX_DGRAM)), {"invalid"},
         "endorsed, type 99, %d bytes" % MAX_DGRAM),
        (seal(ghost, gcert, next(seq), fill_to(invalid_type, MAX_DGRAM + 1)), {"too_large"},
         "endorsed, %d bytes" % (MAX_DGRAM + 1)),
        (seal(ghost, ed25519.sign(stranger, ctx + gpk), next(seq), forged), {"not_endorsed"},
         "forged n2 dead, cert of another key"),
        (seal(ghost, bytes(64), next(seq), forged, flags=0), {"not_endorsed", "unsigned"},
         "forged n2 dead, no cert"),
        (seal(ghost, gcert, next(seq), forged)[:OFF_SIG] + ed25519.sign(stranger, b"x") +
         forged, {"bad_signature"}, "forged n2 dead, signed by a stranger"),
    ]
    again = items[0]
    inj.group("signed payloads", items)
    inj.group("signed payload resent", [(again[0], {"replay", "invalid"}, "endorsed, type 99 again")])


# ---------------------------------------------------------------- (7) conflict

@test("two live nodes claiming one name: the conflict is reported")
def t_conflict(h):
    key = h.keygen()
    nodes = h.cluster(3, key)
    a = h.agent("twin", key=key, join=[nodes[0]])
    h.wait_view(nodes + [a], {n.name: "alive" for n in nodes + [a]})
    b = h.agent("twin", key=key, join=[nodes[0]])
    everyone = nodes + [a, b]

    def reported():
        n = sum(x.info()["protocol"]["conflicts"] for x in everyone)
        logged = [x.name for x in everyone if "conflict" in x.log_text().lower()]
        return (n, logged) if n > 0 or logged else None
    t0 = time.monotonic()
    n, logged = wait_until(reported, DEADLINE, lambda: h.describe(everyone),
                           "a conflict to be reported (info protocol.conflicts or a log line)")
    h.note("conflict reported after %.1f s: conflicts total %d, logged by %s" % (
        time.monotonic() - t0, n, logged))
    for x in everyone:
        check(x.running(), "%s died\n%s" % (x.name, x.describe()))
    h.wait_view(nodes, {n.name: "alive" for n in nodes}, exact=False)


if __name__ == "__main__":
    run_tests()

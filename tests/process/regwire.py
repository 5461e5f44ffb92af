"""regwire.py -- registry messages as a test peer writes them.

A test identity endorsed by the test's own cluster key sends registry
Packets (proto/shoal.proto, types 8..11) straight to agents, as gossip
datagrams or as stream frames on one TCP connection (the envelope of
src/wire/wire.h). Events can carry an owner signature over their canonical
bytes (src/wire/statement.h, docs/registry-authority.md): signed with the
peer's own key they are that peer's statements; claimed for another owner
they are forgeries, which agents must refuse.
"""

import base64
import socket
import struct

import ed25519
from harness import check, hostport

HEALTH = {"passing": 0, "warning": 1, "critical": 2}


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
    return pb_varint(field << 3) + pb_varint(v) if v else b""


def pb_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(b)) + b


def canonical(i):
    """The canonical bytes an owner signs (statement.h, version 1)."""
    def s(x):
        x = x.encode() if isinstance(x, str) else x
        return struct.pack(">I", len(x)) + x
    out = (b"shoal-event-v1" + s(i["owner"]) + s(i["id"]) +
           struct.pack(">QQB", i["generation"], i["version"], 1 if i.get("deleted") else 0))
    if i.get("deleted"):
        return out
    out += s(i["service"]) + s(i["address"])
    out += struct.pack(">HBIqqI", i["port"], HEALTH[i.get("status", "passing")],
                       i.get("ttl_ms", 0), i.get("registered_ms", 1), 0, 0)
    tags = i.get("tags", [])
    out += struct.pack(">I", len(tags)) + b"".join(s(t) for t in tags)
    meta = sorted(i.get("meta", {}).items())
    out += struct.pack(">I", len(meta)) + b"".join(s(k) + s(v) for k, v in meta)
    return out + struct.pack(">I", 0)  # no checks


def pb_instance(i, sig=None):
    """Packet.events entry from an API-style dict (+ registered_ms, deleted),
    with a 64-byte signature if given."""
    out = (pb_bytes(1, i["owner"]) + pb_bytes(2, i["id"]) + pb_bytes(3, i.get("service", "")) +
           pb_bytes(4, i.get("address", "")) + pb_uint(5, i.get("port", 0)))
    for t in i.get("tags", []):
        out += pb_bytes(6, t)
    for k, v in sorted(i.get("meta", {}).items()):
        out += pb_bytes(7, pb_bytes(1, k) + pb_bytes(2, v))
    out += (pb_uint(8, HEALTH[i.get("status", "passing")]) +
            pb_uint(9, i.get("ttl_ms", 0)) + pb_uint(10, i.get("registered_ms", 1)) +
            pb_uint(12, i["generation"]) + pb_uint(13, i["version"]) +
            pb_uint(14, 1 if i.get("deleted") else 0))
    if sig:
        out += pb_bytes(17, sig)
    return out


def read_key_seed(path):
    """The 32-byte seed in a cluster key file (a base64 or hex word)."""
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


class Injector:
    """Sends signed registry messages as an endorsed identity `name`."""

    def __init__(self, h, name="ghost"):
        cseed = read_key_seed(h.key)
        check(cseed is not None, "cannot read the seed of cluster key %s" % h.key)
        self.name = name
        self.seed = bytes(h.rng.getrandbits(8) for _ in range(32))
        self.pk = ed25519.public_key(self.seed)
        self.cert = ed25519.sign(cseed, b"shoal-cert-v1" + self.pk)
        self.seq = 1
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def sign(self, event):
        """This peer's signature of event (valid only if event is its own)."""
        return ed25519.sign(self.seed, canonical(event))

    def own(self, event):
        """Packet.events entry of one of this peer's own events, signed."""
        return pb_instance(event, self.sign(event))

    def _envelope(self, payload, stream):
        hdr = (b"SH\x01" + bytes([0x01 | (0x02 if stream else 0)]) + self.pk + self.cert +
               self.seq.to_bytes(8, "big"))
        self.seq += 1
        return hdr + ed25519.sign(self.seed, hdr + payload) + payload

    def packet(self, ptype, entries, last=False):
        """A Packet of type ptype from already encoded events."""
        return (pb_uint(1, ptype) + pb_bytes(4, self.name) + b"".join(pb_bytes(8, e)
                                                                      for e in entries) +
                pb_uint(11, 1 if last else 0))

    def gossip_raw(self, agent, entries):
        self.sock.sendto(self._envelope(self.packet(8, entries), False), hostport(agent.addr))

    def gossip(self, agent, events):
        """Gossip of unsigned events (dicts)."""
        self.gossip_raw(agent, [pb_instance(e) for e in events])

    def hello(self, agent):
        """An empty gossip datagram: makes the agent learn this peer's name."""
        self.gossip_raw(agent, [])

    def stream(self, agent):
        """A TCP connection to agent's registry stream."""
        return socket.create_connection(hostport(agent.addr), timeout=30)

    def frame(self, conn, ptype, entries, last=True):
        env = self._envelope(self.packet(ptype, entries, last), True)
        conn.sendall(struct.pack(">I", len(env)) + env)

    def close(self):
        self.sock.close()

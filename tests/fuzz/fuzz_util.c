/* fuzz_util.c -- one fuzz input through the whole receive path.
 *
 * Mode DATAGRAM hands the bytes to shoal_wire_open of a fresh receiver (so
 * a datagram input replays the same way every time); mode PAYLOAD seals the
 * bytes as an endorsed node would, as a datagram or (FUZZ_STREAM) as a
 * stream frame, so they get past the signature, then dispatches them the
 * way the agent does: by shoal_wire_payload_type, SWIM types from datagrams
 * to the SWIM decoder, registry gossip from datagrams and anti-entropy from
 * frames to the registry decoder. Whatever decodes is fed to one long-lived
 * shoal_swim node and one shoal_registry (config defaults, two instances of
 * its own, membership events from the node as the agent forwards them;
 * both rebuilt every FUZZ_NODE_LIFETIME inputs so their tables stay
 * bounded), whose outgoing messages are encoded and checked. Checks that
 * fail abort(): that is the crash libFuzzer reports.
 */
#include "fuzz_util.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/principal.h"
#include "core/registry.h"
#include "core/swim.h"
#include "wire/statement.h"

#define FUZZ_MAX_DATAGRAM 1400
#define FUZZ_NODE_LIFETIME 4096
#define FUZZ_TICK_MS 125
#define FUZZ_PEER_ADDR "127.0.0.1:7950"
#define FUZZ_STREAM_CONN 1     /* the connection stream inputs arrive on */
#define FUZZ_PAYLOAD_MAX 65536 /* fuzz_seal_raw's limit */

static struct {
    bool ready;
    struct shoal_cluster_key ck;
    struct shoal_identity sender;  /* the remote peer the inputs come from */
    struct shoal_identity self_id; /* the node under test */
    struct shoal_wire *rx;         /* the node's receiver for PAYLOAD inputs */
    struct shoal_wire *tx;         /* the node's sealer for what it sends */
    struct shoal_swim *node;
    struct shoal_registry *reg;
    struct shoal_principals principals; /* peer-1..4: the sender's key */
    uint64_t sender_seq;
    int64_t now_ms;
    unsigned inputs;
} F;

static void die(const char *what)
{
    fprintf(stderr, "fuzz invariant broken: %s\n", what);
    abort();
}

static void seeded_keypair(uint8_t b, uint8_t *pk, uint8_t *sk)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, b, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);
}

void fuzz_cluster_key(struct shoal_cluster_key *k)
{
    if (sodium_init() < 0)
        die("sodium_init");
    seeded_keypair(0xc5, k->pk, k->sk);
}

static void fixed_identity(struct shoal_identity *id, uint8_t b)
{
    struct shoal_cluster_key k;
    fuzz_cluster_key(&k);
    memset(id, 0, sizeof(*id));
    seeded_keypair(b, id->pk, id->sk);
    shoal_identity_endorse(id, &k);
}

void fuzz_sender_identity(struct shoal_identity *id)
{
    fixed_identity(id, 0x5e);
}

static size_t seal_raw(uint64_t seq, uint8_t flags, const uint8_t *payload, size_t plen,
                       uint8_t *out)
{
    static uint8_t tbs[108 + FUZZ_PAYLOAD_MAX];
    static struct shoal_identity id;
    static bool have_id;
    if (!have_id) {
        fuzz_sender_identity(&id);
        have_id = true;
    }
    if (plen > FUZZ_PAYLOAD_MAX)
        die("fuzz_seal_raw: payload too long");
    /* The layout of wire.h, written out independently of envelope.c. */
    out[0] = 'S';
    out[1] = 'H';
    out[2] = 1;
    out[3] = flags;
    memcpy(out + 4, id.pk, 32);
    memcpy(out + 36, id.cert, 64);
    for (int i = 0; i < 8; i++)
        out[100 + i] = (uint8_t)(seq >> (56 - 8 * i));
    memcpy(tbs, out, 108);
    memcpy(tbs + 108, payload, plen);
    crypto_sign_detached(out + 108, NULL, tbs, 108 + plen, id.sk);
    memcpy(out + 172, payload, plen);
    return 172 + plen;
}

size_t fuzz_seal_raw(uint64_t seq, const uint8_t *payload, size_t plen, uint8_t *out)
{
    return seal_raw(seq, 0x01 /* cert present */, payload, plen, out);
}

size_t fuzz_seal_raw_frame(uint64_t seq, const uint8_t *payload, size_t plen, uint8_t *out)
{
    size_t n = seal_raw(seq, 0x01 | 0x02 /* cert, stream */, payload, plen, out + 4);
    for (int i = 0; i < 4; i++)
        out[i] = (uint8_t)(n >> (24 - 8 * i));
    return 4 + n;
}

/* ---- invariants -------------------------------------------------------- */

static bool addr_equal(const struct shoal_addr *a, const struct shoal_addr *b)
{
    return a->family == b->family && a->port == b->port &&
           memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

static bool msg_equal(const struct shoal_msg *a, const struct shoal_msg *b)
{
    if (a->type != b->type || a->seq != b->seq || a->part != b->part ||
        strcmp(a->from, b->from) != 0 || strcmp(a->target, b->target) != 0 ||
        !addr_equal(&a->target_addr, &b->target_addr) || a->n_updates != b->n_updates)
        return false;
    for (uint32_t i = 0; i < a->n_updates; i++) {
        const struct shoal_update *x = &a->updates[i], *y = &b->updates[i];
        if (strcmp(x->name, y->name) != 0 || !addr_equal(&x->addr, &y->addr) ||
            x->generation != y->generation || x->incarnation != y->incarnation ||
            x->status != y->status || strcmp(x->from, y->from) != 0)
            return false;
    }
    return true;
}

/* A decoded message re-encodes within a datagram and decodes to itself. */
static void check_reencode(const struct shoal_msg *m)
{
    static uint8_t buf[FUZZ_MAX_DATAGRAM * 2];
    static struct shoal_msg again;
    int n = shoal_wire_encode(m, buf, sizeof(buf));
    if (n < 0)
        die("decoded message does not re-encode");
    if (shoal_wire_decode(buf, (size_t)n, &again, NULL) != 0)
        die("re-encoded message does not decode");
    if (!msg_equal(m, &again))
        die("re-encoded message decodes differently");
}

/* Everything the node sends must seal within max_datagram and be a message
 * that a receiver accepts. */
static void on_send(void *ud, const struct shoal_addr *to, const struct shoal_msg *m)
{
    static uint8_t buf[FUZZ_MAX_DATAGRAM];
    static struct shoal_msg back;
    const char *bad = NULL;
    (void)ud;
    if (to->family != 4 && to->family != 6)
        die("send to an address without a family");
    int n = shoal_wire_seal(F.tx, m, buf, sizeof(buf));
    if (n == SHOAL_ETOOBIG)
        die("node sent a message larger than max_datagram");
    if (n < 0)
        die("node sent a message that cannot be encoded");
    int rc = shoal_wire_decode(buf + SHOAL_ENVELOPE_BYTES, (size_t)n - SHOAL_ENVELOPE_BYTES,
                               &back, &bad);
    if (rc != 0) {
        fprintf(stderr, "bad field: %s\n", bad ? bad : "(decode)");
        die("node sent a message a receiver would drop");
    }
}

static bool str_same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* b is what a decodes to: a tombstone keeps only its key (the encoder
 * writes nothing else), everything else all of its fields. */
static bool instance_equal(const struct shoal_instance *a, const struct shoal_instance *b)
{
    if (a->deleted)
        return b->deleted && strcmp(a->owner, b->owner) == 0 && str_same(a->id, b->id) &&
               a->generation == b->generation && a->version == b->version &&
               str_same(b->service, "") && str_same(b->address, "") && b->n_tags == 0 &&
               b->n_meta == 0;
    if (strcmp(a->owner, b->owner) != 0 || !str_same(a->id, b->id) ||
        !str_same(a->service, b->service) || !str_same(a->address, b->address) ||
        a->port != b->port || a->n_tags != b->n_tags || a->n_meta != b->n_meta ||
        a->health != b->health || a->ttl_ms != b->ttl_ms || a->registered_ms != b->registered_ms ||
        a->heartbeat_ms != b->heartbeat_ms || a->generation != b->generation ||
        a->version != b->version || a->deleted != b->deleted || a->has_sig != b->has_sig ||
        (a->has_sig && memcmp(a->sig, b->sig, sizeof(a->sig)) != 0))
        return false;
    for (uint32_t i = 0; i < a->n_tags; i++)
        if (!str_same(a->tags[i], b->tags[i]))
            return false;
    for (uint32_t i = 0; i < a->n_meta; i++)
        if (!str_same(a->meta[i].key, b->meta[i].key) ||
            !str_same(a->meta[i].value, b->meta[i].value))
            return false;
    return true;
}

static bool reg_msg_equal(const struct shoal_reg_msg *a, const struct shoal_reg_msg *b)
{
    if (a->type != b->type || strcmp(a->from, b->from) != 0 || a->part != b->part ||
        a->last != b->last || a->n_events != b->n_events || a->n_digests != b->n_digests ||
        a->n_wants != b->n_wants)
        return false;
    for (uint32_t i = 0; i < a->n_events; i++)
        if (!instance_equal(&a->events[i], &b->events[i]))
            return false;
    for (uint32_t i = 0; i < a->n_digests; i++) {
        const struct shoal_reg_digest *x = &a->digests[i], *y = &b->digests[i];
        if (strcmp(x->owner, y->owner) != 0 || x->generation != y->generation ||
            x->version != y->version || x->hash != y->hash || x->count != y->count)
            return false;
    }
    for (uint32_t i = 0; i < a->n_wants; i++)
        if (strcmp(a->wants[i], b->wants[i]) != 0)
            return false;
    if (a->n_proofs != b->n_proofs)
        return false;
    for (uint32_t i = 0; i < a->n_proofs; i++)
        if (memcmp(&a->proofs[i], &b->proofs[i], sizeof(a->proofs[i])) != 0)
            return false;
    return true;
}

/* Largest registry payload the harness encodes: a whole stream frame. */
static uint8_t reg_buf[SHOAL_STREAM_FRAME_MAX];

/* Encodes m into reg_buf within `room` bytes and decodes it as a receiver
 * would; `what` names the message in the failure. The decoded copy is
 * handed back in *back (free it) when back is not NULL. */
static void check_reg_encoding(const struct shoal_reg_msg *m, size_t room, const char *what,
                               struct shoal_reg_msg *back)
{
    struct shoal_reg_msg again;
    const char *bad = NULL;
    int n = shoal_wire_encode_reg(m, reg_buf, room);
    if (n == SHOAL_ETOOBIG) {
        fprintf(stderr, "%s: type %u, %u events, %u digests, %u wants\n", what, m->type,
                m->n_events, m->n_digests, m->n_wants);
        die("registry message larger than its transport allows");
    }
    if (n < 0)
        die("registry message cannot be encoded");
    if (shoal_wire_payload_type(reg_buf, (size_t)n) != m->type)
        die("payload_type disagrees with an encoded registry message");
    int rc = shoal_wire_decode_reg(reg_buf, (size_t)n, &again, &bad);
    if (rc != 0) {
        fprintf(stderr, "%s: bad field: %s\n", what, bad ? bad : "(decode)");
        die("registry message a receiver would drop");
    }
    if (!reg_msg_equal(m, &again))
        die("registry message decodes differently from what was encoded");
    if (back)
        *back = again;
    else
        shoal_reg_msg_free(&again);
}

/* What the registry sends: gossip must fit one datagram, anti-entropy one
 * frame, and a receiver must accept both. */
static void on_reg_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    (void)ud;
    if (to->addr.family != 4 && to->addr.family != 6)
        die("registry send to an address without a family");
    bool datagram = !to->stream && to->conn == 0;
    if (datagram != (m->type == SHOAL_REG_GOSSIP))
        die("registry sent gossip on a stream or anti-entropy as a datagram");
    size_t room = datagram ? FUZZ_MAX_DATAGRAM - SHOAL_ENVELOPE_BYTES
                           : SHOAL_STREAM_FRAME_MAX - SHOAL_ENVELOPE_BYTES;
    check_reg_encoding(m, room, datagram ? "registry datagram" : "registry frame", NULL);
}

static size_t on_reg_peers(void *ud, size_t k, struct shoal_addr *out)
{
    (void)ud;
    if (k == 0)
        return 0;
    if (shoal_addr_parse(FUZZ_PEER_ADDR, &out[0]) != 0)
        die("peer address");
    return 1;
}

/* Membership events reach the registry as the agent forwards them. */
static void on_swim_event(void *ud, const struct shoal_event *ev)
{
    (void)ud;
    const struct shoal_member_info *m = ev->member;
    switch (ev->type) {
    case SHOAL_EV_MEMBER_JOIN:
    case SHOAL_EV_MEMBER_STATUS:
        shoal_registry_owner_status(F.reg, F.now_ms, m->name, m->status, m->generation);
        break;
    case SHOAL_EV_MEMBER_REAPED:
        shoal_registry_owner_status(F.reg, F.now_ms, m->name, SHOAL_LEFT, m->generation);
        break;
    case SHOAL_EV_JOINED:
        shoal_registry_sync_with(F.reg, F.now_ms, &ev->other_addr);
        break;
    case SHOAL_EV_CONFLICT:
        break;
    }
}

/* Two instances of our own, so that anti-entropy has something to send. */
static void register_own(void)
{
    static char *tags[] = {"v1", "primary"};
    static struct shoal_kv meta[] = {{"version", "1.2.3"}, {"zone", "eu-west-1a"}};
    struct shoal_instance spec;
    const char *why = NULL;
    memset(&spec, 0, sizeof(spec));
    spec.id = "web-1";
    spec.service = "web";
    spec.address = "127.0.0.1";
    spec.port = 8080;
    spec.n_tags = 2;
    spec.tags = tags;
    spec.n_meta = 2;
    spec.meta = meta;
    if (shoal_registry_register(F.reg, F.now_ms, 1700000000000, &spec, &why) != 0)
        die(why ? why : "register web-1");
    memset(&spec, 0, sizeof(spec));
    spec.id = "cron-1";
    spec.service = "cron";
    spec.address = "127.0.0.1";
    spec.port = 9000;
    spec.ttl_ms = 10000;
    if (shoal_registry_register(F.reg, F.now_ms, 1700000000000, &spec, &why) != 0)
        die(why ? why : "register cron-1");
}

/* Owner signatures and proofs, as the agent wires them (io/node.c): the
 * fuzzed events go through canonical bytes, hashing and verification. */
static int reg_sign(void *ud, const struct shoal_instance *ev, uint8_t sig[SHOAL_REG_SIG_BYTES])
{
    (void)ud;
    return shoal_statement_sign_event(ev, F.self_id.sk, sig);
}

static bool reg_verify(void *ud, const struct shoal_instance *ev, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_event(ev, pk);
}

static void reg_hash(void *ud, const struct shoal_instance *ev, uint8_t out[32])
{
    (void)ud;
    if (shoal_statement_event_hash(ev, out) != 0)
        die("an event that decoded has no canonical bytes");
}

static void reg_root(void *ud, const uint8_t (*h)[32], size_t n, uint8_t root[32])
{
    (void)ud;
    shoal_statement_set_root(h, n, root);
}

static int reg_sign_proof(void *ud, struct shoal_reg_proof *p)
{
    (void)ud;
    shoal_statement_sign_proof(p, F.self_id.sk);
    return 0;
}

static bool reg_verify_proof(void *ud, const struct shoal_reg_proof *p, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_proof(p, pk);
}

/* peer-1..peer-4 speak with the sender's key (the seeds sign as them);
 * peer-2 may register only web* services. */
static void setup_principals(void)
{
    shoal_principals_init(&F.principals, 16);
    for (int i = 1; i <= 4; i++) {
        struct shoal_principal p;
        memset(&p, 0, sizeof(p));
        snprintf(p.name, sizeof(p.name), "peer-%d", i);
        memcpy(p.pk, F.sender.pk, sizeof(p.pk));
        p.not_after = UINT64_MAX;
        if (i == 2) {
            snprintf(p.scopes[0], sizeof(p.scopes[0]), "web*");
            p.n_scopes = 1;
        }
        if (shoal_principals_put(&F.principals, &p, false) != 0)
            die("principals");
    }
    struct shoal_principal self;
    memset(&self, 0, sizeof(self));
    snprintf(self.name, sizeof(self.name), "%s", FUZZ_SELF_NAME);
    memcpy(self.pk, F.self_id.pk, sizeof(self.pk));
    self.not_after = UINT64_MAX;
    if (shoal_principals_put(&F.principals, &self, false) != 0)
        die("principals");
}

/* ---- state ------------------------------------------------------------- */

static void setup(void)
{
    struct shoal_swim_config c;
    int err = 0;

    fuzz_cluster_key(&F.ck);
    fuzz_sender_identity(&F.sender);
    fixed_identity(&F.self_id, 0x5f);
    F.rx = shoal_wire_new(&F.self_id, F.ck.pk, 1, FUZZ_MAX_DATAGRAM);
    F.tx = shoal_wire_new(&F.self_id, F.ck.pk, 1, FUZZ_MAX_DATAGRAM);
    if (!F.rx || !F.tx)
        die("shoal_wire_new");

    shoal_swim_config_defaults(&c);
    snprintf(c.name, sizeof(c.name), "%s", FUZZ_SELF_NAME);
    if (shoal_addr_parse(FUZZ_SELF_ADDR, &c.addr) != 0)
        die("self address");
    c.generation = 1;
    c.seed = 1;
    c.max_datagram = FUZZ_MAX_DATAGRAM;
    c.send = on_send;
    c.event = on_swim_event;
    F.now_ms = 1000000;

    struct shoal_registry_config rc;
    shoal_registry_config_defaults(&rc);
    snprintf(rc.self, sizeof(rc.self), "%s", FUZZ_SELF_NAME);
    rc.generation = 1;
    rc.max_datagram = FUZZ_MAX_DATAGRAM;
    rc.send = on_reg_send;
    rc.peers = on_reg_peers;
    setup_principals();
    rc.principals = &F.principals;
    rc.sign = reg_sign;
    rc.verify = reg_verify;
    rc.event_hash = reg_hash;
    rc.set_root = reg_root;
    rc.sign_proof = reg_sign_proof;
    rc.verify_proof = reg_verify_proof;
    F.reg = shoal_registry_new(&rc, &err);
    if (!F.reg)
        die("shoal_registry_new");
    register_own();

    F.node = shoal_swim_new(&c, F.now_ms, &err);
    if (!F.node)
        die("shoal_swim_new");
    F.sender_seq = 1;
    F.inputs = 0;
    F.ready = true;
}

const struct shoal_registry *fuzz_registry(void)
{
    return F.ready ? F.reg : NULL;
}

void fuzz_reset(void)
{
    if (!F.ready)
        return;
    shoal_swim_free(F.node);
    shoal_registry_free(F.reg);
    shoal_principals_close(&F.principals);
    shoal_wire_free(F.rx);
    shoal_wire_free(F.tx);
    memset(&F, 0, sizeof(F));
}

/* ---- one input --------------------------------------------------------- */

static void advance_clock(unsigned steps)
{
    F.now_ms += (int64_t)steps * FUZZ_TICK_MS;
    /* Run every timer that came due, as the io loop would. The bound only
     * guards against a core whose deadline stops moving. */
    for (int i = 0; i < 64 && shoal_swim_next_deadline(F.node) <= F.now_ms; i++)
        shoal_swim_tick(F.node, F.now_ms);
    for (int i = 0; i < 64 && shoal_registry_next_deadline(F.reg) <= F.now_ms; i++)
        shoal_registry_tick(F.reg, F.now_ms);
}

/* A registry payload, verified: decoded, re-encoded, and delivered if it
 * came by the transport its type travels on (gossip by datagram,
 * anti-entropy by stream), as the agent's dispatch does. */
static enum fuzz_outcome deliver_reg(const uint8_t *p, size_t n, int type, bool stream,
                                     const struct shoal_addr *src)
{
    struct shoal_reg_msg m;
    const char *bad = NULL;
    int rc = shoal_wire_decode_reg(p, n, &m, &bad);
    if (rc == SHOAL_EINVAL && !bad)
        die("invalid registry payload without a field name");
    if (rc != 0 && rc != SHOAL_EINVAL && rc != SHOAL_EDECODE)
        die("decode_reg returned an unexpected error");
    if (rc != 0)
        return FUZZ_DROPPED;
    if (m.type != type)
        die("payload_type and decode_reg disagree on the type");
    /* A decoded message re-encodes as a receiver would take it. */
    struct shoal_reg_msg again;
    check_reg_encoding(&m, SHOAL_STREAM_FRAME_MAX - SHOAL_ENVELOPE_BYTES, "re-encoded payload",
                       &again);
    shoal_reg_msg_free(&again);
    enum fuzz_outcome r = FUZZ_DROPPED;
    if (stream == (type != SHOAL_REG_GOSSIP)) {
        struct shoal_reg_peer peer = {.addr = *src};
        if (stream) {
            peer.conn = FUZZ_STREAM_CONN;
            peer.stream = true;
        }
        shoal_registry_recv(F.reg, F.now_ms, &peer, &m);
        r = FUZZ_DELIVERED;
    }
    shoal_reg_msg_free(&m);
    return r;
}

/* Payload mode: seal as the endorsed peer would (a datagram, or a frame),
 * verify, then dispatch by type. A SWIM message that decodes is handed
 * back in *out (FUZZ_DELIVERED, *swim set) for the node. */
static enum fuzz_outcome open_payload(const uint8_t *p, size_t n, bool stream,
                                      const struct shoal_addr *src, struct shoal_msg *out,
                                      bool *swim)
{
    static uint8_t env[SHOAL_FRAME_OVERHEAD + FUZZ_PAYLOAD_MAX];
    const uint8_t *payload = NULL;
    size_t plen = 0, len;
    int drop = -1, rc;
    *swim = false;
    if (n > (stream ? FUZZ_PAYLOAD_MAX : FUZZ_MAX_DATAGRAM - SHOAL_ENVELOPE_BYTES))
        return FUZZ_IGNORED;
    if (stream) {
        len = fuzz_seal_raw_frame(F.sender_seq++, p, n, env);
        if (shoal_wire_frame_length(env, len) != (int)len)
            die("frame length disagrees with the frame");
        rc = shoal_wire_verify_frame(F.rx, env, len, &payload, &plen, &drop);
    } else {
        len = fuzz_seal_raw(F.sender_seq++, p, n, env);
        rc = shoal_wire_verify(F.rx, env, len, &payload, &plen, &drop);
    }
    /* A fresh, endorsed, well-signed envelope fails only on its payload. */
    if (rc != 0 || plen != n || memcmp(payload, p, n) != 0)
        die("a valid envelope did not verify to its payload");

    int type = shoal_wire_payload_type(payload, plen);
    if (type >= SHOAL_REG_GOSSIP && type <= SHOAL_REG_SYNC_DATA)
        return deliver_reg(payload, plen, type, stream, src);

    const char *bad = NULL;
    int want = shoal_wire_decode(payload, plen, out, &bad);
    if (type < 0) {
        /* The dispatch refuses only what neither decoder would take. */
        struct shoal_reg_msg m;
        if (want != SHOAL_EDECODE ||
            shoal_wire_decode_reg(payload, plen, &m, NULL) != SHOAL_EDECODE)
            die("payload_type refused a payload a decoder takes");
        return FUZZ_DROPPED;
    }
    if (want == SHOAL_EINVAL && !bad)
        die("invalid payload without a field name");
    if (want != 0 && want != SHOAL_EINVAL && want != SHOAL_EDECODE)
        die("decode returned an unexpected error");
    if (want != 0)
        return FUZZ_DROPPED;
    if (out->type != type)
        die("payload_type and decode disagree on the type");
    if (stream)
        return FUZZ_DROPPED; /* SWIM never travels on streams */
    *swim = true;
    return FUZZ_DELIVERED;
}

static enum fuzz_outcome open_datagram(const uint8_t *p, size_t n, struct shoal_msg *out)
{
    /* A fresh receiver: the same datagram opens the same way on every run. */
    struct shoal_wire *rx = shoal_wire_new(&F.self_id, F.ck.pk, 1, FUZZ_MAX_DATAGRAM);
    int drop = -1;
    if (!rx)
        die("shoal_wire_new");
    int rc = shoal_wire_open(rx, p, n, out, &drop);
    if (rc == 0) {
        /* Opening it again must be a replay, never a second delivery. */
        static struct shoal_msg again;
        int rc2 = shoal_wire_open(rx, p, n, &again, &drop);
        if (rc2 != SHOAL_EREPLAY || drop != SHOAL_DROP_REPLAY)
            die("an opened datagram opened twice");
    } else if (drop < 0 || drop >= SHOAL_DROP_COUNT) {
        die("drop without a reason");
    }
    shoal_wire_free(rx);
    return rc == 0 ? FUZZ_DELIVERED : FUZZ_DROPPED;
}

enum fuzz_outcome fuzz_one(const uint8_t *data, size_t size)
{
    static struct shoal_msg m;
    struct shoal_addr src;
    enum fuzz_outcome r;
    bool swim = true;

    if (size == 0)
        return FUZZ_IGNORED;
    if (!F.ready || F.inputs >= FUZZ_NODE_LIFETIME) {
        fuzz_reset();
        setup();
    }
    F.inputs++;
    uint8_t ctl = data[0];
    advance_clock((ctl >> 1) & 7);
    if (ctl & 0x10)
        (void)shoal_addr_parse("[fd00::7]:7950", &src);
    else
        (void)shoal_addr_parse("127.0.0.1:7950", &src);

    if (ctl & FUZZ_MODE_PAYLOAD)
        r = open_payload(data + 1, size - 1, (ctl & FUZZ_STREAM) != 0, &src, &m, &swim);
    else
        r = open_datagram(data + 1, size - 1, &m);
    if (r != FUZZ_DELIVERED || !swim)
        return r;
    check_reencode(&m);
    shoal_swim_recv(F.node, F.now_ms, &src, &m);
    return r;
}

/* fuzz_util.c -- one fuzz input through the whole receive path.
 *
 * Mode DATAGRAM hands the bytes to shoal_wire_open of a fresh receiver (so
 * a datagram input replays the same way every time); mode PAYLOAD seals the
 * bytes as an endorsed node would, so they get past the signature and reach
 * the decoder and the SWIM core. Whatever opens is fed to one long-lived
 * shoal_swim node (config defaults; rebuilt every FUZZ_NODE_LIFETIME inputs
 * so its member table stays bounded), whose outgoing messages are sealed and
 * checked. Checks that fail abort(): that is the crash libFuzzer reports.
 */
#include "fuzz_util.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/swim.h"

#define FUZZ_MAX_DATAGRAM 1400
#define FUZZ_NODE_LIFETIME 4096
#define FUZZ_TICK_MS 125

static struct {
    bool ready;
    struct shoal_cluster_key ck;
    struct shoal_identity sender;  /* the remote peer the inputs come from */
    struct shoal_identity self_id; /* the node under test */
    struct shoal_wire *rx;         /* the node's receiver for PAYLOAD inputs */
    struct shoal_wire *tx;         /* the node's sealer for what it sends */
    struct shoal_swim *node;
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

size_t fuzz_seal_raw(uint64_t seq, const uint8_t *payload, size_t plen, uint8_t *out)
{
    static uint8_t tbs[108 + 65536];
    static struct shoal_identity id;
    static bool have_id;
    if (!have_id) {
        fuzz_sender_identity(&id);
        have_id = true;
    }
    if (plen > 65536)
        die("fuzz_seal_raw: payload too long");
    /* The layout of wire.h, written out independently of envelope.c. */
    out[0] = 'S';
    out[1] = 'H';
    out[2] = 1;
    out[3] = 1; /* cert present */
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
    F.now_ms = 1000000;
    F.node = shoal_swim_new(&c, F.now_ms, &err);
    if (!F.node)
        die("shoal_swim_new");
    F.sender_seq = 1;
    F.inputs = 0;
    F.ready = true;
}

void fuzz_reset(void)
{
    if (!F.ready)
        return;
    shoal_swim_free(F.node);
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
}

static enum fuzz_outcome open_payload(const uint8_t *p, size_t n, struct shoal_msg *out)
{
    static uint8_t dg[FUZZ_MAX_DATAGRAM];
    static struct shoal_msg direct;
    if (n > FUZZ_MAX_DATAGRAM - SHOAL_ENVELOPE_BYTES)
        return FUZZ_IGNORED;
    size_t len = fuzz_seal_raw(F.sender_seq++, p, n, dg);
    const char *bad = NULL;
    int want = shoal_wire_decode(p, n, &direct, &bad);
    int drop = -1;
    int rc = shoal_wire_open(F.rx, dg, len, out, &drop);
    /* A fresh, endorsed, well-signed datagram fails only on its payload,
     * and exactly as the decoder alone judges that payload. */
    if (want == 0) {
        if (rc != 0)
            die("valid payload did not open");
        if (!msg_equal(&direct, out))
            die("open and decode disagree on the message");
        return FUZZ_DELIVERED;
    }
    if (want == SHOAL_EINVAL && (!bad || rc != SHOAL_EINVAL || drop != SHOAL_DROP_INVALID))
        die("invalid payload not dropped as invalid");
    if (want == SHOAL_EDECODE && (rc != SHOAL_EDECODE || drop != SHOAL_DROP_DECODE))
        die("undecodable payload not dropped as decode");
    if (want != SHOAL_EINVAL && want != SHOAL_EDECODE)
        die("decode returned an unexpected error");
    return FUZZ_DROPPED;
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
        r = open_payload(data + 1, size - 1, &m);
    else
        r = open_datagram(data + 1, size - 1, &m);
    if (r != FUZZ_DELIVERED)
        return r;
    check_reencode(&m);
    shoal_swim_recv(F.node, F.now_ms, &src, &m);
    return r;
}

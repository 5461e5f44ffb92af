/* test_wire.c -- the payload codec, the signed envelope and the key files.
 *
 * Datagrams for the drop cases are built by raw_seal(), a second, independent
 * implementation of the envelope layout written from the comment in wire.h,
 * so a test can sign whatever header and payload it wants. Invalid payloads
 * are built with the generated protobuf-c API directly.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdint.h>
#include <sys/stat.h>

#include "proto/shoal.pb-c.h"
#include "test.h"
#include "wire/wire.h"

#define MAXDG 1400

/* ---- helpers ----------------------------------------------------------- */

static void set_name(char *dst, const char *s)
{
    memset(dst, 0, SHOAL_NAME_MAX);
    strncpy(dst, s, SHOAL_NAME_MAX - 1);
}

/* A name of exactly n characters (1..63), distinct per tag. */
static void long_name(char *dst, size_t n, unsigned tag)
{
    memset(dst, 0, SHOAL_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)('a' + (i + tag) % 26);
}

static void addr4(struct shoal_addr *a, uint8_t last, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->family = 4;
    a->ip[0] = 10;
    a->ip[3] = last;
    a->port = port;
}

static void addr6(struct shoal_addr *a, uint8_t seed, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->family = 6;
    for (int i = 0; i < 16; i++)
        a->ip[i] = (uint8_t)(0xfd + i * 7 + seed);
    a->port = port;
}

static void fill_update(struct shoal_update *u, unsigned i, bool v6)
{
    memset(u, 0, sizeof(*u));
    char n[32];
    snprintf(n, sizeof(n), "node-%u", i);
    set_name(u->name, n);
    if (v6)
        addr6(&u->addr, (uint8_t)i, (uint16_t)(7000 + i));
    else
        addr4(&u->addr, (uint8_t)i, (uint16_t)(7000 + i));
    u->generation = 1000 + i;
    u->incarnation = i * 3;
    u->status = (uint8_t)(i % SHOAL_STATUS_COUNT);
    if (u->status != SHOAL_ALIVE)
        set_name(u->from, "suspecter.1");
}

static void make_msg(struct shoal_msg *m, uint8_t type, uint32_t n_updates, bool v6)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->seq = 4242 + type;
    m->part = type == SHOAL_MSG_PUSHPULL_REQ || type == SHOAL_MSG_PUSHPULL_RESP ? 3 : 0;
    set_name(m->from, "n1");
    if (type == SHOAL_MSG_PING || type == SHOAL_MSG_PING_REQ)
        set_name(m->target, "n2_target");
    if (type == SHOAL_MSG_PING_REQ) {
        if (v6)
            addr6(&m->target_addr, 9, 7946);
        else
            addr4(&m->target_addr, 9, 7946);
    }
    m->n_updates = n_updates;
    for (uint32_t i = 0; i < n_updates; i++)
        fill_update(&m->updates[i], i, v6);
}

static bool addr_same(const struct shoal_addr *a, const struct shoal_addr *b)
{
    size_t iplen = a->family == 4 ? 4 : 16;
    return a->family == b->family && a->port == b->port &&
           (a->family == 0 || memcmp(a->ip, b->ip, iplen) == 0);
}

static void check_msg_eq(const struct shoal_msg *a, const struct shoal_msg *b)
{
    CHECK_EQ(a->type, b->type);
    CHECK_EQ(a->seq, b->seq);
    CHECK_EQ(a->part, b->part);
    CHECK(strcmp(a->from, b->from) == 0);
    CHECK(strcmp(a->target, b->target) == 0);
    CHECK(addr_same(&a->target_addr, &b->target_addr));
    CHECK_EQ(a->n_updates, b->n_updates);
    for (uint32_t i = 0; i < a->n_updates; i++) {
        const struct shoal_update *x = &a->updates[i], *y = &b->updates[i];
        CHECKF(strcmp(x->name, y->name) == 0, "update %u name", i);
        CHECKF(addr_same(&x->addr, &y->addr), "update %u addr", i);
        CHECK_EQ(x->generation, y->generation);
        CHECK_EQ(x->incarnation, y->incarnation);
        CHECK_EQ(x->status, y->status);
        CHECKF(strcmp(x->from, y->from) == 0, "update %u from", i);
    }
}

static uint32_t msg_estimate(const struct shoal_msg *m)
{
    uint32_t n = SHOAL_MSG_BASE_BYTES + (uint32_t)strlen(m->from) + (uint32_t)strlen(m->target);
    for (uint32_t i = 0; i < m->n_updates; i++)
        n += shoal_update_cost(&m->updates[i]);
    return n;
}

static void identity_from_byte(struct shoal_identity *id, uint8_t b)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, b, sizeof(seed));
    memset(id, 0, sizeof(*id));
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

static void cluster_from_byte(struct shoal_cluster_key *k, uint8_t b)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, b, sizeof(seed));
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
}

/* Independent envelope writer: magic, version, flags, pk, cert, seq BE,
 * signature over everything before it plus the payload, then the payload. */
static size_t raw_seal(const struct shoal_identity *id, uint8_t flags, uint64_t seq,
                       const uint8_t *payload, size_t plen, uint8_t *out)
{
    uint8_t tbs[4096];
    out[0] = 'S';
    out[1] = 'H';
    out[2] = 1;
    out[3] = flags;
    memcpy(out + 4, id->pk, 32);
    if (id->has_cert)
        memcpy(out + 36, id->cert, 64);
    else
        memset(out + 36, 0, 64);
    for (int i = 0; i < 8; i++)
        out[100 + i] = (uint8_t)(seq >> (56 - 8 * i));
    memcpy(tbs, out, 108);
    memcpy(tbs + 108, payload, plen);
    crypto_sign_detached(out + 108, NULL, tbs, 108 + plen, id->sk);
    memcpy(out + 172, payload, plen);
    return 172 + plen;
}

static size_t raw_seal_msg(const struct shoal_identity *id, uint64_t seq,
                           const struct shoal_msg *m, uint8_t *out)
{
    uint8_t payload[MAXDG];
    int n = shoal_wire_encode(m, payload, sizeof(payload));
    CHECK(n > 0);
    return raw_seal(id, id->has_cert ? 1 : 0, seq, payload, (size_t)n, out);
}

/* A node of a keyed cluster and a receiver for it. */
struct pair {
    struct shoal_cluster_key ck;
    struct shoal_identity sender, receiver;
    struct shoal_wire *tx, *rx;
};

static void pair_init(struct pair *p, uint64_t seq_start)
{
    CHECK(sodium_init() >= 0);
    cluster_from_byte(&p->ck, 0xc1);
    identity_from_byte(&p->sender, 0x51);
    identity_from_byte(&p->receiver, 0x52);
    shoal_identity_endorse(&p->sender, &p->ck);
    shoal_identity_endorse(&p->receiver, &p->ck);
    p->tx = shoal_wire_new(&p->sender, p->ck.pk, seq_start, MAXDG);
    p->rx = shoal_wire_new(&p->receiver, p->ck.pk, 1, MAXDG);
    CHECK(p->tx && p->rx);
}

static void pair_close(struct pair *p)
{
    shoal_wire_free(p->tx);
    shoal_wire_free(p->rx);
}

static void expect_drop(struct shoal_wire *rx, const uint8_t *buf, size_t len, int reason,
                        int err)
{
    struct shoal_msg out;
    int drop = -1;
    int rc = shoal_wire_open(rx, buf, len, &out, &drop);
    CHECKF(rc == err, "rc %d (%s), want %d (%s)", rc, shoal_strerror(rc), err,
           shoal_strerror(err));
    CHECKF(drop == reason, "drop %s, want %s", shoal_drop_name(drop), shoal_drop_name(reason));
}

static void expect_open(struct shoal_wire *rx, const uint8_t *buf, size_t len,
                        struct shoal_msg *out)
{
    int drop = -1;
    int rc = shoal_wire_open(rx, buf, len, out, &drop);
    CHECKF(rc == 0, "rc %d (%s), drop %s", rc, shoal_strerror(rc), shoal_drop_name(drop));
}

/* Packs a hand-built Packet (possibly invalid) into buf. */
static size_t pack_pb(const Shoal__Packet *pkt, uint8_t *buf, size_t cap)
{
    size_t n = shoal__packet__get_packed_size(pkt);
    CHECK(n <= cap);
    return shoal__packet__pack(pkt, buf);
}

/* ---- codec ------------------------------------------------------------- */

TEST(codec_round_trip_every_type, "every message type survives encode then decode")
{
    for (uint8_t t = 1; t <= SHOAL_MSG_TYPE_MAX; t++) {
        struct shoal_msg m, out;
        uint8_t buf[MAXDG];
        make_msg(&m, t, t % 2 ? 3 : 0, false);
        int n = shoal_wire_encode(&m, buf, sizeof(buf));
        CHECKF(n > 0, "type %u: %d", t, n);
        const char *bad = "unset";
        memset(&out, 0xa5, sizeof(out));
        CHECK_EQ(shoal_wire_decode(buf, (size_t)n, &out, &bad), 0);
        CHECK(bad == NULL);
        check_msg_eq(&m, &out);
    }
}

TEST(codec_round_trip_max_updates_ipv6, "48 updates with IPv6 addresses round trip")
{
    struct shoal_msg m, out;
    static uint8_t buf[16384];
    make_msg(&m, SHOAL_MSG_PING_REQ, SHOAL_MSG_MAX_UPDATES, true);
    m.updates[47].generation = UINT64_MAX;
    m.updates[47].incarnation = UINT32_MAX;
    m.updates[46].addr.port = 65535;
    int n = shoal_wire_encode(&m, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQ(shoal_wire_decode(buf, (size_t)n, &out, NULL), 0);
    check_msg_eq(&m, &out);
}

TEST(codec_estimate_covers_worst_case, "the size estimate is never below the real encoding")
{
    static uint8_t buf[65536];
    for (uint8_t t = 1; t <= SHOAL_MSG_TYPE_MAX; t++) {
        for (uint32_t nu = 0; nu <= SHOAL_MSG_MAX_UPDATES; nu += 1) {
            struct shoal_msg m;
            memset(&m, 0, sizeof(m));
            m.type = t;
            m.seq = UINT32_MAX;
            m.part = UINT32_MAX;
            long_name(m.from, 63, 1);
            long_name(m.target, 63, 2);
            addr6(&m.target_addr, 1, 65535);
            m.n_updates = nu;
            for (uint32_t i = 0; i < nu; i++) {
                struct shoal_update *u = &m.updates[i];
                long_name(u->name, 63, i);
                long_name(u->from, 63, i + 5);
                addr6(&u->addr, (uint8_t)i, 65535);
                u->generation = UINT64_MAX;
                u->incarnation = UINT32_MAX;
                u->status = SHOAL_LEFT;
            }
            int n = shoal_wire_encode(&m, buf, sizeof(buf));
            CHECK(n > 0);
            CHECKF((uint32_t)n <= msg_estimate(&m), "type %u, %u updates: %d > %u", t, nu, n,
                   msg_estimate(&m));
        }
    }
}

/* Fills m like core does: add updates while the estimate fits the budget. */
static void fill_to_budget(struct shoal_msg *m, size_t name_len, size_t budget)
{
    memset(m, 0, sizeof(*m));
    m->type = SHOAL_MSG_PING_REQ;
    m->seq = UINT32_MAX;
    m->part = UINT32_MAX;
    long_name(m->from, 63, 1);
    long_name(m->target, 63, 2);
    addr6(&m->target_addr, 1, 65535);
    for (uint32_t i = 0; i < SHOAL_MSG_MAX_UPDATES; i++) {
        struct shoal_update u;
        memset(&u, 0, sizeof(u));
        long_name(u.name, name_len, i);
        long_name(u.from, name_len, i + 3);
        addr6(&u.addr, (uint8_t)i, 65535);
        u.generation = UINT64_MAX;
        u.incarnation = UINT32_MAX;
        u.status = SHOAL_LEFT;
        m->updates[m->n_updates++] = u;
        if (msg_estimate(m) > budget) {
            m->n_updates--;
            break;
        }
    }
}

TEST(seal_budget_fits_datagram, "a message filled to the estimated budget seals within 1400 bytes")
{
    struct pair p;
    pair_init(&p, 1);
    for (size_t len = 1; len <= 63; len++) {
        struct shoal_msg m, out;
        uint8_t buf[MAXDG];
        fill_to_budget(&m, len, MAXDG - SHOAL_ENVELOPE_BYTES);
        CHECK(m.n_updates > 0);
        int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
        CHECKF(n > 0 && n <= MAXDG, "names of %zu: seal %d", len, n);
        expect_open(p.rx, buf, (size_t)n, &out);
        check_msg_eq(&m, &out);
    }
    pair_close(&p);
}

TEST(codec_too_big, "encode and seal refuse what does not fit with SHOAL_ETOOBIG")
{
    struct pair p;
    struct shoal_msg m;
    uint8_t buf[MAXDG];
    pair_init(&p, 1);
    make_msg(&m, SHOAL_MSG_GOSSIP, 3, false);
    int n = shoal_wire_encode(&m, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQ(shoal_wire_encode(&m, buf, (size_t)n - 1), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_wire_encode(&m, buf, (size_t)n), n);
    CHECK_EQ(shoal_wire_seal(p.tx, &m, buf, SHOAL_ENVELOPE_BYTES + (size_t)n - 1), SHOAL_ETOOBIG);
    CHECK_EQ(shoal_wire_seal(p.tx, &m, buf, 100), SHOAL_ETOOBIG);
    fill_to_budget(&m, 63, 4000); /* far over max_datagram */
    CHECK_EQ(shoal_wire_seal(p.tx, &m, buf, sizeof(buf)), SHOAL_ETOOBIG);
    m.n_updates = SHOAL_MSG_MAX_UPDATES + 1;
    CHECK(shoal_wire_encode(&m, buf, sizeof(buf)) < 0);
    pair_close(&p);
}

TEST(codec_undecodable, "bytes that are not a Packet are SHOAL_EDECODE")
{
    struct shoal_msg out;
    const char *bad = "unset";
    const uint8_t trunc_varint[] = {0x08, 0xff};             /* type: varint cut short */
    const uint8_t long_len[] = {0x22, 0x40, 'a', 'b'};       /* from: length past the end */
    const uint8_t bad_wire_type[] = {0x0f, 0x00};           /* field 1, wire type 7 */
    const uint8_t nested_bad[] = {0x32, 0x02, 0x08, 0xff}; /* target_addr.family cut */
    CHECK_EQ(shoal_wire_decode(trunc_varint, sizeof(trunc_varint), &out, &bad), SHOAL_EDECODE);
    CHECK(bad == NULL);
    CHECK_EQ(shoal_wire_decode(long_len, sizeof(long_len), &out, &bad), SHOAL_EDECODE);
    CHECK_EQ(shoal_wire_decode(bad_wire_type, sizeof(bad_wire_type), &out, &bad), SHOAL_EDECODE);
    CHECK_EQ(shoal_wire_decode(nested_bad, sizeof(nested_bad), &out, &bad), SHOAL_EDECODE);
}

TEST(codec_unknown_fields_skipped, "unknown fields from a newer agent are skipped")
{
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    make_msg(&m, SHOAL_MSG_ACK, 1, false);
    int n = shoal_wire_encode(&m, buf, sizeof(buf) - 8);
    CHECK(n > 0);
    /* field 99, varint 7; field 100, 2 bytes */
    const uint8_t extra[] = {0x98, 0x06, 0x07, 0xa2, 0x06, 0x02, 'h', 'i'};
    memcpy(buf + n, extra, sizeof(extra));
    CHECK_EQ(shoal_wire_decode(buf, (size_t)n + sizeof(extra), &out, NULL), 0);
    check_msg_eq(&m, &out);
}

/* Builds a valid GOSSIP Packet with one update; tests then break one field. */
struct pb_msg {
    Shoal__Packet pkt;
    Shoal__Addr taddr, uaddr;
    Shoal__MemberUpdate up;
    Shoal__MemberUpdate *ups[64];
    uint8_t ip[16];
};

static void pb_valid(struct pb_msg *b)
{
    shoal__packet__init(&b->pkt);
    shoal__addr__init(&b->taddr);
    shoal__addr__init(&b->uaddr);
    shoal__member_update__init(&b->up);
    memset(b->ip, 7, sizeof(b->ip));
    b->pkt.type = SHOAL_MSG_GOSSIP;
    b->pkt.from = "n1";
    b->uaddr.family = 4;
    b->uaddr.ip.data = b->ip;
    b->uaddr.ip.len = 4;
    b->uaddr.port = 7946;
    b->taddr = b->uaddr;
    b->up.name = "n2";
    b->up.addr = &b->uaddr;
    b->up.status = SHOAL_SUSPECT;
    b->up.from = "n3";
    for (int i = 0; i < 64; i++)
        b->ups[i] = &b->up;
    b->pkt.updates = b->ups;
    b->pkt.n_updates = 1;
}

static void expect_invalid(const struct pb_msg *b, const char *field)
{
    uint8_t buf[8192];
    struct shoal_msg out;
    const char *bad = NULL;
    size_t n = pack_pb(&b->pkt, buf, sizeof(buf));
    int rc = shoal_wire_decode(buf, n, &out, &bad);
    CHECKF(rc == SHOAL_EINVAL, "want EINVAL for %s, got %d", field, rc);
    CHECKF(bad && strcmp(bad, field) == 0, "bad field %s, want %s", bad ? bad : "(null)", field);
}

TEST(codec_rejects_each_bad_field, "each invalid field is SHOAL_EINVAL naming that field")
{
    struct pb_msg b;
    uint8_t buf[8192];
    struct shoal_msg out;

    pb_valid(&b);
    size_t n = pack_pb(&b.pkt, buf, sizeof(buf));
    CHECK_EQ(shoal_wire_decode(buf, n, &out, NULL), 0); /* the base case is valid */

    pb_valid(&b), b.pkt.type = 0, expect_invalid(&b, "type");
    pb_valid(&b), b.pkt.type = SHOAL_MSG_TYPE_MAX + 1, expect_invalid(&b, "type");
    pb_valid(&b), b.pkt.from = "", expect_invalid(&b, "from");
    pb_valid(&b), b.pkt.from = "has space", expect_invalid(&b, "from");
    pb_valid(&b), b.pkt.from = "-leading-dash", expect_invalid(&b, "from");
    pb_valid(&b);
    b.pkt.from = "a123456789012345678901234567890123456789012345678901234567890123"; /* 64 */
    expect_invalid(&b, "from");
    pb_valid(&b), b.pkt.type = SHOAL_MSG_PING, expect_invalid(&b, "target");
    pb_valid(&b), b.pkt.target = "bad/name", expect_invalid(&b, "target");
    pb_valid(&b), b.pkt.type = SHOAL_MSG_PING_REQ, b.pkt.target = "n9";
    expect_invalid(&b, "target_addr");
    pb_valid(&b), b.pkt.target_addr = &b.taddr, b.taddr.family = 5;
    expect_invalid(&b, "target_addr.family");
    pb_valid(&b), b.pkt.target_addr = &b.taddr, b.taddr.ip.len = 16;
    expect_invalid(&b, "target_addr.ip");
    pb_valid(&b), b.pkt.target_addr = &b.taddr, b.taddr.port = 0;
    expect_invalid(&b, "target_addr.port");
    pb_valid(&b), b.pkt.n_updates = SHOAL_MSG_MAX_UPDATES + 1, expect_invalid(&b, "updates");
    pb_valid(&b), b.up.name = "has space", expect_invalid(&b, "update.name");
    pb_valid(&b), b.up.name = "", expect_invalid(&b, "update.name");
    pb_valid(&b), b.up.addr = NULL, expect_invalid(&b, "update.addr");
    pb_valid(&b), b.uaddr.family = 0, expect_invalid(&b, "update.addr.family");
    pb_valid(&b), b.uaddr.ip.len = 3, expect_invalid(&b, "update.addr.ip");
    pb_valid(&b), b.uaddr.family = 6, expect_invalid(&b, "update.addr.ip");
    pb_valid(&b), b.uaddr.port = 0, expect_invalid(&b, "update.addr.port");
    pb_valid(&b), b.uaddr.port = 65536, expect_invalid(&b, "update.addr.port");
    pb_valid(&b), b.up.status = SHOAL_STATUS_COUNT, expect_invalid(&b, "update.status");
    pb_valid(&b), b.up.status = 9, expect_invalid(&b, "update.status");
    pb_valid(&b), b.up.from = "a b", expect_invalid(&b, "update.from");
    /* An empty update.from is fine (alive carries none). */
    pb_valid(&b), b.up.from = "", b.up.status = SHOAL_ALIVE;
    n = pack_pb(&b.pkt, buf, sizeof(buf));
    CHECK_EQ(shoal_wire_decode(buf, n, &out, NULL), 0);
    CHECK_EQ(out.updates[0].from[0], 0);
}

/* ---- envelope ---------------------------------------------------------- */

TEST(seal_layout_matches_spec, "seal writes exactly the layout of wire.h, seq counting from seq_start")
{
    struct pair p;
    struct shoal_msg m;
    uint8_t a[MAXDG], b[MAXDG];
    pair_init(&p, 0x0102030405060708ull);
    make_msg(&m, SHOAL_MSG_PING, 2, false);
    for (uint64_t k = 0; k < 3; k++) {
        int n = shoal_wire_seal(p.tx, &m, a, sizeof(a));
        CHECK(n > SHOAL_ENVELOPE_BYTES);
        size_t rn = raw_seal_msg(&p.sender, 0x0102030405060708ull + k, &m, b);
        CHECK_EQ((size_t)n, rn);
        CHECK(memcmp(a, b, rn) == 0); /* Ed25519 is deterministic */
        CHECK_EQ(a[3], 1);            /* cert flag */
        CHECK_EQ(a[107], 0x08 + k);   /* seq, big endian */
    }
    pair_close(&p);
}

TEST(open_accepts_and_decodes, "a sealed message from an endorsed node opens to the same message")
{
    struct pair p;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    pair_init(&p, 1);
    for (uint8_t t = 1; t <= SHOAL_MSG_TYPE_MAX; t++) {
        make_msg(&m, t, t, t % 2);
        int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
        CHECK(n > 0);
        expect_open(p.rx, buf, (size_t)n, &out);
        check_msg_eq(&m, &out);
    }
    pair_close(&p);
}

TEST(drop_truncated_and_too_large, "short datagrams are truncated and long ones too_large")
{
    struct pair p;
    uint8_t buf[MAXDG + 10];
    pair_init(&p, 1);
    memset(buf, 0, sizeof(buf));
    buf[0] = 'S', buf[1] = 'H', buf[2] = 1;
    expect_drop(p.rx, buf, 0, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    expect_drop(p.rx, buf, SHOAL_ENVELOPE_BYTES - 1, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    expect_drop(p.rx, buf, MAXDG + 1, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);
    /* A valid datagram one byte over the receiver's limit is too large too. */
    struct shoal_wire *small_rx = shoal_wire_new(&p.receiver, p.ck.pk, 1, 300);
    struct shoal_msg m;
    make_msg(&m, SHOAL_MSG_GOSSIP, 8, false);
    int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    CHECK(n > 300);
    expect_drop(small_rx, buf, (size_t)n, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);
    shoal_wire_free(small_rx);
    pair_close(&p);
}

TEST(drop_bad_magic_or_version, "a wrong magic or version is unsigned")
{
    struct pair p;
    struct shoal_msg m;
    uint8_t buf[MAXDG], bad[MAXDG];
    pair_init(&p, 1);
    make_msg(&m, SHOAL_MSG_ACK, 0, false);
    int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    CHECK(n > 0);
    for (int i = 0; i < 3; i++) {
        memcpy(bad, buf, (size_t)n);
        bad[i] ^= 0x20;
        expect_drop(p.rx, bad, (size_t)n, SHOAL_DROP_UNSIGNED, SHOAL_EBADHDR);
    }
    pair_close(&p);
}

TEST(drop_flipped_bytes, "a flipped byte in the signature, header or payload is bad_signature")
{
    struct pair p;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG], bad[MAXDG];
    pair_init(&p, 1);
    make_msg(&m, SHOAL_MSG_GOSSIP, 4, false);
    int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    CHECK(n > 0);
    /* signature, seq, payload start, payload end, flags (unknown bit) */
    const size_t at[] = {108, 171, 100, 107, 172, (size_t)n - 1, 3};
    const uint8_t mask[] = {1, 0x80, 1, 1, 0x40, 1, 0x02};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        memcpy(bad, buf, (size_t)n);
        bad[at[i]] ^= mask[i];
        expect_drop(p.rx, bad, (size_t)n, SHOAL_DROP_BAD_SIGNATURE, SHOAL_EBADSIG);
    }
    /* Nothing was recorded by the forgeries: the original still opens. */
    expect_open(p.rx, buf, (size_t)n, &out);
    pair_close(&p);
}

TEST(drop_not_endorsed, "a missing cert, another cluster's cert or a swapped cert is not_endorsed")
{
    struct pair p;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    pair_init(&p, 1);
    make_msg(&m, SHOAL_MSG_PING, 1, false);

    /* Signed by the node, cert flag clear. */
    struct shoal_identity certless;
    identity_from_byte(&certless, 0x61);
    size_t n = raw_seal_msg(&certless, 5, &m, buf);
    expect_drop(p.rx, buf, n, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);

    /* Valid cert present but flag clear. */
    n = raw_seal(&p.sender, 0, 5, buf + 172, 0, buf); /* empty payload is fine here */
    expect_drop(p.rx, buf, n, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);

    /* Endorsed by another cluster key. */
    struct shoal_cluster_key other;
    struct shoal_identity foreign;
    cluster_from_byte(&other, 0xc2);
    identity_from_byte(&foreign, 0x62);
    shoal_identity_endorse(&foreign, &other);
    struct shoal_wire *ftx = shoal_wire_new(&foreign, other.pk, 1, MAXDG);
    int sn = shoal_wire_seal(ftx, &m, buf, sizeof(buf));
    CHECK(sn > 0);
    expect_drop(p.rx, buf, (size_t)sn, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);
    shoal_wire_free(ftx);

    /* Another member's valid cert on this key (cert covers the pk). */
    struct shoal_identity thief;
    identity_from_byte(&thief, 0x63);
    memcpy(thief.cert, p.sender.cert, 64);
    thief.has_cert = true;
    n = raw_seal_msg(&thief, 5, &m, buf);
    expect_drop(p.rx, buf, n, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);

    /* Once the real cert is cached, a packet with a broken cert is still refused. */
    sn = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    expect_open(p.rx, buf, (size_t)sn, &out);
    struct shoal_identity broken = p.sender;
    broken.cert[10] ^= 1;
    n = raw_seal_msg(&broken, 1000, &m, buf);
    expect_drop(p.rx, buf, n, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);
    n = raw_seal_msg(&p.sender, 1001, &m, buf);
    expect_open(p.rx, buf, n, &out);
    pair_close(&p);
}

TEST(drop_replay, "duplicates and datagrams older than the window are replays; reorders within it are accepted")
{
    struct pair p;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    static uint8_t dg[200][MAXDG];
    int len[200];
    pair_init(&p, 1000);
    make_msg(&m, SHOAL_MSG_ACK, 0, false);
    for (int i = 0; i < 200; i++) { /* seqs 1000..1199 */
        len[i] = shoal_wire_seal(p.tx, &m, dg[i], MAXDG);
        CHECK(len[i] > 0);
    }
    expect_open(p.rx, dg[100], (size_t)len[100], &out);
    expect_drop(p.rx, dg[100], (size_t)len[100], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    /* older but inside the window (top - 63): accepted once */
    expect_open(p.rx, dg[37], (size_t)len[37], &out);
    expect_drop(p.rx, dg[37], (size_t)len[37], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    /* top - 64: too old even though never seen */
    expect_drop(p.rx, dg[36], (size_t)len[36], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    /* reordered arrivals: 110, 105, 108, 101 all accepted, each once */
    const int order[] = {110, 105, 108, 101, 109};
    for (size_t i = 0; i < 5; i++)
        expect_open(p.rx, dg[order[i]], (size_t)len[order[i]], &out);
    for (size_t i = 0; i < 5; i++)
        expect_drop(p.rx, dg[order[i]], (size_t)len[order[i]], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    /* a jump of more than 64 clears the window: old ones are now too old */
    expect_open(p.rx, dg[199], (size_t)len[199], &out);
    expect_drop(p.rx, dg[102], (size_t)len[102], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    expect_open(p.rx, dg[198], (size_t)len[198], &out);
    expect_open(p.rx, dg[136], (size_t)len[136], &out);
    expect_drop(p.rx, dg[135], (size_t)len[135], SHOAL_DROP_REPLAY, SHOAL_EREPLAY);
    /* The sender's next datagram is fine. */
    int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    expect_open(p.rx, buf, (size_t)n, &out);
    pair_close(&p);
}

TEST(replay_needs_valid_signature, "a forged high seq does not move the replay window")
{
    struct pair p;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG], forged[MAXDG];
    pair_init(&p, 10);
    make_msg(&m, SHOAL_MSG_ACK, 0, false);
    int n = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    CHECK(n > 0);
    size_t fn = raw_seal_msg(&p.sender, UINT64_MAX - 1, &m, forged);
    forged[fn - 1] ^= 1; /* breaks the signature */
    expect_drop(p.rx, forged, fn, SHOAL_DROP_BAD_SIGNATURE, SHOAL_EBADSIG);
    expect_open(p.rx, buf, (size_t)n, &out);
    pair_close(&p);
}

TEST(replay_table_evicts_lru, "the sender table is bounded and forgets the least recently heard sender")
{
    CHECK(sodium_init() >= 0);
    struct shoal_identity rxid;
    identity_from_byte(&rxid, 1);
    struct shoal_wire *rx = shoal_wire_new(&rxid, NULL, 1, MAXDG);
    struct shoal_msg m, out;
    make_msg(&m, SHOAL_MSG_ACK, 0, false);
    uint8_t a1[MAXDG], first1[MAXDG], buf[MAXDG];

    struct shoal_identity a;
    shoal_identity_generate(&a);
    size_t a1n = raw_seal_msg(&a, 1, &m, a1);
    expect_open(rx, a1, a1n, &out);

    /* 4095 more senders fill the table (4096). */
    struct shoal_identity first;
    size_t first1n = 0;
    for (int i = 0; i < 4095; i++) {
        struct shoal_identity x;
        shoal_identity_generate(&x);
        size_t n = raw_seal_msg(&x, 1, &m, buf);
        expect_open(rx, buf, n, &out);
        if (i == 0) {
            first = x;
            memcpy(first1, buf, n);
            first1n = n;
        }
    }
    /* a is heard from again, so `first` is now the least recent. */
    size_t n = raw_seal_msg(&a, 2, &m, buf);
    expect_open(rx, buf, n, &out);
    struct shoal_identity y;
    shoal_identity_generate(&y);
    n = raw_seal_msg(&y, 1, &m, buf);
    expect_open(rx, buf, n, &out); /* evicts `first` */

    expect_drop(rx, a1, a1n, SHOAL_DROP_REPLAY, SHOAL_EREPLAY); /* a still known */
    expect_open(rx, first1, first1n, &out); /* first forgotten: its window restarted */
    (void)first;
    shoal_wire_free(rx);
}

TEST(drop_decode_and_invalid, "an authentic but undecodable payload is decode, a bad field invalid")
{
    struct pair p;
    struct shoal_msg m;
    uint8_t buf[MAXDG];
    pair_init(&p, 1);

    const uint8_t garbage[] = {0x08, 0xff, 0xff};
    size_t n = raw_seal(&p.sender, 1, 50, garbage, sizeof(garbage), buf);
    expect_drop(p.rx, buf, n, SHOAL_DROP_DECODE, SHOAL_EDECODE);
    /* It was authentic, so its seq is spent. */
    expect_drop(p.rx, buf, n, SHOAL_DROP_REPLAY, SHOAL_EREPLAY);

    make_msg(&m, SHOAL_MSG_GOSSIP, 2, false);
    m.updates[1].status = 9;
    int sn = shoal_wire_seal(p.tx, &m, buf, sizeof(buf)); /* encode does not judge */
    CHECK(sn > 0);
    expect_drop(p.rx, buf, (size_t)sn, SHOAL_DROP_INVALID, SHOAL_EINVAL);

    make_msg(&m, SHOAL_MSG_GOSSIP, 2, false);
    set_name(m.updates[0].name, "bad name");
    sn = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    expect_drop(p.rx, buf, (size_t)sn, SHOAL_DROP_INVALID, SHOAL_EINVAL);

    make_msg(&m, SHOAL_MSG_PING, 0, false);
    set_name(m.from, "sp ace");
    sn = shoal_wire_seal(p.tx, &m, buf, sizeof(buf));
    expect_drop(p.rx, buf, (size_t)sn, SHOAL_DROP_INVALID, SHOAL_EINVAL);
    pair_close(&p);
}

TEST(open_cluster_accepts_certless, "an open cluster accepts certless traffic and ignores certs")
{
    CHECK(sodium_init() >= 0);
    struct shoal_identity s, r;
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    identity_from_byte(&s, 0x71);
    identity_from_byte(&r, 0x72);
    struct shoal_wire *tx = shoal_wire_new(&s, NULL, 1, MAXDG);
    struct shoal_wire *rx = shoal_wire_new(&r, NULL, 1, MAXDG);
    make_msg(&m, SHOAL_MSG_PING, 2, true);
    int n = shoal_wire_seal(tx, &m, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQ(buf[3], 0); /* no cert flag */
    expect_open(rx, buf, (size_t)n, &out);
    check_msg_eq(&m, &out);

    /* A garbage cert with the flag set is ignored, not checked. */
    s.has_cert = true;
    memset(s.cert, 0xee, sizeof(s.cert));
    size_t rn = raw_seal_msg(&s, 77, &m, buf);
    expect_open(rx, buf, rn, &out);
    /* Signatures still count. */
    rn = raw_seal_msg(&s, 78, &m, buf);
    buf[120] ^= 1;
    expect_drop(rx, buf, rn, SHOAL_DROP_BAD_SIGNATURE, SHOAL_EBADSIG);

    /* A keyed cluster refuses the same certless sender. */
    struct shoal_cluster_key ck;
    cluster_from_byte(&ck, 0xc1);
    struct shoal_wire *krx = shoal_wire_new(&r, ck.pk, 1, MAXDG);
    n = shoal_wire_seal(tx, &m, buf, sizeof(buf));
    expect_drop(krx, buf, (size_t)n, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);
    shoal_wire_free(krx);
    shoal_wire_free(tx);
    shoal_wire_free(rx);
}

TEST(drop_names, "every drop reason has its metrics name")
{
    const char *want[] = {"too_large", "truncated", "unsigned", "bad_signature",
                          "not_endorsed", "replay", "decode", "invalid"};
    CHECK_EQ(SHOAL_DROP_COUNT, 8);
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        CHECK(strcmp(shoal_drop_name(i), want[i]) == 0);
    CHECK(strcmp(shoal_drop_name(-1), "?") == 0);
    CHECK(strcmp(shoal_drop_name(SHOAL_DROP_COUNT), "?") == 0);
}

TEST(wire_new_rejects_bad_size, "a context needs room for more than the envelope")
{
    struct shoal_identity id;
    identity_from_byte(&id, 3);
    CHECK(shoal_wire_new(&id, NULL, 0, SHOAL_ENVELOPE_BYTES) == NULL);
    CHECK(shoal_wire_new(NULL, NULL, 0, MAXDG) == NULL);
    struct shoal_wire *w = shoal_wire_new(&id, NULL, 0, SHOAL_ENVELOPE_BYTES + 1);
    CHECK(w != NULL);
    shoal_wire_free(w);
}

/* ---- keys -------------------------------------------------------------- */

static void tmp_dir(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/shoal-test-wire-XXXXXX");
    CHECK(mkdtemp(out) != NULL);
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    CHECK(system(cmd) == 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return n;
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return st.st_mode & 07777;
}

static bool only_entry_is(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int count = 0;
    bool found = false;
    CHECK(d != NULL);
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        count++;
        found |= strcmp(e->d_name, name) == 0;
    }
    closedir(d);
    return found && count == 1;
}

TEST(identity_created_then_loaded, "identity.key is created 0600 in a new 0700 dir and loads back the same key")
{
    char root[64], dir[128], path[200], text[256];
    tmp_dir(root, sizeof(root));
    snprintf(dir, sizeof(dir), "%s/a/data", root);
    snprintf(path, sizeof(path), "%s/identity.key", dir);
    struct shoal_identity id1, id2;
    CHECK_EQ(shoal_identity_load_or_create(dir, &id1), 0);
    CHECK_EQ(mode_of(dir), 0700);
    CHECK_EQ(mode_of(path), 0600);
    CHECK(only_entry_is(dir, "identity.key")); /* no temp file left */
    size_t n = read_file(path, text, sizeof(text));
    CHECK_EQ(n, strlen("shoal-identity-v1 ") + 44 + 1);
    CHECK(strncmp(text, "shoal-identity-v1 ", 18) == 0);
    CHECK_EQ(text[n - 1], '\n');
    CHECK(!id1.has_cert);
    CHECK_EQ(shoal_identity_load_or_create(dir, &id2), 0);
    CHECK(memcmp(id1.pk, id2.pk, 32) == 0);
    CHECK(memcmp(id1.sk, id2.sk, 64) == 0);
    /* The key works: what it seals opens. */
    struct shoal_wire *tx = shoal_wire_new(&id2, NULL, 1, MAXDG);
    struct shoal_wire *rx = shoal_wire_new(&id1, NULL, 1, MAXDG);
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    make_msg(&m, SHOAL_MSG_ACK, 0, false);
    int sn = shoal_wire_seal(tx, &m, buf, sizeof(buf));
    expect_open(rx, buf, (size_t)sn, &out);
    CHECK(memcmp(buf + 4, id1.pk, 32) == 0);
    shoal_wire_free(tx);
    shoal_wire_free(rx);
    rm_rf(root);
}

TEST(cluster_key_file, "a cluster key file is 0600, loads back, endorses, and is never overwritten")
{
    char root[64], path[128], before[256], after[256];
    tmp_dir(root, sizeof(root));
    snprintf(path, sizeof(path), "%s/cluster.key", root);
    CHECK_EQ(shoal_cluster_key_generate(path), 0);
    CHECK_EQ(mode_of(path), 0600);
    CHECK(only_entry_is(root, "cluster.key"));
    read_file(path, before, sizeof(before));
    CHECK(strncmp(before, "shoal-cluster-key-v1 ", 21) == 0);
    CHECK_EQ(shoal_cluster_key_generate(path), SHOAL_EEXIST);
    read_file(path, after, sizeof(after));
    CHECK(strcmp(before, after) == 0);
    CHECK(only_entry_is(root, "cluster.key"));

    struct shoal_cluster_key k1, k2;
    CHECK_EQ(shoal_cluster_key_load(path, &k1), 0);
    CHECK_EQ(shoal_cluster_key_load(path, &k2), 0);
    CHECK(memcmp(&k1, &k2, sizeof(k1)) == 0);

    struct shoal_identity s, r;
    shoal_identity_generate(&s);
    shoal_identity_generate(&r);
    CHECK(memcmp(s.pk, r.pk, 32) != 0);
    shoal_identity_endorse(&s, &k1);
    CHECK(s.has_cert);
    struct shoal_wire *tx = shoal_wire_new(&s, k1.pk, 1, MAXDG);
    struct shoal_wire *rx = shoal_wire_new(&r, k2.pk, 1, MAXDG);
    struct shoal_msg m, out;
    uint8_t buf[MAXDG];
    make_msg(&m, SHOAL_MSG_GOSSIP, 1, false);
    int sn = shoal_wire_seal(tx, &m, buf, sizeof(buf));
    expect_open(rx, buf, (size_t)sn, &out);
    shoal_wire_free(tx);
    shoal_wire_free(rx);

    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope/cluster.key", root);
    CHECK(shoal_cluster_key_generate(missing) < 0);
    CHECK_EQ(shoal_cluster_key_load(missing, &k1), SHOAL_ENOENT);
    rm_rf(root);
}

/* 40 chars + "AA==": base64 of 31 zero bytes, 44 chars like a real seed. */
#define SEED31_B64 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "AA=="

TEST(key_files_malformed_rejected, "malformed key files are SHOAL_EINVAL and never replaced")
{
    char root[64], path[128], idpath[160], text[256];
    tmp_dir(root, sizeof(root));
    snprintf(path, sizeof(path), "%s/k", root);
    CHECK_EQ(shoal_cluster_key_generate(path), 0);
    char good[256];
    read_file(path, good, sizeof(good));
    const char *b64 = good + 21; /* 44 chars + "\n" */

    struct shoal_cluster_key k;
    char bad[300];
    const char *cases[] = {
        "",
        "\n",
        "shoal-cluster-key-v1\n",
        "shoal-cluster-key-v1 \n",
        "shoal-cluster-key-v2 %s",
        "shoal-identity-v1 %s",
        "shoal-cluster-key-v1  %s",
        "shoal-cluster-key-v1 %.43s\n",          /* one char short */
        "shoal-cluster-key-v1 AAAA%s",            /* too long */
        "shoal-cluster-key-v1 %.44sextra\n",      /* trailing bytes */
        "shoal-cluster-key-v1 %.44s\n\n",         /* two lines */
        "shoal-cluster-key-v1 %.40s!!!!\n",       /* not base64 */
        "shoal-cluster-key-v1 " SEED31_B64 "\n", /* a 31-byte seed */
        "shoal-cluster-key-v1 %.44s\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(bad, sizeof(bad), cases[i], b64);
        write_file(path, bad);
        CHECKF(shoal_cluster_key_load(path, &k) == SHOAL_EINVAL, "case %zu: %s", i, bad);
    }
    /* The exact good line, with or without its newline, loads. */
    write_file(path, good);
    CHECK_EQ(shoal_cluster_key_load(path, &k), 0);
    snprintf(bad, sizeof(bad), "shoal-cluster-key-v1 %.44s", b64);
    write_file(path, bad);
    CHECK_EQ(shoal_cluster_key_load(path, &k), 0);

    /* A broken identity.key is an error, not a reason to make a new identity. */
    snprintf(idpath, sizeof(idpath), "%s/identity.key", root);
    write_file(idpath, "shoal-identity-v1 garbage\n");
    struct shoal_identity id;
    CHECK_EQ(shoal_identity_load_or_create(root, &id), SHOAL_EINVAL);
    read_file(idpath, text, sizeof(text));
    CHECK(strcmp(text, "shoal-identity-v1 garbage\n") == 0);
    /* A cluster key is not an identity. */
    write_file(idpath, good);
    CHECK_EQ(shoal_identity_load_or_create(root, &id), SHOAL_EINVAL);
    rm_rf(root);
}

TEST_MAIN()

/* test_regauth.c -- the registry's authority rules with real signatures:
 * owner-signed events (wire/statement.c) through the real codec, refusals
 * by reason (unknown owner, unsigned, bad signature, after a forgery, out of
 * scope, caps), the owner's own 403/413 cases, owner proofs for bulk
 * anti-entropy, and the re-sync once an unknown owner's principal appears.
 * Three registries a, b, c talk through an in-memory network that encodes
 * and decodes every message (shoal_wire_encode_reg / decode_reg). */
#include <stdint.h>
#include <stdlib.h>

#include "core/principal.h"
#include "core/regauth.h"
#include "core/regproof.h"
#include "core/registry.h"
#include "shoal/error.h"
#include "test.h"
#include "wire/statement.h"
#include "wire/wire.h"

#define NODES 3
#define QMAX 4096
#define BUF (4u << 20)

struct node {
    struct shoal_registry *r;
    struct shoal_identity id;
    struct shoal_principals pr;
    char name[8];
};

struct qmsg {
    int to;
    struct shoal_reg_peer from;
    uint8_t *bytes;
    size_t len;
};

static struct node nodes[NODES];
static struct qmsg q[QMAX];
static size_t qn;
static uint8_t *buf;

static struct shoal_addr addr_of(int i)
{
    struct shoal_addr a;
    shoal_addr_parse("127.0.0.1:7000", &a);
    a.port = (uint16_t)(7000 + i);
    return a;
}

static void net_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    int from = (int)(intptr_t)ud;
    int len = shoal_wire_encode_reg(m, buf, BUF);
    CHECKF(len > 0, "encode: %d", len);
    CHECK(qn < QMAX);
    struct qmsg *x = &q[qn++];
    x->to = to->conn ? (int)to->conn - 1 : to->addr.port - 7000;
    x->from.addr = addr_of(from);
    x->from.stream = to->stream;
    x->from.conn = to->stream ? (uint64_t)from + 1 : 0;
    x->bytes = malloc((size_t)len);
    memcpy(x->bytes, buf, (size_t)len);
    x->len = (size_t)len;
}

static size_t net_peers(void *ud, size_t k, struct shoal_addr *out)
{
    int self = (int)(intptr_t)ud;
    size_t n = 0;
    for (int i = 0; i < NODES && n < k; i++)
        if (i != self && nodes[i].r)
            out[n++] = addr_of(i);
    return n;
}

static void recv_bytes(int to, const struct shoal_reg_peer *from, const uint8_t *b, size_t len,
                       int64_t now)
{
    struct shoal_reg_msg m;
    const char *bad = NULL;
    CHECKF(shoal_wire_decode_reg(b, len, &m, &bad) == 0, "decode: %s", bad ? bad : "?");
    shoal_registry_recv(nodes[to].r, now, from, &m);
    shoal_reg_msg_free(&m);
}

static void deliver(int64_t now)
{
    while (qn) {
        struct qmsg x = q[0];
        memmove(q, q + 1, (qn - 1) * sizeof(*q));
        qn--;
        if (nodes[x.to].r)
            recv_bytes(x.to, &x.from, x.bytes, x.len, now);
        free(x.bytes);
    }
}

static void run(int64_t *now, int64_t until)
{
    while (*now < until) {
        *now += 10;
        for (int i = 0; i < NODES; i++)
            if (nodes[i].r && shoal_registry_next_deadline(nodes[i].r) <= *now)
                shoal_registry_tick(nodes[i].r, *now);
        deliver(*now);
    }
}

static int cb_sign(void *ud, const struct shoal_instance *ev, uint8_t sig[SHOAL_REG_SIG_BYTES])
{
    return shoal_statement_sign_event(ev, nodes[(intptr_t)ud].id.sk, sig);
}

static bool cb_verify(void *ud, const struct shoal_instance *ev, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_event(ev, pk);
}

static void cb_hash(void *ud, const struct shoal_instance *ev, uint8_t out[32])
{
    (void)ud;
    CHECK(shoal_statement_event_hash(ev, out) == 0);
}

static void cb_root(void *ud, const uint8_t (*h)[32], size_t n, uint8_t root[32])
{
    (void)ud;
    shoal_statement_set_root(h, n, root);
}

static int cb_sign_proof(void *ud, struct shoal_reg_proof *p)
{
    shoal_statement_sign_proof(p, nodes[(intptr_t)ud].id.sk);
    return 0;
}

static bool cb_verify_proof(void *ud, const struct shoal_reg_proof *p, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_proof(p, pk);
}

static void put_principal(struct shoal_principals *t, const char *name, const uint8_t pk[32],
                          const char *scope)
{
    struct shoal_principal p;
    memset(&p, 0, sizeof(p));
    snprintf(p.name, sizeof(p.name), "%s", name);
    memcpy(p.pk, pk, 32);
    p.not_after = UINT64_MAX;
    if (scope) {
        snprintf(p.scopes[0], SHOAL_SCOPE_MAX, "%s", scope);
        p.n_scopes = 1;
    }
    CHECK(shoal_principals_put(t, &p, true) == 0);
}

/* a, b, c; every node knows every other's principal unless `partial`
 * (then c does not know a). a's scope is `scope_a` everywhere. */
static void setup(const char *scope_a, bool partial, uint32_t owner_cap)
{
    if (!buf)
        buf = malloc(BUF);
    qn = 0;
    for (int i = 0; i < NODES; i++) {
        snprintf(nodes[i].name, sizeof(nodes[i].name), "%c", 'a' + i);
        shoal_identity_generate(&nodes[i].id);
        shoal_principals_init(&nodes[i].pr, 64);
    }
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (!(partial && i == 2 && j == 0))
                put_principal(&nodes[i].pr, nodes[j].name, nodes[j].id.pk,
                              j == 0 ? scope_a : NULL);
    for (int i = 0; i < NODES; i++) {
        struct shoal_registry_config c;
        shoal_registry_config_defaults(&c);
        snprintf(c.self, sizeof(c.self), "%s", nodes[i].name);
        c.generation = 1;
        c.send = net_send;
        c.peers = net_peers;
        c.ud = (void *)(intptr_t)i;
        c.sync_interval_ms = 0;
        c.principals = &nodes[i].pr;
        c.sign = cb_sign;
        c.verify = cb_verify;
        c.event_hash = cb_hash;
        c.set_root = cb_root;
        c.sign_proof = cb_sign_proof;
        c.verify_proof = cb_verify_proof;
        c.max_owner_instances = owner_cap;
        int err = 0;
        nodes[i].r = shoal_registry_new(&c, &err);
        CHECK(nodes[i].r && err == 0);
    }
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            shoal_registry_owner_status(nodes[i].r, 0, nodes[j].name, SHOAL_ALIVE, 1);
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++) {
        shoal_registry_free(nodes[i].r);
        nodes[i].r = NULL;
        shoal_principals_close(&nodes[i].pr);
    }
    deliver(0);
}

static void spec(struct shoal_instance *in, const char *id, const char *service, uint16_t port)
{
    memset(in, 0, sizeof(*in));
    in->id = (char *)id;
    in->service = (char *)service;
    in->address = "10.0.0.1";
    in->port = port;
}

static size_t count(int node, const char *service)
{
    struct shoal_query qq = {.service = service, .all = true};
    return shoal_registry_query(nodes[node].r, &qq, NULL, 0);
}

static const struct shoal_registry_stats *stats(int node)
{
    return shoal_registry_stats(nodes[node].r);
}

/* A gossip message from `from` (by address) carrying events, delivered to
 * `to` through the codec. */
static void inject(int from, int to, const struct shoal_instance *evs, uint32_t n, bool stream,
                   int64_t now)
{
    struct shoal_reg_msg m;
    memset(&m, 0, sizeof(m));
    m.type = stream ? SHOAL_REG_SYNC_DATA : SHOAL_REG_GOSSIP;
    snprintf(m.from, sizeof(m.from), "%s", nodes[from].name);
    m.events = (struct shoal_instance *)evs;
    m.n_events = n;
    m.last = true;
    int len = shoal_wire_encode_reg(&m, buf, BUF);
    CHECK(len > 0);
    struct shoal_reg_peer p = {.addr = addr_of(from), .stream = stream, .conn = stream ? 9 : 0};
    recv_bytes(to, &p, buf, (size_t)len, now);
}

static void owner_event(struct shoal_instance *ev, const char *owner, const char *id,
                        const char *service, uint64_t gen, uint64_t version)
{
    spec(ev, id, service, 1);
    snprintf(ev->owner, sizeof(ev->owner), "%s", owner);
    ev->generation = gen;
    ev->version = version;
}

static void sign_as(int node, struct shoal_instance *ev)
{
    CHECK(shoal_statement_sign_event(ev, nodes[node].id.sk, ev->sig) == 0);
    ev->has_sig = true;
}

TEST(signed_replicates, "an owner's signed event replicates; each copy is verified once")
{
    int64_t now = 0;
    struct shoal_instance s;
    setup(NULL, false, 0);
    spec(&s, "web-1", "web", 80);
    CHECK(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL) == 0);
    run(&now, 2000);
    CHECK_EQ(count(1, "web"), 1);
    CHECK_EQ(count(2, "web"), 1);
    /* b and c verified a's event once each, however often gossip repeated it. */
    CHECK_EQ(stats(1)->sig_verified, 1);
    CHECK_EQ(stats(2)->sig_verified, 1);
    for (int i = 1; i < 3; i++)
        for (int k = 0; k < SHOAL_REG_REFUSE_COUNT; k++)
            CHECKF(stats(i)->refused[k] == 0, "%s refused %s", nodes[i].name,
                   shoal_reg_refuse_name(k));
    teardown();
}

TEST(forgeries_refused, "events in another owner's name are refused by reason; nothing changes")
{
    int64_t now = 0;
    struct shoal_instance s, ev[4];
    setup(NULL, false, 0);
    spec(&s, "web-1", "web", 80);
    CHECK(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL) == 0);
    run(&now, 2000);
    struct shoal_reg_digest before[4], after[4];
    CHECK_EQ(shoal_registry_digests(nodes[2].r, before, 4), 1); /* only a has entries */

    /* b forges for a: a tombstone at 2^62, a new instance, a generation of
     * 2^64-1; each signed by b's own key. */
    owner_event(&ev[0], "a", "web-1", "web", 1, 1ull << 62);
    ev[0].deleted = true;
    owner_event(&ev[1], "a", "fake-1", "web", 1, 5);
    owner_event(&ev[2], "a", "web-1", "web", UINT64_MAX, 1);
    for (int i = 0; i < 3; i++) {
        sign_as(1, &ev[i]);
        inject(1, 2, &ev[i], 1, false, now);
    }
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 3);
    /* Unsigned, and a valid signature of a's event with a field changed. */
    for (int i = 0; i < 3; i++)
        ev[i].has_sig = false;
    inject(1, 2, ev, 3, false, now);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_UNSIGNED], 3);
    owner_event(&ev[3], "a", "web-2", "web", 1, 9);
    sign_as(0, &ev[3]);
    ev[3].port = 81; /* altered after signing */
    inject(1, 2, &ev[3], 1, false, now);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 4);
    /* An unknown owner. */
    owner_event(&ev[0], "zz", "x-1", "web", 1, 1);
    ev[0].deleted = false;
    sign_as(1, &ev[0]);
    inject(1, 2, ev, 1, false, now);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_UNKNOWN_OWNER], 1);
    CHECK_EQ(shoal_registry_digests(nodes[2].r, after, 4), 1);
    CHECK(memcmp(before, after, sizeof(before[0])) == 0);
    CHECK_EQ(count(2, "web"), 1);

    /* a's later registrations still arrive. */
    spec(&s, "web-3", "web", 83);
    CHECK(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL) == 0);
    run(&now, 4000);
    CHECK_EQ(count(2, "web"), 2);
    teardown();
}

TEST(after_forgery, "after a forgery the rest of its message is refused unverified")
{
    int64_t now = 0;
    static struct shoal_instance ev[1000];
    setup(NULL, false, 0);
    char ids[1000][12];
    for (int i = 0; i < 1000; i++) {
        snprintf(ids[i], sizeof(ids[i]), "x-%d", i);
        owner_event(&ev[i], "a", ids[i], "web", 1, (uint64_t)i + 1);
        memset(ev[i].sig, 0x5a, sizeof(ev[i].sig));
        ev[i].has_sig = true;
    }
    inject(1, 2, ev, 1000, true, now);
    CHECK_EQ(stats(2)->sig_verified, 1);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 1);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_AFTER_FORGERY], 999);
    CHECK_EQ(count(2, "web"), 0);
    teardown();
}

TEST(scopes, "an owner allowed web* gets EPERM for payments; replicas refuse its payments event")
{
    int64_t now = 0;
    struct shoal_instance s, ev;
    const char *why = NULL;
    setup("web*", false, 0);
    spec(&s, "pay-1", "payments", 80);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, &why), SHOAL_EPERM);
    CHECKF(why && strstr(why, "payments") && strstr(why, "web*"), "why: %s", why ? why : "-");
    spec(&s, "web-1", "web-eu", 80);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    /* a's own key on a payments event: refused by scope, not signature. */
    owner_event(&ev, "a", "pay-2", "payments", 1, 50);
    sign_as(0, &ev);
    inject(1, 2, &ev, 1, false, now);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_OUT_OF_SCOPE], 1);
    CHECK_EQ(stats(2)->sig_verified, 0); /* refused before any signature work */
    CHECK_EQ(count(2, "payments"), 0);
    /* A tombstone names no service: in scope. */
    run(&now, 2000);
    CHECK_EQ(count(2, "web-eu"), 1);
    CHECK(shoal_registry_deregister(nodes[0].r, now, "web-1") == 0);
    run(&now, 4000);
    CHECK_EQ(count(2, "web-eu"), 0);
    teardown();
}

TEST(caps, "per-owner caps: the owner gets ETOOBIG, replicas refuse the excess, held entries stay")
{
    int64_t now = 0;
    struct shoal_instance s;
    static struct shoal_instance ev[30];
    const char *why = NULL;
    char ids[30][12];
    setup(NULL, false, 10);
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof(ids[i]), "c-%d", i);
        spec(&s, ids[i], "cap", (uint16_t)(100 + i));
        CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    }
    spec(&s, "c-10", "cap", 200);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, &why), SHOAL_ETOOBIG);
    CHECKF(why && strstr(why, "--max-owner-instances"), "why: %s", why ? why : "-");
    spec(&s, "c-0", "cap", 999); /* an update at the cap is fine */
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    run(&now, 2000);
    CHECK_EQ(count(2, "cap"), 10);

    /* b sends 30 of its own, signed: c keeps 10 and refuses 20. */
    for (int i = 0; i < 30; i++) {
        snprintf(ids[i], sizeof(ids[i]), "b-%d", i);
        owner_event(&ev[i], "b", ids[i], "capb", 1, (uint64_t)i + 1);
        sign_as(1, &ev[i]);
    }
    inject(1, 2, ev, 30, true, now);
    CHECK_EQ(count(2, "capb"), 10);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_OWNER_INSTANCES], 20);
    CHECK_EQ(stats(2)->sig_verified, 10 + 10); /* a's 10 (c-0 sent once, updated), b's 10 */
    CHECK_EQ(count(2, "cap"), 10);
    teardown();
}

TEST(proofs, "anti-entropy of 2,000 entries is admitted under one owner proof, relayed as is")
{
    int64_t now = 0;
    struct shoal_instance s;
    static char ids[2000][12];
    setup(NULL, false, 0);
    /* c is not there while a registers: it gets everything by anti-entropy. */
    struct shoal_registry *c = nodes[2].r;
    nodes[2].r = NULL;
    for (int i = 0; i < 2000; i++) {
        snprintf(ids[i], sizeof(ids[i]), "p-%d", i);
        spec(&s, ids[i], "bulk", (uint16_t)(1 + i));
        CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    }
    CHECK(shoal_registry_deregister(nodes[0].r, now, "p-7") == 0); /* a tombstone too */
    run(&now, 3000);
    /* b got some of a's events by gossip, one verification each; the rest
     * come with a's proof when it syncs with a. */
    uint64_t v0 = stats(1)->sig_verified;
    CHECK(v0 > 0 && count(1, "bulk") < 1999);
    struct shoal_addr a_addr = addr_of(0);
    shoal_registry_sync_with(nodes[1].r, now, &a_addr);
    run(&now, now + 100);
    CHECK(stats(0)->proofs_sent >= 1);
    CHECK_EQ(count(1, "bulk"), 1999);
    CHECK(stats(1)->events_by_proof >= 2000);
    CHECK(stats(1)->sig_verified <= v0 + 3);
    /* c arrives and syncs with b: one proof for 2,000 entries, relayed by b. */
    nodes[2].r = c;
    shoal_registry_owner_status(c, now, "a", SHOAL_ALIVE, 1);
    struct shoal_addr b_addr = addr_of(1);
    shoal_registry_sync_with(c, now, &b_addr);
    run(&now, now + 100);
    CHECK_EQ(count(2, "bulk"), 1999);
    CHECKF(stats(2)->events_by_proof >= 2000, "events_by_proof %llu",
           (unsigned long long)stats(2)->events_by_proof);
    CHECKF(stats(2)->sig_verified <= 3, "c verified %llu signatures",
           (unsigned long long)stats(2)->sig_verified);
    CHECK_EQ(stats(2)->proofs_failed, 0);
    teardown();
}

TEST(proof_mismatch, "a proof that does not match the entries sent is ignored: each is verified")
{
    int64_t now = 0;
    static struct shoal_instance ev[50];
    struct shoal_reg_proof p;
    static char ids[50][12];
    uint8_t h[50][32];
    setup(NULL, false, 0);
    for (int i = 0; i < 50; i++) {
        snprintf(ids[i], sizeof(ids[i]), "m-%d", i);
        owner_event(&ev[i], "a", ids[i], "mm", 1, (uint64_t)i + 1);
        sign_as(0, &ev[i]);
        CHECK(shoal_statement_event_hash(&ev[i], h[i]) == 0);
    }
    /* a's proof over 49 of them; 50 are sent: no match. */
    memset(&p, 0, sizeof(p));
    snprintf(p.owner, sizeof(p.owner), "a");
    p.generation = 1;
    p.version = 49;
    p.count = 49;
    shoal_regproof_sort(h, 49);
    shoal_statement_set_root((const uint8_t(*)[32])h, 49, p.root);
    shoal_statement_sign_proof(&p, nodes[0].id.sk);
    struct shoal_reg_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_REG_SYNC_DATA;
    snprintf(m.from, sizeof(m.from), "b");
    m.events = ev;
    m.n_events = 50;
    m.proofs = &p;
    m.n_proofs = 1;
    m.last = true;
    int len = shoal_wire_encode_reg(&m, buf, BUF);
    CHECK(len > 0);
    struct shoal_reg_peer from = {.addr = addr_of(1), .stream = true, .conn = 9};
    recv_bytes(2, &from, buf, (size_t)len, now);
    CHECK_EQ(stats(2)->proofs_failed, 1);
    CHECK_EQ(stats(2)->events_by_proof, 0);
    CHECK_EQ(stats(2)->sig_verified, 50);
    CHECK_EQ(count(2, "mm"), 50);
    teardown();
}

TEST(proof_pins_signatures, "a relay that swaps a signature under a valid proof gains nothing")
{
    int64_t now = 0;
    static struct shoal_instance ev[20];
    struct shoal_reg_proof p;
    static char ids[20][12];
    uint8_t h[20][32];
    setup(NULL, false, 0);
    memset(&p, 0, sizeof(p));
    snprintf(p.owner, sizeof(p.owner), "a");
    for (int i = 0; i < 20; i++) {
        snprintf(ids[i], sizeof(ids[i]), "s-%d", i);
        owner_event(&ev[i], "a", ids[i], "ss", 1, (uint64_t)i + 1);
        sign_as(0, &ev[i]);
        CHECK(shoal_statement_event_hash(&ev[i], h[i]) == 0);
    }
    p.generation = 1;
    p.version = 20;
    p.count = 20;
    shoal_regproof_sort(h, 20);
    shoal_statement_set_root((const uint8_t(*)[32])h, 20, p.root);
    shoal_statement_sign_proof(&p, nodes[0].id.sk);
    memset(ev[0].sig, 0, sizeof(ev[0].sig)); /* the relay's garbage */
    struct shoal_reg_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_REG_SYNC_DATA;
    snprintf(m.from, sizeof(m.from), "b");
    m.events = ev;
    m.n_events = 20;
    m.proofs = &p;
    m.n_proofs = 1;
    m.last = true;
    int len = shoal_wire_encode_reg(&m, buf, BUF);
    CHECK(len > 0);
    struct shoal_reg_peer from = {.addr = addr_of(1), .stream = true, .conn = 9};
    recv_bytes(2, &from, buf, (size_t)len, now);
    CHECK_EQ(stats(2)->proofs_failed, 1);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 1);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_AFTER_FORGERY], 19);
    CHECK_EQ(count(2, "ss"), 0);
    teardown();
}

TEST(unknown_then_known, "events refused for an unknown owner are pulled again once it is known")
{
    int64_t now = 0;
    struct shoal_instance s;
    setup(NULL, true, 0); /* c does not know a */
    spec(&s, "u-1", "uu", 1);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    run(&now, 2000);
    CHECK_EQ(count(1, "uu"), 1);
    CHECK_EQ(count(2, "uu"), 0);
    CHECK(stats(2)->refused[SHOAL_REG_REFUSE_UNKNOWN_OWNER] >= 1);
    put_principal(&nodes[2].pr, "a", nodes[0].id.pk, NULL);
    shoal_registry_principals_changed(nodes[2].r);
    run(&now, 4000);
    CHECK_EQ(count(2, "uu"), 1);
    teardown();
}

TEST(rotation, "after a key rotation the owner re-signs everything; replicas take the new versions")
{
    int64_t now = 0;
    struct shoal_instance s;
    setup(NULL, false, 0);
    spec(&s, "r-1", "rot", 1);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    spec(&s, "r-2", "rot", 2);
    CHECK_EQ(shoal_registry_register(nodes[0].r, now, 1000, &s, NULL), 0);
    CHECK(shoal_registry_deregister(nodes[0].r, now, "r-2") == 0);
    run(&now, 2000);
    CHECK_EQ(count(2, "rot"), 1);
    uint64_t v_before = shoal_registry_own_version(nodes[0].r);
    /* a gets a new key; everyone's table follows (a renewed certificate). */
    shoal_identity_generate(&nodes[0].id);
    for (int i = 0; i < NODES; i++)
        put_principal(&nodes[i].pr, "a", nodes[0].id.pk, NULL);
    CHECK_EQ(shoal_registry_resign(nodes[0].r, now), 0);
    CHECK_EQ(shoal_registry_own_version(nodes[0].r), v_before + 2);
    run(&now, 4000);
    struct shoal_reg_digest da, dc;
    CHECK_EQ(shoal_registry_digests(nodes[0].r, &da, 1), 1);
    CHECK_EQ(shoal_registry_digests(nodes[2].r, &dc, 1), 1);
    CHECK(da.version == dc.version && da.hash == dc.hash && da.count == dc.count);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 0);
    CHECK_EQ(count(2, "rot"), 1);
    teardown();
}

TEST(forgery_per_owner, "a forgery for one owner does not stop another owner's events in the message")
{
    int64_t now = 0;
    static struct shoal_instance ev[3];
    setup(NULL, false, 0);
    owner_event(&ev[0], "a", "f-1", "ff", 1, 1);
    sign_as(1, &ev[0]); /* b's key for a's name */
    owner_event(&ev[1], "a", "f-2", "ff", 1, 2);
    sign_as(0, &ev[1]); /* a's own, but after a's forgery: refused unverified */
    owner_event(&ev[2], "b", "f-3", "ff", 1, 3);
    sign_as(1, &ev[2]);
    inject(1, 2, ev, 3, true, now);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 1);
    CHECK_EQ(stats(2)->refused[SHOAL_REG_REFUSE_AFTER_FORGERY], 1);
    CHECK_EQ(count(2, "ff"), 1); /* b's f-3 */
    teardown();
}

TEST(canonical_bytes, "canonical bytes: fixed layout, every field covered")
{
    struct shoal_instance ev;
    uint8_t b[512];
    owner_event(&ev, "a", "i", "s", 2, 3);
    long n = shoal_statement_event_bytes(&ev, b, sizeof(b));
    /* context 14, owner 4+1, id 4+1, gen 8, version 8, deleted 1, service
     * 4+1, address 4+8, port 2, health 1, ttl 4, registered 8, heartbeat 8,
     * dca 4, tags 4, meta 4, checks 4 */
    CHECK_EQ(n, 14 + 5 + 5 + 8 + 8 + 1 + 5 + 12 + 2 + 1 + 4 + 8 + 8 + 4 + 4 + 4 + 4);
    CHECK(memcmp(b, "shoal-event-v1\0\0\0\1a", 19) == 0);
    ev.deleted = true;
    CHECK_EQ(shoal_statement_event_bytes(&ev, b, sizeof(b)), 14 + 5 + 5 + 8 + 8 + 1);
    /* Any field change breaks the signature. */
    struct shoal_identity id;
    shoal_identity_generate(&id);
    ev.deleted = false;
    CHECK(shoal_statement_sign_event(&ev, id.sk, ev.sig) == 0);
    ev.has_sig = true;
    CHECK(shoal_statement_verify_event(&ev, id.pk));
    ev.version++;
    CHECK(!shoal_statement_verify_event(&ev, id.pk));
    ev.version--;
    ev.port = 2;
    CHECK(!shoal_statement_verify_event(&ev, id.pk));
    ev.port = 1;
    ev.service = "t";
    CHECK(!shoal_statement_verify_event(&ev, id.pk));
    ev.service = "s";
    CHECK(shoal_statement_verify_event(&ev, id.pk));
}

TEST(check_without_output, "an event whose check has no output yet signs and verifies (no NULL memcpy)")
{
    /* Found by UBSan in the process tests: a check that has not run yet has
     * output == NULL, and the canonical bytes passed it to memcpy with n = 0. */
    struct shoal_instance ev;
    owner_event(&ev, "a", "i", "s", 2, 3);
    struct shoal_check k;
    memset(&k, 0, sizeof k);
    k.kind = 1;
    k.target = "127.0.0.1:1";
    k.interval_ms = 1000;
    k.timeout_ms = 500;
    k.output = NULL;
    ev.checks = &k;
    ev.n_checks = 1;
    struct shoal_identity id;
    shoal_identity_generate(&id);
    CHECK(shoal_statement_sign_event(&ev, id.sk, ev.sig) == 0);
    ev.has_sig = true;
    CHECK(shoal_statement_verify_event(&ev, id.pk));
    k.output = "";
    CHECK(shoal_statement_verify_event(&ev, id.pk)); /* NULL and "" are the same bytes */
    k.output = "x";
    CHECK(!shoal_statement_verify_event(&ev, id.pk));
    ev.checks = NULL;
    ev.n_checks = 0;
}

TEST_MAIN()

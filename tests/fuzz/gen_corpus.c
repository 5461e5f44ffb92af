/* gen_corpus.c -- writes the seed corpus of fuzz_recv from real messages.
 *
 * Each file is one fuzz input (see fuzz_util.h): a control byte, then either
 * a datagram sealed by the fixed endorsed test sender, or a bare payload.
 * The messages talk to the node under test (FUZZ_SELF_NAME) so that the
 * seeds reach its ping, ping-req, gossip, push-pull and refute paths, and
 * its registry's gossip, notice, anti-entropy and tombstone paths (payloads
 * of types 8..11, the stream ones with FUZZ_STREAM).
 * Ed25519 signatures are deterministic: the output is the same every run.
 * Regenerate: build target gen_corpus (-DSHOAL_FUZZ=ON), empty
 * tests/fuzz/corpus, run build-fuzz/tests/fuzz/gen_corpus tests/fuzz/corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "core/swim.h"
#include "fuzz_util.h"
#include "wire/statement.h"

#define MAXDG 1400
#define PEER_ADDR "127.0.0.1:7950"

static const char *out_dir;
static int written;

static void name_set(char *dst, const char *s)
{
    memset(dst, 0, SHOAL_NAME_MAX);
    snprintf(dst, SHOAL_NAME_MAX, "%s", s);
}

static void addr_set(struct shoal_addr *a, const char *s)
{
    if (shoal_addr_parse(s, a) != 0) {
        fprintf(stderr, "gen_corpus: bad address %s\n", s);
        exit(1);
    }
}

static void msg_init(struct shoal_msg *m, uint8_t type, uint32_t seq)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->seq = seq;
    name_set(m->from, "peer-1");
}

static void add_update(struct shoal_msg *m, const char *name, const char *addr, uint64_t gen,
                       uint32_t inc, uint8_t status, const char *from)
{
    struct shoal_update *u = &m->updates[m->n_updates++];
    memset(u, 0, sizeof(*u));
    name_set(u->name, name);
    addr_set(&u->addr, addr);
    u->generation = gen;
    u->incarnation = inc;
    u->status = status;
    name_set(u->from, from);
}

static uint32_t estimate(const struct shoal_msg *m)
{
    uint32_t n = SHOAL_MSG_BASE_BYTES + (uint32_t)strlen(m->from) + (uint32_t)strlen(m->target);
    for (uint32_t i = 0; i < m->n_updates; i++)
        n += shoal_update_cost(&m->updates[i]);
    return n;
}

/* Adds alive members until the message is as full as core would make it. */
static void fill_members(struct shoal_msg *m, bool v6)
{
    for (unsigned i = 0; m->n_updates < SHOAL_MSG_MAX_UPDATES; i++) {
        char name[32], addr[64];
        snprintf(name, sizeof(name), "member-%03u.example", i);
        if (v6)
            snprintf(addr, sizeof(addr), "[fd00::%x]:%u", i + 1, 7000 + i);
        else
            snprintf(addr, sizeof(addr), "10.0.%u.%u:%u", i / 250, i % 250 + 1, 7000 + i);
        add_update(m, name, addr, 100 + i, i % 3, SHOAL_ALIVE, "");
        if (estimate(m) > MAXDG - SHOAL_ENVELOPE_BYTES) {
            m->n_updates--;
            break;
        }
    }
}

static void write_input(const char *name, uint8_t ctl, const uint8_t *body, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(ctl, f) == EOF || fwrite(body, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        exit(1);
    }
    written++;
}

/* Datagram-mode input: the message sealed by the endorsed test sender. */
static void datagram(const char *name, uint8_t clock, const struct shoal_msg *m)
{
    static struct shoal_wire *w;
    uint8_t buf[MAXDG];
    if (!w) {
        struct shoal_identity id;
        struct shoal_cluster_key k;
        fuzz_sender_identity(&id);
        fuzz_cluster_key(&k);
        w = shoal_wire_new(&id, k.pk, 1, MAXDG);
    }
    int n = shoal_wire_seal(w, m, buf, sizeof(buf));
    if (n < 0) {
        fprintf(stderr, "gen_corpus: %s does not seal: %s\n", name, shoal_strerror(n));
        exit(1);
    }
    write_input(name, (uint8_t)(FUZZ_MODE_DATAGRAM | clock << 1), buf, (size_t)n);
}

/* Payload-mode input: the bare encoded message. */
static void payload(const char *name, uint8_t clock, const struct shoal_msg *m)
{
    uint8_t buf[MAXDG];
    int n = shoal_wire_encode(m, buf, sizeof(buf));
    if (n < 0) {
        fprintf(stderr, "gen_corpus: %s does not encode\n", name);
        exit(1);
    }
    write_input(name, (uint8_t)(FUZZ_MODE_PAYLOAD | clock << 1), buf, (size_t)n);
}

/* ---- registry seeds ---------------------------------------------------- */

static char *lit(const char *s)
{
    return (char *)(uintptr_t)s;
}

static void reg_init(struct shoal_reg_msg *m, uint8_t type, bool last)
{
    static struct shoal_instance events[8];
    static struct shoal_reg_digest digests[8];
    static char wants[8][SHOAL_NAME_MAX];
    memset(m, 0, sizeof(*m));
    memset(events, 0, sizeof(events));
    memset(digests, 0, sizeof(digests));
    memset(wants, 0, sizeof(wants));
    m->type = type;
    name_set(m->from, "peer-1");
    m->last = last;
    m->events = events;
    m->digests = digests;
    m->wants = wants;
}

static struct shoal_instance *add_event(struct shoal_reg_msg *m, const char *owner, const char *id,
                                        const char *service, uint16_t port, uint64_t version)
{
    static char *tags[] = {"v2", "canary"};
    static struct shoal_kv meta[] = {{"version", "2.0.1"}, {"team", "payments"}};
    struct shoal_instance *in = &m->events[m->n_events++];
    name_set(in->owner, owner);
    in->id = lit(id);
    in->service = lit(service);
    in->address = lit("10.1.0.7");
    in->port = port;
    in->n_tags = 2;
    in->tags = tags;
    in->n_meta = 2;
    in->meta = meta;
    in->registered_ms = 1700000000000;
    in->generation = 5;
    in->version = version;
    return in;
}

static struct shoal_instance *add_tombstone(struct shoal_reg_msg *m, const char *owner,
                                            const char *id, uint64_t version)
{
    struct shoal_instance *in = &m->events[m->n_events++];
    name_set(in->owner, owner);
    in->id = lit(id);
    in->generation = 5;
    in->version = version;
    in->deleted = true;
    return in;
}

static void add_digest(struct shoal_reg_msg *m, const char *owner, uint64_t gen, uint64_t version,
                       uint32_t count)
{
    struct shoal_reg_digest *d = &m->digests[m->n_digests++];
    name_set(d->owner, owner);
    d->generation = gen;
    d->version = version;
    d->hash = 0x5eed5eed5eed5eedull ^ version;
    d->count = count;
}

static void sign_event(struct shoal_instance *in, const struct shoal_identity *id)
{
    if (shoal_statement_sign_event(in, id->sk, in->sig) != 0) {
        fprintf(stderr, "gen_corpus: cannot sign an event\n");
        exit(1);
    }
    in->has_sig = true;
}

static int by_hash(const void *a, const void *b)
{
    return memcmp(a, b, SHOAL_REG_HASH_BYTES);
}

/* A proof by id over every event of m (all of one owner). */
static void proof_over(const struct shoal_reg_msg *m, const char *owner,
                       const struct shoal_identity *id, struct shoal_reg_proof *p)
{
    uint8_t h[8][SHOAL_REG_HASH_BYTES];
    memset(p, 0, sizeof(*p));
    name_set(p->owner, owner);
    for (uint32_t i = 0; i < m->n_events; i++) {
        if (shoal_statement_event_hash(&m->events[i], h[i]) != 0)
            exit(1);
        if (m->events[i].version > p->version)
            p->version = m->events[i].version;
        p->generation = m->events[i].generation;
    }
    p->count = m->n_events;
    qsort(h, m->n_events, SHOAL_REG_HASH_BYTES, by_hash);
    shoal_statement_set_root((const uint8_t(*)[SHOAL_REG_HASH_BYTES])h, m->n_events, p->root);
    shoal_statement_sign_proof(p, id->sk);
}

/* Payload-mode input carrying a registry message, by datagram or stream. */
static void reg_payload(const char *name, uint8_t clock, bool stream, const struct shoal_reg_msg *m)
{
    uint8_t buf[MAXDG];
    int n = shoal_wire_encode_reg(m, buf, MAXDG - 1);
    if (n < 0) {
        fprintf(stderr, "gen_corpus: %s does not encode: %s\n", name, shoal_strerror(n));
        exit(1);
    }
    write_input(name, (uint8_t)(FUZZ_MODE_PAYLOAD | (stream ? FUZZ_STREAM : 0) | clock << 1), buf,
                (size_t)n);
}

static void registry_seeds(void)
{
    struct shoal_reg_msg m;
    static char long_value[600];
    static struct shoal_kv big_meta[] = {{"notes", long_value}};
    memset(long_value, 'x', sizeof(long_value) - 1);

    /* Gossip: new instances, a TTL one, a tombstone, and a notice of an
     * owner with more than we hold (the node pulls it by anti-entropy). */
    reg_init(&m, SHOAL_REG_GOSSIP, false);
    add_event(&m, "peer-1", "web-2", "web", 8080, 3);
    struct shoal_instance *ttl = add_event(&m, "peer-1", "api-1", "api", 9090, 4);
    ttl->ttl_ms = 5000;
    ttl->health = SHOAL_WARNING;
    ttl->heartbeat_ms = 1700000004000;
    add_tombstone(&m, "peer-2", "old-1", 7);
    add_digest(&m, "peer-3", 4, 9, 3);
    reg_payload("pl-reg-gossip", 0, false, &m);

    /* Somebody gossips about our own instance under an old generation. */
    reg_init(&m, SHOAL_REG_GOSSIP, false);
    add_event(&m, FUZZ_SELF_NAME, "web-1", "web", 8080, 99)->generation = 0;
    add_tombstone(&m, FUZZ_SELF_NAME, "cron-1", 100);
    reg_payload("pl-reg-gossip-own-owner", 1, false, &m);

    /* Anti-entropy as the initiator opens it: we hold more of our own, the
     * peer more of peer-1. */
    reg_init(&m, SHOAL_REG_SYNC_REQ, true);
    add_digest(&m, FUZZ_SELF_NAME, 1, 0, 0);
    add_digest(&m, "peer-1", 5, 40, 4);
    add_digest(&m, "peer-4", 2, 1, 1);
    reg_payload("pl-reg-sync-req-stream", 0, true, &m);

    /* The responder's answer: its events, and the owners it wants. */
    reg_init(&m, SHOAL_REG_SYNC_RESP, true);
    m.part = 0;
    add_event(&m, "peer-1", "web-3", "web", 8081, 41);
    add_tombstone(&m, "peer-1", "web-2", 42);
    name_set(m.wants[m.n_wants++], FUZZ_SELF_NAME);
    reg_payload("pl-reg-sync-resp-stream", 2, true, &m);

    /* The last data part: a several-hundred-byte meta value and a tombstone. */
    reg_init(&m, SHOAL_REG_SYNC_DATA, true);
    m.part = 1;
    struct shoal_instance *big = add_event(&m, "peer-4", "db-1", "db", 5432, 2);
    big->n_meta = 1;
    big->meta = big_meta;
    add_tombstone(&m, "peer-4", "db-0", 1);
    reg_payload("pl-reg-sync-data-stream", 3, true, &m);

    /* Owner signatures (fuzz_util.c binds peer-1..4 to the sender's key;
     * peer-2 may register web* only): a valid event, one out of its
     * owner's scope, one with a wrong signature. */
    struct shoal_identity sender;
    fuzz_sender_identity(&sender);
    reg_init(&m, SHOAL_REG_GOSSIP, false);
    sign_event(add_event(&m, "peer-1", "web-7", "web", 8087, 70), &sender);
    sign_event(add_event(&m, "peer-2", "pay-1", "payments", 443, 72), &sender);
    struct shoal_instance *forged = add_event(&m, "peer-3", "web-8", "web", 8088, 71);
    sign_event(forged, &sender);
    forged->sig[0] ^= 1; /* last: a forgery ends its message */
    reg_payload("pl-reg-gossip-signed", 4, false, &m);

    /* Anti-entropy with an owner proof over peer-4's whole set. */
    static struct shoal_reg_proof proof;
    reg_init(&m, SHOAL_REG_SYNC_DATA, true);
    sign_event(add_event(&m, "peer-4", "db-1", "db", 5432, 80), &sender);
    sign_event(add_event(&m, "peer-4", "db-2", "db", 5433, 81), &sender);
    struct shoal_instance *t = add_tombstone(&m, "peer-4", "db-0", 82);
    sign_event(t, &sender);
    proof_over(&m, "peer-4", &sender, &proof);
    m.proofs = &proof;
    m.n_proofs = 1;
    reg_payload("pl-reg-sync-data-proof-stream", 5, true, &m);

    /* Drops: a bad owner, anti-entropy by datagram, a bad health on a stream. */
    reg_init(&m, SHOAL_REG_GOSSIP, false);
    add_event(&m, "bad name", "web-9", "web", 80, 1);
    reg_payload("pl-reg-invalid-owner", 0, false, &m);
    reg_init(&m, SHOAL_REG_SYNC_REQ, true);
    add_digest(&m, "peer-1", 5, 40, 4);
    reg_payload("pl-reg-invalid-sync-by-datagram", 0, false, &m);
    reg_init(&m, SHOAL_REG_SYNC_DATA, true);
    add_event(&m, "peer-4", "db-2", "db", 5432, 3)->health = SHOAL_HEALTH_COUNT;
    reg_payload("pl-reg-invalid-health-stream", 0, true, &m);
}

int main(int argc, char **argv)
{
    struct shoal_msg m;
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    out_dir = argv[1];

    /* A peer introduces itself with a ping to us. */
    msg_init(&m, SHOAL_MSG_PING, 1);
    name_set(m.target, FUZZ_SELF_NAME);
    add_update(&m, "peer-1", PEER_ADDR, 5, 0, SHOAL_ALIVE, "");
    add_update(&m, "peer-2", "127.0.0.1:7951", 7, 2, SHOAL_ALIVE, "");
    datagram("dg-ping", 0, &m);
    payload("pl-ping", 1, &m);

    msg_init(&m, SHOAL_MSG_ACK, 1);
    add_update(&m, "peer-3", "[::1]:7952", 1, 0, SHOAL_ALIVE, "");
    datagram("dg-ack", 2, &m);
    payload("pl-ack", 0, &m);

    msg_init(&m, SHOAL_MSG_NACK, 1);
    datagram("dg-nack", 0, &m);
    payload("pl-nack", 4, &m);

    msg_init(&m, SHOAL_MSG_PING_REQ, 9);
    name_set(m.target, "peer-2");
    addr_set(&m.target_addr, "127.0.0.1:7951");
    add_update(&m, "peer-2", "127.0.0.1:7951", 7, 2, SHOAL_ALIVE, "");
    datagram("dg-ping-req", 0, &m);
    msg_init(&m, SHOAL_MSG_PING_REQ, 10);
    name_set(m.target, "peer-6");
    addr_set(&m.target_addr, "[fd00::6]:7946");
    payload("pl-ping-req-v6", 3, &m);

    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    fill_members(&m, false);
    datagram("dg-gossip-full-v4", 1, &m);
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    fill_members(&m, true);
    payload("pl-gossip-full-v6", 7, &m);

    /* Someone suspects us: the node must refute. */
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    add_update(&m, FUZZ_SELF_NAME, "127.0.0.1:7946", 1, 0, SHOAL_SUSPECT, "peer-1");
    datagram("dg-gossip-suspect-self", 0, &m);
    /* A second live node claims our name. */
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    add_update(&m, FUZZ_SELF_NAME, "10.9.9.9:7946", 2, 0, SHOAL_ALIVE, "");
    payload("pl-gossip-conflict", 0, &m);

    /* A member's life: suspect, dead, back with a new generation, left. */
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    add_update(&m, "peer-2", "127.0.0.1:7951", 7, 2, SHOAL_SUSPECT, "peer-1");
    add_update(&m, "peer-4", "127.0.0.1:7954", 3, 0, SHOAL_DEAD, "peer-1");
    datagram("dg-gossip-suspect-dead", 7, &m);
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    add_update(&m, "peer-4", "127.0.0.1:7954", 4, 0, SHOAL_ALIVE, "");
    add_update(&m, "peer-5", "[fd00::5]:7955", 9, 1, SHOAL_LEFT, "peer-5");
    payload("pl-gossip-rejoin-left", 2, &m);

    msg_init(&m, SHOAL_MSG_PUSHPULL_REQ, 0);
    m.part = 0;
    add_update(&m, "peer-1", PEER_ADDR, 5, 0, SHOAL_ALIVE, "");
    add_update(&m, "peer-7", "127.0.0.1:7957", 2, 0, SHOAL_ALIVE, "");
    datagram("dg-pushpull-req", 0, &m);
    m.part = 1;
    payload("pl-pushpull-req-part1", 0, &m);

    msg_init(&m, SHOAL_MSG_PUSHPULL_RESP, 0);
    fill_members(&m, false);
    datagram("dg-pushpull-resp", 0, &m);
    payload("pl-pushpull-resp", 5, &m);

    /* The most updates a message may carry, with names short enough to fit
     * one datagram: the decoder's count limit is one copy away. */
    msg_init(&m, SHOAL_MSG_PUSHPULL_RESP, 0);
    m.part = 2;
    for (unsigned i = 0; i < SHOAL_MSG_MAX_UPDATES; i++) {
        char name[8], addr[32];
        snprintf(name, sizeof(name), "m%u", i);
        snprintf(addr, sizeof(addr), "10.1.0.%u:%u", i + 1, 7000 + i);
        add_update(&m, name, addr, 1, 0, SHOAL_ALIVE, "");
    }
    datagram("dg-pushpull-resp-48", 0, &m);
    m.type = SHOAL_MSG_GOSSIP;
    payload("pl-gossip-48", 0, &m);

    /* Drops: a certless unsigned sender, a cut datagram, bad fields, bad bytes. */
    {
        uint8_t pl[MAXDG], dg[MAXDG];
        msg_init(&m, SHOAL_MSG_PING, 2);
        name_set(m.target, FUZZ_SELF_NAME);
        int n = shoal_wire_encode(&m, pl, sizeof(pl));
        if (n < 0)
            return 1;
        memset(dg, 0, SHOAL_ENVELOPE_BYTES);
        dg[0] = 'S', dg[1] = 'H', dg[2] = 1;
        memset(dg + 4, 0x42, SHOAL_PK_BYTES);
        memcpy(dg + SHOAL_ENVELOPE_BYTES, pl, (size_t)n);
        write_input("dg-certless", 0, dg, SHOAL_ENVELOPE_BYTES + (size_t)n);

        msg_init(&m, SHOAL_MSG_ACK, 3);
        n = shoal_wire_encode(&m, pl, sizeof(pl));
        if (n < 0)
            return 1;
        size_t len = fuzz_seal_raw(3, pl, (size_t)n, dg);
        write_input("dg-truncated", 0, dg, len < 100 ? len : 100);
    }
    msg_init(&m, SHOAL_MSG_GOSSIP, 0);
    add_update(&m, "peer-2", "127.0.0.1:7951", 7, 2, SHOAL_SUSPECT, "peer-1");
    m.updates[0].status = 9;
    payload("pl-invalid-status", 0, &m);
    msg_init(&m, SHOAL_MSG_PING, 4);
    name_set(m.target, "bad name");
    datagram("dg-invalid-target", 0, &m);
    {
        const uint8_t garbage[] = {0x08, 0x01, 0x22, 0x7f, 'p', 'e'};
        write_input("pl-undecodable", FUZZ_MODE_PAYLOAD, garbage, sizeof(garbage));
    }

    registry_seeds();

    printf("gen_corpus: wrote %d inputs to %s\n", written, out_dir);
    return 0;
}

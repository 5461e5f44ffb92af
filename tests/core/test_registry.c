/* test_registry.c -- unit tests of the replicated registry core: limits,
 * the owner's writes and TTLs, the apply rule (versions, tombstones,
 * generations), owners' liveness, anti-entropy and notices, queries.
 * Registries talk through a tiny in-memory network in virtual time. */
#include <stdint.h>

#include "core/registry.h"
#include "shoal/error.h"
#include "test.h"

#define NODES 3
#define QMAX 8192

struct qmsg {
    int to;
    struct shoal_reg_peer from;
    struct shoal_reg_msg m;
};

static struct shoal_registry *reg[NODES];
static struct qmsg *q;
static size_t qn;
static bool drop_gossip; /* lose every datagram */
static uint64_t sent_datagrams, sent_stream;

static int node_of(const struct shoal_addr *a)
{
    return a->port - 7000;
}

static struct shoal_addr addr_of(int i)
{
    struct shoal_addr a;
    shoal_addr_parse("127.0.0.1:7000", &a);
    a.port = (uint16_t)(7000 + i);
    return a;
}

/* Deep copy: core's messages are valid only during the callback. */
static void clone(struct shoal_reg_msg *dst, const struct shoal_reg_msg *src)
{
    *dst = *src;
    dst->events = calloc(src->n_events + 1, sizeof(*dst->events));
    for (uint32_t i = 0; i < src->n_events; i++)
        CHECK(shoal_instance_copy(&dst->events[i], &src->events[i]) == 0);
    dst->digests = calloc(src->n_digests + 1, sizeof(*dst->digests));
    if (src->n_digests)
        memcpy(dst->digests, src->digests, src->n_digests * sizeof(*dst->digests));
    dst->wants = calloc(src->n_wants + 1, sizeof(*dst->wants));
    if (src->n_wants)
        memcpy(dst->wants, src->wants, src->n_wants * sizeof(*dst->wants));
}

static void net_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    int from = (int)(intptr_t)ud;
    if (!to->stream) {
        sent_datagrams++;
        if (drop_gossip)
            return;
    } else {
        sent_stream++;
    }
    CHECK(qn < QMAX);
    struct qmsg *x = &q[qn++];
    /* A stream reply goes back to whoever opened it; conn = opener + 1. */
    x->to = to->conn ? (int)to->conn - 1 : node_of(&to->addr);
    x->from.addr = addr_of(from);
    x->from.stream = to->stream;
    x->from.conn = to->stream ? (uint64_t)from + 1 : 0;
    clone(&x->m, m);
}

static size_t net_peers(void *ud, size_t k, struct shoal_addr *out)
{
    int self = (int)(intptr_t)ud;
    size_t n = 0;
    for (int i = 0; i < NODES && n < k; i++)
        if (i != self && reg[i])
            out[n++] = addr_of(i);
    return n;
}

static void deliver(int64_t now)
{
    static struct qmsg batch[QMAX];
    while (qn) {
        size_t n = qn;
        memcpy(batch, q, n * sizeof(*q));
        qn = 0;
        for (size_t i = 0; i < n; i++) {
            if (reg[batch[i].to])
                shoal_registry_recv(reg[batch[i].to], now, &batch[i].from, &batch[i].m);
            shoal_reg_msg_free(&batch[i].m);
        }
    }
}

static void run(int64_t *now, int64_t until)
{
    while (*now < until) {
        *now += 10;
        for (int i = 0; i < NODES; i++)
            if (reg[i] && shoal_registry_next_deadline(reg[i]) <= *now)
                shoal_registry_tick(reg[i], *now);
        deliver(*now);
    }
}

static struct shoal_registry *mk(int i, uint64_t gen)
{
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "n%d", i);
    c.generation = gen;
    c.send = net_send;
    c.peers = net_peers;
    c.ud = (void *)(intptr_t)i;
    c.sync_interval_ms = 0; /* tests start syncs themselves */
    int err = 0;
    struct shoal_registry *r = shoal_registry_new(&c, &err);
    CHECK(r && err == 0);
    return r;
}

static void setup(void)
{
    q = calloc(QMAX, sizeof(*q));
    qn = 0;
    drop_gossip = false;
    for (int i = 0; i < NODES; i++)
        reg[i] = mk(i, 1);
    /* What membership tells each node about the others. */
    char name[16];
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++) {
            snprintf(name, sizeof(name), "n%d", j);
            shoal_registry_owner_status(reg[i], 0, name, SHOAL_ALIVE, 1);
        }
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++)
        shoal_registry_free(reg[i]);
    for (size_t i = 0; i < qn; i++)
        shoal_reg_msg_free(&q[i].m);
    free(q);
}

static struct shoal_instance spec(const char *id, const char *svc, uint16_t port)
{
    struct shoal_instance in;
    memset(&in, 0, sizeof(in));
    in.id = (char *)id;
    in.service = (char *)svc;
    in.address = (char *)"127.0.0.1";
    in.port = port;
    return in;
}

static size_t count(int node, const char *svc, bool all)
{
    struct shoal_query qq = {.service = svc, .all = all};
    return shoal_registry_query(reg[node], &qq, NULL, 0);
}

static const struct shoal_instance *get(int node, const char *svc, const char *id)
{
    static const struct shoal_instance *out[64];
    struct shoal_query qq = {.service = svc, .all = true};
    size_t n = shoal_registry_query(reg[node], &qq, out, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (strcmp(out[i]->id, id) == 0)
            return out[i];
    return NULL;
}

static bool digests_equal(int a, int b)
{
    static struct shoal_reg_digest da[64], db[64];
    size_t na = shoal_registry_digests(reg[a], da, 64);
    size_t nb = shoal_registry_digests(reg[b], db, 64);
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(da[i].owner, db[i].owner) || da[i].generation != db[i].generation ||
            da[i].version != db[i].version || da[i].hash != db[i].hash ||
            da[i].count != db[i].count)
            return false;
    return true;
}

TEST(limits, "every limit is enforced and the error names the field")
{
    const char *why = NULL;
    struct shoal_instance in = spec("web-1", "web", 80);
    CHECK(shoal_instance_validate(&in, &why) == 0);
    in.service = (char *)"Web";
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "service"));
    in = spec("web 1", "web", 80);
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "id"));
    in = spec("w", "web", 0);
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "port"));
    in = spec("w", "web", 1);
    char *tags[] = {(char *)"a,b"};
    in.tags = tags;
    in.n_tags = 1;
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "tag"));
    in = spec("w", "web", 1);
    static char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    struct shoal_kv kv[2] = {{(char *)"k", big}, {(char *)"k", (char *)"v"}};
    in.meta = kv;
    in.n_meta = 1;
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "meta value"));
    kv[0].value = (char *)"ok";
    in.n_meta = 2;
    CHECK(shoal_instance_validate(&in, &why) == SHOAL_EINVAL && strstr(why, "unique"));
    big[3000] = 0; /* 3000 bytes: several KB of metadata is fine */
    kv[0].value = big;
    kv[1].key = (char *)"k2";
    CHECK(shoal_instance_validate(&in, &why) == 0);
}

TEST(register_idempotent, "registering the same spec twice is one version; a change is a new one")
{
    setup();
    int64_t now = 1000;
    struct shoal_instance in = spec("web-1", "web", 80);
    CHECK(shoal_registry_register(reg[0], now, 5, &in, NULL) == 0);
    CHECK_EQ(shoal_registry_own_version(reg[0]), 1);
    CHECK(shoal_registry_register(reg[0], now, 6, &in, NULL) == 0);
    CHECK_EQ(shoal_registry_own_version(reg[0]), 1);
    in.port = 81;
    CHECK(shoal_registry_register(reg[0], now, 7, &in, NULL) == 0);
    CHECK_EQ(shoal_registry_own_version(reg[0]), 2);
    const struct shoal_instance *got = get(0, "web", "web-1");
    CHECK(got && got->port == 81 && got->registered_ms == 5 && got->health == SHOAL_PASSING);
    CHECK(strcmp(got->owner, "n0") == 0);
    CHECK_EQ(shoal_registry_deregister(reg[0], now, "nope"), SHOAL_ENOENT);
    teardown();
}

TEST(ttl_lifecycle, "a TTL instance starts critical, passes on heartbeat, lapses, then is removed")
{
    setup();
    int64_t now = 0;
    struct shoal_instance in = spec("api-1", "api", 9000);
    in.ttl_ms = 1000;
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    CHECK_EQ(get(0, "api", "api-1")->health, SHOAL_CRITICAL);
    CHECK_EQ(count(0, "api", false), 0);
    CHECK_EQ(shoal_registry_heartbeat(reg[0], now, 2, "api-1"), 0);
    CHECK_EQ(get(0, "api", "api-1")->health, SHOAL_PASSING);
    run(&now, 900);
    CHECK_EQ(get(0, "api", "api-1")->health, SHOAL_PASSING);
    CHECK_EQ(shoal_registry_heartbeat(reg[0], now, 3, "api-1"), 0); /* keeps it passing */
    run(&now, 1800);
    CHECK_EQ(get(0, "api", "api-1")->health, SHOAL_PASSING);
    run(&now, 2000); /* 1.1 s without a heartbeat */
    CHECK_EQ(get(0, "api", "api-1")->health, SHOAL_CRITICAL);
    CHECK(get(1, "api", "api-1") && get(1, "api", "api-1")->health == SHOAL_CRITICAL);
    run(&now, 3800); /* critical for less than 2 TTLs */
    CHECK(get(0, "api", "api-1") != NULL);
    run(&now, 4000);
    CHECK(get(0, "api", "api-1") == NULL);
    CHECK(get(1, "api", "api-1") == NULL);
    in = spec("plain", "api", 1);
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    CHECK_EQ(shoal_registry_heartbeat(reg[0], now, 2, "plain"), SHOAL_EINVAL);
    /* The further time is configurable per instance: 5 TTLs here. */
    in = spec("slow", "api", 2);
    in.ttl_ms = 1000;
    in.deregister_critical_after_ms = 5000;
    int64_t t0 = now;
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    CHECK_EQ(shoal_registry_heartbeat(reg[0], now, 2, "slow"), 0);
    run(&now, t0 + 1000 + 4800); /* critical for 4.8 s: longer than 2 TTLs */
    CHECK(get(0, "api", "slow") && get(0, "api", "slow")->health == SHOAL_CRITICAL);
    run(&now, t0 + 1000 + 5200);
    CHECK(get(0, "api", "slow") == NULL);
    teardown();
}

TEST(gossip_replicates, "a registration and a deregistration reach every replica by gossip")
{
    setup();
    int64_t now = 0;
    struct shoal_instance in = spec("web-1", "web", 80);
    char *tags[] = {(char *)"v1", (char *)"eu"};
    in.tags = tags;
    in.n_tags = 2;
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    run(&now, 50);
    for (int i = 1; i < NODES; i++) {
        const struct shoal_instance *got = get(i, "web", "web-1");
        CHECKF(got != NULL, "node %d", i);
        CHECK(got->n_tags == 2 && strcmp(got->tags[1], "eu") == 0);
        CHECK(strcmp(got->owner, "n0") == 0 && got->version == 1);
    }
    uint64_t idx = shoal_registry_index(reg[1], "web");
    CHECK(shoal_registry_deregister(reg[0], now, "web-1") == 0);
    run(&now, 100);
    for (int i = 0; i < NODES; i++)
        CHECK(get(i, "web", "web-1") == NULL);
    CHECK(shoal_registry_index(reg[1], "web") > idx);
    CHECK(digests_equal(0, 1) && digests_equal(1, 2));
    size_t by[SHOAL_HEALTH_COUNT], tombs;
    shoal_registry_counts(reg[2], by, &tombs);
    CHECK_EQ(tombs, 1);
    teardown();
}

TEST(apply_rule, "older, duplicated and reordered events never undo newer ones or a tombstone")
{
    setup();
    int64_t now = 0;
    struct shoal_instance ev = spec("x", "svc", 1);
    snprintf(ev.owner, sizeof(ev.owner), "n9");
    ev.generation = 4;
    struct shoal_reg_msg m = {.type = SHOAL_REG_GOSSIP, .n_events = 1, .events = &ev};
    snprintf(m.from, sizeof(m.from), "n9");
    struct shoal_reg_peer src = {.addr = addr_of(9)};
    ev.version = 3;
    ev.port = 3;
    shoal_registry_recv(reg[0], now, &src, &m);
    ev.version = 2;
    ev.port = 2;
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK_EQ(get(0, "svc", "x")->port, 3);
    ev.version = 5;
    ev.deleted = true;
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK(get(0, "svc", "x") == NULL);
    ev.deleted = false;
    ev.version = 4; /* a late register from before the deregistration */
    shoal_registry_recv(reg[0], now, &src, &m);
    ev.version = 3;
    shoal_registry_recv(reg[0], now, &src, &m); /* a duplicate */
    CHECK(get(0, "svc", "x") == NULL);
    CHECK(shoal_registry_stats(reg[0])->events_stale >= 3);
    /* A newer generation wipes the old one: the owner re-announces. */
    ev.generation = 5;
    ev.version = 1;
    ev.id = (char *)"y";
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK(get(0, "svc", "y") != NULL);
    ev.generation = 4;
    ev.version = 99;
    ev.id = (char *)"z";
    shoal_registry_recv(reg[0], now, &src, &m); /* the old generation is gone */
    CHECK(get(0, "svc", "z") == NULL);
    /* Nobody else may write our instances. */
    snprintf(ev.owner, sizeof(ev.owner), "n0");
    ev.generation = 7;
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK(get(0, "svc", "z") == NULL);
    teardown();
}

TEST(owner_liveness, "a dead owner's instances leave healthy answers at once and are reaped later")
{
    setup();
    int64_t now = 0;
    struct shoal_instance in = spec("db-1", "db", 5432);
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    run(&now, 50);
    CHECK_EQ(count(1, "db", false), 1);
    shoal_registry_owner_status(reg[1], now, "n0", SHOAL_DEAD, 1);
    CHECK_EQ(count(1, "db", false), 0);
    CHECK_EQ(count(1, "db", true), 1);
    shoal_registry_owner_status(reg[1], now, "n0", SHOAL_ALIVE, 1); /* refuted */
    CHECK_EQ(count(1, "db", false), 1);
    shoal_registry_owner_status(reg[1], now, "n0", SHOAL_DEAD, 1);
    int64_t died = now;
    run(&now, died + 3600000 - 100);
    CHECK_EQ(count(1, "db", true), 1); /* not before reap_ms */
    run(&now, died + 3600000 + 100);
    CHECK_EQ(count(1, "db", true), 0);
    CHECK(shoal_registry_stats(reg[1])->reaped == 1);
    /* Left: removed at once. */
    shoal_registry_owner_status(reg[2], now, "n0", SHOAL_LEFT, 1);
    CHECK_EQ(count(2, "db", true), 0);
    teardown();
}

TEST(unknown_owner, "an owner membership never vouched for is held, not served, then reaped")
{
    setup();
    int64_t now = 0;
    struct shoal_instance ev = spec("ghost-1", "svc", 1);
    snprintf(ev.owner, sizeof(ev.owner), "n7");
    ev.generation = 1;
    ev.version = 1;
    struct shoal_reg_msg m = {.type = SHOAL_REG_SYNC_DATA, .n_events = 1, .events = &ev, .last = true};
    snprintf(m.from, sizeof(m.from), "n1");
    struct shoal_reg_peer src = {.addr = addr_of(1), .stream = true, .conn = 2};
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK_EQ(count(0, "svc", true), 1);
    CHECK_EQ(count(0, "svc", false), 0);
    shoal_registry_owner_status(reg[0], now, "n7", SHOAL_ALIVE, 1);
    CHECK_EQ(count(0, "svc", false), 1);
    shoal_registry_owner_status(reg[0], now, "n7", SHOAL_DEAD, 1);
    int64_t died = now;
    run(&now, died + 3600000 + 100);
    CHECK_EQ(count(0, "svc", true), 0);
    /* Reaped in the same generation: it comes back if the owner does. */
    shoal_registry_owner_status(reg[0], now, "n7", SHOAL_ALIVE, 1);
    shoal_registry_recv(reg[0], now, &src, &m);
    CHECK_EQ(count(0, "svc", false), 1);
    teardown();
}

TEST(restart_reannounce, "a restarted owner re-announces; its old, now missing instances disappear")
{
    setup();
    int64_t now = 0;
    struct shoal_instance a = spec("a", "svc", 1), b = spec("b", "svc", 2);
    shoal_registry_register(reg[0], now, 1, &a, NULL);
    shoal_registry_register(reg[0], now, 1, &b, NULL);
    run(&now, 50);
    CHECK_EQ(count(1, "svc", true), 2);
    uint64_t v = shoal_registry_own_version(reg[0]);
    shoal_registry_free(reg[0]);
    reg[0] = mk(0, 2); /* restarted with only "a" persisted */
    CHECK(shoal_registry_restore(reg[0], now, &a, 1, v) == 0);
    CHECK(shoal_registry_own_version(reg[0]) == v + 1);
    shoal_registry_owner_status(reg[1], now, "n0", SHOAL_ALIVE, 2);
    shoal_registry_owner_status(reg[2], now, "n0", SHOAL_ALIVE, 2);
    run(&now, 100);
    for (int i = 1; i < NODES; i++) {
        CHECK(get(i, "svc", "a") != NULL && get(i, "svc", "a")->generation == 2);
        CHECK(get(i, "svc", "b") == NULL);
    }
    teardown();
}

TEST(anti_entropy, "a replica that lost every datagram catches up through a stream sync")
{
    setup();
    int64_t now = 0;
    drop_gossip = true;
    char id[32];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof(id), "i-%d", i);
        struct shoal_instance in = spec(id, i % 2 ? "odd" : "even", (uint16_t)(1000 + i));
        CHECK(shoal_registry_register(reg[i % 2], now, 1, &in, NULL) == 0);
    }
    CHECK(shoal_registry_deregister(reg[0], now, "i-0") == 0);
    run(&now, 5000);
    CHECK_EQ(count(2, "even", true) + count(2, "odd", true), 0);
    drop_gossip = false;
    uint64_t before = sent_stream;
    struct shoal_addr a0 = addr_of(0);
    shoal_registry_sync_with(reg[2], now, &a0);
    deliver(now);
    CHECK(sent_stream > before);
    CHECK_EQ(count(2, "even", true), 249); /* n0's, one deregistered */
    /* n0 learned nothing of n1 either; sync n0 <-> n1 both ways. */
    struct shoal_addr a1 = addr_of(1);
    shoal_registry_sync_with(reg[0], now, &a1);
    deliver(now);
    CHECK(digests_equal(0, 1));
    shoal_registry_sync_with(reg[2], now, &a1);
    deliver(now);
    CHECK(digests_equal(0, 2));
    CHECK_EQ(count(2, "odd", true), 250);
    teardown();
}

TEST(big_event_notice, "an instance too big for a datagram travels as a notice and a pull")
{
    setup();
    int64_t now = 0;
    static char val[3000];
    memset(val, 'm', sizeof(val) - 1);
    struct shoal_kv kv[3] = {{(char *)"a", val}, {(char *)"b", val}, {(char *)"c", val}};
    struct shoal_instance in = spec("fat", "svc", 1);
    in.meta = kv;
    in.n_meta = 3;
    CHECK(shoal_registry_register(reg[0], now, 1, &in, NULL) == 0);
    run(&now, 100);
    for (int i = 1; i < NODES; i++) {
        const struct shoal_instance *got = get(i, "svc", "fat");
        CHECKF(got != NULL, "node %d", i);
        CHECK(got->n_meta == 3 && strlen(got->meta[2].value) == sizeof(val) - 1);
    }
    CHECK(shoal_registry_stats(reg[0])->notices_sent > 0);
    teardown();
}

TEST(queries, "queries filter by tags, meta and health; services count passing and all")
{
    setup();
    int64_t now = 0;
    char *t1[] = {(char *)"v1"}, *t2[] = {(char *)"v1", (char *)"canary"};
    struct shoal_kv m1[] = {{(char *)"zone", (char *)"a"}};
    struct shoal_instance a = spec("a", "web", 1), b = spec("b", "web", 2), c = spec("c", "web", 3);
    a.tags = t1;
    a.n_tags = 1;
    b.tags = t2;
    b.n_tags = 2;
    b.meta = m1;
    b.n_meta = 1;
    c.ttl_ms = 5000; /* critical until heartbeated */
    shoal_registry_register(reg[0], now, 1, &a, NULL);
    shoal_registry_register(reg[0], now, 1, &b, NULL);
    shoal_registry_register(reg[0], now, 1, &c, NULL);
    const char *v1[] = {"v1"}, *canary[] = {"canary"};
    struct shoal_query qq = {.service = "web", .tags = v1, .n_tags = 1};
    CHECK_EQ(shoal_registry_query(reg[0], &qq, NULL, 0), 2);
    qq.tags = canary;
    CHECK_EQ(shoal_registry_query(reg[0], &qq, NULL, 0), 1);
    qq = (struct shoal_query){.service = "web", .meta = m1, .n_meta = 1};
    CHECK_EQ(shoal_registry_query(reg[0], &qq, NULL, 0), 1);
    CHECK_EQ(count(0, "web", false), 2);
    CHECK_EQ(count(0, "web", true), 3);
    CHECK_EQ(count(0, "nope", true), 0);
    struct shoal_service_summary sum[4];
    CHECK_EQ(shoal_registry_services(reg[0], sum, 4), 1);
    CHECK(strcmp(sum[0].name, "web") == 0 && sum[0].passing == 2 && sum[0].total == 3);
    const struct shoal_instance *out[4];
    qq = (struct shoal_query){.service = "web", .all = true};
    CHECK_EQ(shoal_registry_query(reg[0], &qq, out, 4), 3);
    CHECK(strcmp(out[0]->id, "a") == 0 && strcmp(out[2]->id, "c") == 0); /* sorted */
    teardown();
}

TEST(tombstone_gc, "tombstones are collected after their TTL and an old event still stays out")
{
    setup();
    int64_t now = 0;
    shoal_registry_free(reg[1]);
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "n1");
    c.generation = 1;
    c.send = net_send;
    c.peers = net_peers;
    c.ud = (void *)(intptr_t)1;
    c.sync_interval_ms = 0;
    c.tombstone_ttl_ms = 10000;
    c.reap_ms = 10000; /* a tombstone must outlive the reap (shoal_registry_config_check) */
    reg[1] = shoal_registry_new(&c, NULL);
    CHECK(reg[1] != NULL);
    struct shoal_instance ev = spec("x", "svc", 1);
    snprintf(ev.owner, sizeof(ev.owner), "n9");
    ev.generation = 1;
    ev.version = 2;
    ev.deleted = true;
    struct shoal_reg_msg m = {.type = SHOAL_REG_GOSSIP, .n_events = 1, .events = &ev};
    snprintf(m.from, sizeof(m.from), "n9");
    struct shoal_reg_peer src = {.addr = addr_of(9)};
    shoal_registry_recv(reg[1], now, &src, &m);
    size_t by[SHOAL_HEALTH_COUNT], tombs;
    shoal_registry_counts(reg[1], by, &tombs);
    CHECK_EQ(tombs, 1);
    run(&now, 12000);
    shoal_registry_counts(reg[1], by, &tombs);
    CHECK_EQ(tombs, 0);
    CHECK_EQ(shoal_registry_stats(reg[1])->tombstones_collected, 1);
    ev.deleted = false;
    ev.version = 1;
    shoal_registry_recv(reg[1], now, &src, &m);
    CHECK(get(1, "svc", "x") == NULL);
    teardown();
}

TEST(leave_deregisters, "a graceful leave deregisters every own instance everywhere")
{
    setup();
    int64_t now = 0;
    struct shoal_instance a = spec("a", "svc", 1), b = spec("b", "svc", 2);
    shoal_registry_register(reg[0], now, 1, &a, NULL);
    shoal_registry_register(reg[0], now, 1, &b, NULL);
    run(&now, 50);
    CHECK_EQ(count(2, "svc", true), 2);
    shoal_registry_leave(reg[0], now);
    CHECK_EQ(shoal_registry_own(reg[0], NULL, 0), 0);
    run(&now, 100);
    CHECK_EQ(count(1, "svc", true), 0);
    CHECK_EQ(count(2, "svc", true), 0);
    teardown();
}

TEST_MAIN()

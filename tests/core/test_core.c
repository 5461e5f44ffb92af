/* test_core.c -- unit tests of core: precedence rules, the dissemination
 * queue's limits, the member table, addresses and durations, and a small
 * in-memory exchange between real swim instances (virtual time). */
#include <stdint.h>

#include "core/addr.h"
#include "core/dissem.h"
#include "core/members.h"
#include "core/swim.h"
#include "shoal/error.h"
#include "test.h"

static struct shoal_update upd(const char *name, uint64_t gen, uint32_t inc, uint8_t st)
{
    struct shoal_update u;
    memset(&u, 0, sizeof(u));
    snprintf(u.name, sizeof(u.name), "%s", name);
    u.generation = gen;
    u.incarnation = inc;
    u.status = st;
    shoal_addr_parse("127.0.0.1:7000", &u.addr);
    return u;
}

static bool over(uint8_t st, uint32_t i, uint8_t held, uint32_t j)
{
    struct shoal_update u = upd("m", 1, i, st);
    return shoal_update_overrides(&u, 1, j, held);
}

TEST(alive_precedence, "alive overrides alive, suspect and dead only with a higher incarnation")
{
    CHECK(over(SHOAL_ALIVE, 2, SHOAL_ALIVE, 1));
    CHECK(!over(SHOAL_ALIVE, 1, SHOAL_ALIVE, 1));
    CHECK(over(SHOAL_ALIVE, 2, SHOAL_SUSPECT, 1));
    CHECK(!over(SHOAL_ALIVE, 1, SHOAL_SUSPECT, 1));
    CHECK(over(SHOAL_ALIVE, 2, SHOAL_DEAD, 1));
    CHECK(!over(SHOAL_ALIVE, 1, SHOAL_DEAD, 1));
    CHECK(!over(SHOAL_ALIVE, 0, SHOAL_DEAD, 1));
}

TEST(suspect_precedence, "suspect overrides alive at >= incarnation and suspect only at >")
{
    CHECK(over(SHOAL_SUSPECT, 1, SHOAL_ALIVE, 1));
    CHECK(over(SHOAL_SUSPECT, 2, SHOAL_ALIVE, 1));
    CHECK(!over(SHOAL_SUSPECT, 0, SHOAL_ALIVE, 1));
    CHECK(!over(SHOAL_SUSPECT, 1, SHOAL_SUSPECT, 1));
    CHECK(over(SHOAL_SUSPECT, 2, SHOAL_SUSPECT, 1));
    CHECK(!over(SHOAL_SUSPECT, 5, SHOAL_DEAD, 1));
    CHECK(!over(SHOAL_SUSPECT, 5, SHOAL_LEFT, 1));
}

TEST(dead_precedence, "dead overrides everything but a later alive; left is a graceful dead")
{
    CHECK(over(SHOAL_DEAD, 1, SHOAL_ALIVE, 1));
    CHECK(!over(SHOAL_DEAD, 1, SHOAL_ALIVE, 2));
    CHECK(over(SHOAL_DEAD, 1, SHOAL_SUSPECT, 1));
    CHECK(!over(SHOAL_DEAD, 1, SHOAL_DEAD, 1));
    CHECK(!over(SHOAL_DEAD, 1, SHOAL_LEFT, 1));
    CHECK(over(SHOAL_LEFT, 1, SHOAL_ALIVE, 1));
    CHECK(over(SHOAL_LEFT, 1, SHOAL_DEAD, 1));
    CHECK(!over(SHOAL_LEFT, 1, SHOAL_LEFT, 1));
}

TEST(generation_precedence, "a newer generation overrides any state of the old one")
{
    struct shoal_update u = upd("m", 2, 0, SHOAL_ALIVE);
    CHECK(shoal_update_overrides(&u, 1, 50, SHOAL_DEAD));
    CHECK(shoal_update_overrides(&u, 1, 50, SHOAL_LEFT));
    u = upd("m", 1, 99, SHOAL_ALIVE);
    CHECK(!shoal_update_overrides(&u, 2, 0, SHOAL_DEAD));
}

TEST(dissem_replaces, "a newer update about a member replaces the queued one")
{
    struct shoal_dissem q;
    shoal_dissem_init(&q);
    struct shoal_update a = upd("a", 1, 1, SHOAL_ALIVE), a2 = upd("a", 1, 2, SHOAL_SUSPECT);
    CHECK_EQ(shoal_dissem_push(&q, &a), 0);
    CHECK_EQ(shoal_dissem_push(&q, &a2), 0);
    CHECK_EQ(shoal_dissem_len(&q), 1);
    static struct shoal_msg m;
    uint32_t budget = 10000;
    CHECK_EQ(shoal_dissem_fill(&q, &m, &budget, 4, NULL), 1);
    CHECK_EQ(m.updates[0].incarnation, 2);
    CHECK_EQ(m.updates[0].status, SHOAL_SUSPECT);
    shoal_dissem_close(&q);
}

TEST(dissem_limit, "an update is sent at most limit times, then leaves the queue")
{
    struct shoal_dissem q;
    shoal_dissem_init(&q);
    struct shoal_update a = upd("a", 1, 1, SHOAL_ALIVE);
    shoal_dissem_push(&q, &a);
    static struct shoal_msg m;
    int sent = 0;
    for (int i = 0; i < 10; i++) {
        uint32_t budget = 10000;
        m.n_updates = 0;
        sent += (int)shoal_dissem_fill(&q, &m, &budget, 3, NULL);
    }
    CHECK_EQ(sent, 3);
    CHECK_EQ(shoal_dissem_len(&q), 0);
    shoal_dissem_close(&q);
}

TEST(dissem_order_budget, "fills take least-sent then newest first and respect the byte budget")
{
    struct shoal_dissem q;
    shoal_dissem_init(&q);
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "node-%02d", i);
        struct shoal_update u = upd(name, 1, 0, SHOAL_ALIVE);
        shoal_dissem_push(&q, &u);
    }
    static struct shoal_msg m;
    uint32_t cost = shoal_update_cost(&m.updates[0]) + 7; /* "node-NN" */
    uint32_t budget = cost * 5 + cost / 2;
    size_t n = shoal_dissem_fill(&q, &m, &budget, 100, NULL);
    CHECK_EQ(n, 5);
    CHECK(budget < cost);
    CHECK(strcmp(m.updates[0].name, "node-39") == 0); /* newest first */
    /* Next fill prefers the 35 never-sent entries over the 5 sent once. */
    m.n_updates = 0;
    budget = cost * 35;
    CHECK_EQ(shoal_dissem_fill(&q, &m, &budget, 100, NULL), 35);
    for (uint32_t i = 0; i < m.n_updates; i++)
        CHECK(strcmp(m.updates[i].name, "node-35") < 0);
    /* A skipped member is left out but stays queued. */
    m.n_updates = 0;
    budget = 100000;
    shoal_dissem_fill(&q, &m, &budget, 100, "node-00");
    for (uint32_t i = 0; i < m.n_updates; i++)
        CHECK(strcmp(m.updates[i].name, "node-00") != 0);
    CHECK(shoal_dissem_transmits(&q, "node-00") == 1);
    shoal_dissem_close(&q);
}

TEST(members_table, "the member table finds, grows and removes by name")
{
    struct shoal_members t;
    CHECK_EQ(shoal_members_init(&t), 0);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        struct shoal_member *m = shoal_members_add(&t, name);
        CHECK(m != NULL);
        m->info.incarnation = (uint32_t)i;
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        struct shoal_member *m = shoal_members_find(&t, name);
        CHECK(m && m->info.incarnation == (uint32_t)i);
    }
    shoal_members_remove(&t, 10);
    CHECK(shoal_members_find(&t, "n10") == NULL);
    CHECK(shoal_members_find(&t, "n999") != NULL);
    CHECK_EQ(t.n, 999);
    shoal_members_close(&t);
}

TEST(addr_and_duration, "addresses and durations parse strictly")
{
    struct shoal_addr a;
    char buf[SHOAL_ADDR_STRLEN];
    CHECK_EQ(shoal_addr_parse("127.0.0.1:7946", &a), 0);
    CHECK(strcmp(shoal_addr_format(&a, buf, sizeof(buf)), "127.0.0.1:7946") == 0);
    CHECK_EQ(shoal_addr_parse("[::1]:80", &a), 0);
    CHECK(strcmp(shoal_addr_format(&a, buf, sizeof(buf)), "[::1]:80") == 0);
    CHECK(shoal_addr_parse("127.0.0.1", &a) < 0);
    CHECK(shoal_addr_parse("127.0.0.1:0", &a) < 0);
    CHECK(shoal_addr_parse("127.0.0.1:65536", &a) < 0);
    CHECK(shoal_addr_parse("host:80", &a) < 0);
    CHECK(shoal_addr_parse("1.2.3.4:80x", &a) < 0);
    uint32_t ms;
    CHECK(shoal_duration_parse("250ms", &ms) == 0 && ms == 250);
    CHECK(shoal_duration_parse("2s", &ms) == 0 && ms == 2000);
    CHECK(shoal_duration_parse("1.5s", &ms) == 0 && ms == 1500);
    CHECK(shoal_duration_parse("1m", &ms) == 0 && ms == 60000);
    CHECK(shoal_duration_parse("10", &ms) == 0 && ms == 10);
    CHECK(shoal_duration_parse("-1s", &ms) < 0);
    CHECK(shoal_duration_parse("5x", &ms) < 0);
    CHECK(shoal_duration_parse("", &ms) < 0);
    CHECK(shoal_name_valid("node-1.a_b"));
    CHECK(!shoal_name_valid("-node"));
    CHECK(!shoal_name_valid("a b"));
    CHECK(!shoal_name_valid(""));
}

/* ---- a tiny lossless in-memory network for a handful of real cores ---- */
#define NET_NODES 4
#define NET_QUEUE 4096
struct pkt {
    int64_t at;
    int to;
    struct shoal_addr from;
    struct shoal_msg m;
};
static struct pkt *net_q;
static size_t net_n;
static struct shoal_swim *nodes[NET_NODES];
static bool crashed[NET_NODES];
static int cur_sender;

static int node_of(const struct shoal_addr *a)
{
    return a->port - 9000;
}

static void net_send(void *ud, const struct shoal_addr *to, const struct shoal_msg *m)
{
    int from = (int)(intptr_t)ud;
    (void)cur_sender;
    CHECK(net_n < NET_QUEUE);
    struct pkt *p = &net_q[net_n++];
    p->to = node_of(to);
    p->at = -1; /* stamped by the loop */
    shoal_addr_parse("127.0.0.1:9000", &p->from);
    p->from.port = (uint16_t)(9000 + from);
    p->m = *m;
}

static struct shoal_swim *mk(int i, int64_t now)
{
    struct shoal_swim_config c;
    shoal_swim_config_defaults(&c);
    snprintf(c.name, sizeof(c.name), "n%d", i);
    shoal_addr_parse("127.0.0.1:9000", &c.addr);
    c.addr.port = (uint16_t)(9000 + i);
    c.generation = 1;
    c.seed = 42 + (uint64_t)i;
    c.send = net_send;
    c.ud = (void *)(intptr_t)i;
    int err = 0;
    struct shoal_swim *s = shoal_swim_new(&c, now, &err);
    CHECK(s != NULL);
    return s;
}

/* Runs the cluster in 1 ms virtual steps with 1 ms latency until `until`. */
static void run(int64_t *now, int64_t until)
{
    static struct pkt inflight[NET_QUEUE];
    while (*now < until) {
        (*now)++;
        size_t n = net_n;
        memcpy(inflight, net_q, n * sizeof(*net_q));
        net_n = 0;
        for (size_t i = 0; i < n; i++) {
            struct pkt *p = &inflight[i];
            if (p->to >= 0 && p->to < NET_NODES && nodes[p->to] && !crashed[p->to])
                shoal_swim_recv(nodes[p->to], *now, &p->from, &p->m);
        }
        for (int i = 0; i < NET_NODES; i++)
            if (nodes[i] && !crashed[i] && shoal_swim_next_deadline(nodes[i]) <= *now)
                shoal_swim_tick(nodes[i], *now);
    }
}

static int status_of(int viewer, int who)
{
    struct shoal_member_info mi;
    char name[32];
    snprintf(name, sizeof(name), "n%d", who);
    return shoal_swim_member_find(nodes[viewer], name, &mi) ? mi.status : -1;
}

TEST(small_cluster_join_crash, "4 real cores join through one seed, then detect a crash")
{
    net_q = calloc(NET_QUEUE, sizeof(*net_q));
    int64_t now = 0;
    for (int i = 0; i < NET_NODES; i++)
        nodes[i] = mk(i, now);
    struct shoal_addr seed;
    shoal_addr_parse("127.0.0.1:9000", &seed);
    for (int i = 1; i < NET_NODES; i++)
        CHECK_EQ(shoal_swim_join(nodes[i], now, &seed, 1), 0);
    run(&now, 3000);
    for (int v = 0; v < NET_NODES; v++)
        for (int w = 0; w < NET_NODES; w++)
            CHECKF(status_of(v, w) == SHOAL_ALIVE, "n%d sees n%d as %d", v, w, status_of(v, w));
    crashed[3] = true;
    /* Bound: probe round (N periods) + suspicion max (6*4*1 s) + slack. */
    int64_t crash_at = now;
    while (now < crash_at + 40000) {
        run(&now, now + 100);
        if (status_of(0, 3) == SHOAL_DEAD && status_of(1, 3) == SHOAL_DEAD &&
            status_of(2, 3) == SHOAL_DEAD)
            break;
    }
    for (int v = 0; v < 3; v++) {
        CHECKF(status_of(v, 3) == SHOAL_DEAD, "n%d sees n3 as %d", v, status_of(v, 3));
        for (int w = 0; w < 3; w++)
            CHECK(status_of(v, w) == SHOAL_ALIVE);
    }
    fprintf(stderr, "crash detected by all after %lld ms\n", (long long)(now - crash_at));
    CHECK(shoal_swim_stats(nodes[0])->probes_sent > 0);
    /* Graceful leave of n2: the others see left, not dead. */
    shoal_swim_leave(nodes[2], now);
    int64_t t0 = now;
    while (!shoal_swim_leave_done(nodes[2]) && now < t0 + 5000)
        run(&now, now + 10);
    CHECK(shoal_swim_leave_done(nodes[2]));
    crashed[2] = true;
    run(&now, now + 2000);
    CHECK_EQ(status_of(0, 2), SHOAL_LEFT);
    CHECK_EQ(status_of(1, 2), SHOAL_LEFT);
    for (int i = 0; i < NET_NODES; i++)
        shoal_swim_free(nodes[i]);
    free(net_q);
}

TEST(self_refutes, "a node told it is suspect raises its incarnation and says alive")
{
    net_q = calloc(NET_QUEUE, sizeof(*net_q));
    int64_t now = 0;
    nodes[0] = mk(0, now);
    nodes[1] = mk(1, now);
    struct shoal_addr seed;
    shoal_addr_parse("127.0.0.1:9000", &seed);
    shoal_swim_join(nodes[1], now, &seed, 1);
    run(&now, 1000);
    static struct shoal_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_MSG_GOSSIP;
    snprintf(m.from, sizeof(m.from), "n1");
    m.n_updates = 1;
    m.updates[0] = upd("n0", 1, 0, SHOAL_SUSPECT);
    m.updates[0].addr.port = 9000;
    snprintf(m.updates[0].from, sizeof(m.updates[0].from), "n1");
    shoal_swim_recv(nodes[0], now, &seed, &m);
    struct shoal_member_info mi;
    CHECK(shoal_swim_member_find(nodes[0], "n0", &mi));
    CHECK_EQ(mi.status, SHOAL_ALIVE);
    CHECK_EQ(mi.incarnation, 1);
    CHECK_EQ(shoal_swim_stats(nodes[0])->refutes, 1);
    CHECK(shoal_swim_health(nodes[0]) >= 1);
    /* A newer generation of our own name is another node: a conflict. */
    m.updates[0] = upd("n0", 7, 0, SHOAL_ALIVE);
    shoal_swim_recv(nodes[0], now, &seed, &m);
    CHECK_EQ(shoal_swim_stats(nodes[0])->conflicts, 1);
    CHECK(shoal_swim_member_find(nodes[0], "n0", &mi) && mi.generation == 1);
    shoal_swim_free(nodes[0]);
    shoal_swim_free(nodes[1]);
    free(net_q);
}

TEST(config_rejected, "a config with a bad name or timeout >= interval is refused")
{
    struct shoal_swim_config c;
    shoal_swim_config_defaults(&c);
    snprintf(c.name, sizeof(c.name), "bad name");
    shoal_addr_parse("127.0.0.1:9000", &c.addr);
    c.send = net_send;
    int err = 0;
    CHECK(shoal_swim_new(&c, 0, &err) == NULL && err == SHOAL_EINVAL);
    snprintf(c.name, sizeof(c.name), "ok");
    c.probe_timeout_ms = c.probe_interval_ms;
    CHECK(shoal_swim_new(&c, 0, &err) == NULL);
}

TEST_MAIN()

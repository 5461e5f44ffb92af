/* test_adapter.c -- the libev adapter against the real libev and real UDP.
 *
 * Several shoal_node instances share one ev loop in the test process, each
 * with its own UDP socket on 127.0.0.1, driven only by their ev_io and
 * ev_timer watchers (STYLE.md: a fake loop once hid an ack-timeout bug).
 * Protocol intervals are short (probe 100 ms) and every bound is generous:
 * a test waits for a condition, it never asserts on elapsed time. Also here:
 * the API handlers on a live node, the data dir, and the agent process
 * itself (flags, port clashes, HTTP leave, SIGTERM, generation on restart).
 */
#define _GNU_SOURCE /* nftw() */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "io/agent.h"
#include "io/api.h"
#include "io/joiner.h"
#include "io/datadir.h"
#include "io/log.h"
#include "io/node.h"
#include "test.h"

TEST_MAIN()

/* ------------------------------------------------------------ helpers */

#define MAX_REC 512

/* What one node's observer saw: every event, in order. */
struct obs {
    struct shoal_node *node;
    int left_calls;
    int joined;
    size_t n;
    struct {
        char name[SHOAL_NAME_MAX];
        uint8_t type, old_status, status;
    } rec[MAX_REC];
};

static void obs_event(void *ud, const struct shoal_event *ev)
{
    struct obs *o = ud;
    if (ev->type == SHOAL_EV_JOINED)
        o->joined++;
    if (o->n < MAX_REC) {
        snprintf(o->rec[o->n].name, SHOAL_NAME_MAX, "%s", ev->member->name);
        o->rec[o->n].type = (uint8_t)ev->type;
        o->rec[o->n].old_status = ev->old_status;
        o->rec[o->n].status = ev->member->status;
        o->n++;
    }
}

static void obs_left(void *ud) { ((struct obs *)ud)->left_calls++; }

/* Index of the first status event about name with the given new status. */
static long obs_find(const struct obs *o, const char *name, uint8_t status)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->rec[i].type == SHOAL_EV_MEMBER_STATUS && o->rec[i].status == status &&
            strcmp(o->rec[i].name, name) == 0)
            return (long)i;
    return -1;
}

static uint64_t test_seed;

/* Fast protocol constants: probe 100 ms so that detection takes seconds. */
static void fast_config(struct shoal_node_config *c, const char *name, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    shoal_swim_config_defaults(&c->swim);
    snprintf(c->swim.name, sizeof(c->swim.name), "%s", name);
    c->swim.generation = 1;
    c->swim.seed = seed;
    c->swim.probe_interval_ms = 100;
    c->swim.probe_timeout_ms = 40;
    c->swim.gossip_interval_ms = 20;
    c->swim.pushpull_interval_ms = 1000;
    c->swim.gossip_to_dead_ms = 1000;
    c->swim.join_retry_min_ms = 100;
    c->swim.join_retry_max_ms = 1000;
    CHECK(shoal_addr_parse("127.0.0.1:1", &c->bind) == 0);
    c->bind.port = 0; /* any free port; the node advertises what it got */
    shoal_identity_generate(&c->identity);
    c->seq_start = 1;
}

static struct shoal_node *start_node(struct ev_loop *loop, struct obs *o, const char *name,
                                     uint64_t seed)
{
    struct shoal_node_config c;
    int err = 0;
    fast_config(&c, name, seed);
    c.event = obs_event;
    c.left = obs_left;
    c.ud = o;
    memset(o, 0, sizeof(*o));
    o->node = shoal_node_new(loop, &c, &err);
    CHECKF(o->node != NULL, "shoal_node_new(%s): %d", name, err);
    return o->node;
}

struct until {
    bool (*pred)(void *);
    void *ud;
    bool ok;
};

static void until_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct until *u = w->data;
    if (u->pred(u->ud)) {
        u->ok = true;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void until_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until pred holds (checked every 5 ms) or max_s passes. */
static bool run_until(struct ev_loop *loop, bool (*pred)(void *), void *ud, double max_s)
{
    struct until u = {pred, ud, false};
    ev_timer check, deadline;
    if (pred(ud))
        return true;
    ev_now_update(loop);
    ev_timer_init(&check, until_check, 0.005, 0.005);
    check.data = &u;
    ev_timer_init(&deadline, until_deadline, max_s, 0.);
    ev_timer_start(loop, &check);
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &check);
    ev_timer_stop(loop, &deadline);
    return u.ok || pred(ud);
}

static bool never(void *ud) { return false; }

static void run_for(struct ev_loop *loop, double s) { (void)run_until(loop, never, NULL, s); }

/* A set of nodes, and the condition "each sees exactly these, all alive". */
struct group {
    struct obs *o[4];
    size_t n;
};

static uint8_t status_of(struct shoal_node *n, const char *name)
{
    struct shoal_member_info mi;
    if (!shoal_swim_member_find(shoal_node_swim(n), name, &mi))
        return 0xff;
    return mi.status;
}

static bool group_all_alive(void *ud)
{
    struct group *g = ud;
    for (size_t i = 0; i < g->n; i++) {
        struct shoal_swim *s = shoal_node_swim(g->o[i]->node);
        if (shoal_swim_member_count(s) != g->n)
            return false;
        for (size_t j = 0; j < g->n; j++) {
            const char *name = shoal_swim_config(shoal_node_swim(g->o[j]->node))->name;
            if (status_of(g->o[i]->node, name) != SHOAL_ALIVE)
                return false;
        }
    }
    return true;
}

/* Starts names[] on loop, joins all to the first, waits for convergence. */
static void start_group(struct ev_loop *loop, struct group *g, struct obs *obs,
                        const char *const *names, size_t n)
{
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        g->o[i] = &obs[i];
        start_node(loop, &obs[i], names[i], test_seed + i);
    }
    for (size_t i = 1; i < n; i++)
        CHECK(shoal_node_join(obs[i].node, shoal_node_addr(obs[0].node), 1) == 0);
    CHECKF(run_until(loop, group_all_alive, g, 15.0), "%zu nodes did not converge", n);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* rm -rf of a test's temporary directory. */
static void rm_tree(const char *dir) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* ------------------------------------------------ membership over UDP */

TEST(converge, "three nodes on real UDP sockets join and all see all alive")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct group g;

    TEST_SEED(test_seed, 1);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 3);
    for (size_t i = 1; i < 3; i++)
        CHECK(obs[i].joined >= 1);
    for (size_t i = 0; i < 3; i++) {
        const struct shoal_node_counters *c = shoal_node_counters(obs[i].node);
        CHECK(c->packets_in > 0 && c->packets_out > 0);
        CHECK(c->bytes_in > c->packets_in && c->bytes_out > c->packets_out);
        for (int d = 0; d < SHOAL_DROP_COUNT; d++)
            CHECK_EQ(c->drops[d], 0);
        CHECK_EQ(c->seal_errors, 0);
        CHECK_EQ(c->send_errors, 0);
        CHECK_EQ(c->stuck_deadlines, 0);
        CHECK(!shoal_swim_joining(shoal_node_swim(obs[i].node)));
    }
    /* Members carry the addresses the nodes really bound. */
    struct shoal_member_info mi;
    CHECK(shoal_swim_member_find(shoal_node_swim(obs[0].node), "n3", &mi));
    CHECK(shoal_addr_eq(&mi.addr, shoal_node_bound(obs[2].node)));
    for (size_t i = 0; i < 3; i++)
        shoal_node_free(obs[i].node);
    ev_loop_destroy(loop);
}

struct dead_watch {
    struct obs *a, *b;
    const char *name;
};

static bool both_see_dead(void *ud)
{
    struct dead_watch *w = ud;
    return status_of(w->a->node, w->name) == SHOAL_DEAD &&
           status_of(w->b->node, w->name) == SHOAL_DEAD;
}

TEST(detect, "a node whose socket closes is suspected, then dead, through ev_timer alone")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct group g;

    TEST_SEED(test_seed, 2);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 3);
    uint64_t failed_before = shoal_swim_stats(shoal_node_swim(obs[0].node))->probes_failed +
                             shoal_swim_stats(shoal_node_swim(obs[1].node))->probes_failed;

    /* n3 vanishes without a word: its socket is closed, its timer gone. */
    shoal_node_free(obs[2].node);
    obs[2].node = NULL;

    /* Nothing but the nodes' own ev_timer and ev_io watchers drives them
     * from here: missed acks must time out, suspicion must expire. */
    struct dead_watch w = {&obs[0], &obs[1], "n3"};
    CHECKF(run_until(loop, both_see_dead, &w, 30.0), "n3 not declared dead: n1 sees %d, n2 %d",
           status_of(obs[0].node, "n3"), status_of(obs[1].node, "n3"));
    for (int i = 0; i < 2; i++) {
        long sus = obs_find(&obs[i], "n3", SHOAL_SUSPECT);
        long dead = obs_find(&obs[i], "n3", SHOAL_DEAD);
        CHECKF(dead >= 0, "node %d saw no dead event", i);
        /* Suspected first -- by itself or through the other's gossip. */
        CHECKF(sus >= 0 && sus < dead, "node %d: suspect at %ld, dead at %ld", i, sus, dead);
        CHECK_EQ(status_of(obs[i].node, names[1 - i]), SHOAL_ALIVE);
    }
    const struct shoal_swim_stats *s1 = shoal_swim_stats(shoal_node_swim(obs[0].node));
    const struct shoal_swim_stats *s2 = shoal_swim_stats(shoal_node_swim(obs[1].node));
    CHECK(s1->probes_failed + s2->probes_failed > failed_before);
    CHECK(s1->suspicions + s2->suspicions >= 1);
    CHECK(s1->deaths + s2->deaths >= 1);
    shoal_node_free(obs[0].node);
    shoal_node_free(obs[1].node);
    ev_loop_destroy(loop);
}

static bool left_seen(void *ud)
{
    struct obs *o = ud;
    return o[2].left_calls == 1 && status_of(o[0].node, "n3") == SHOAL_LEFT &&
           status_of(o[1].node, "n3") == SHOAL_LEFT;
}

TEST(leave, "a leaving node reports done and the others see it left")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct group g;

    TEST_SEED(test_seed, 3);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 3);
    shoal_node_leave(obs[2].node);
    CHECK(shoal_node_leaving(obs[2].node));
    CHECK_EQ(shoal_node_join(obs[2].node, shoal_node_addr(obs[0].node), 1), SHOAL_ESTATE);
    CHECKF(run_until(loop, left_seen, obs, 15.0), "left_calls=%d n1 sees %d n2 sees %d",
           obs[2].left_calls, status_of(obs[0].node, "n3"), status_of(obs[1].node, "n3"));
    shoal_node_leave(obs[2].node); /* repeated: no second report */
    run_for(loop, 0.2);
    CHECK_EQ(obs[2].left_calls, 1);
    for (size_t i = 0; i < 3; i++)
        shoal_node_free(obs[i].node);
    ev_loop_destroy(loop);
}

static bool timer_fired(void *ud) { return shoal_node_counters(ud)->timer_fires >= 3; }

TEST(no_spin, "nodes sleep until their next deadline instead of spinning")
{
    static const char *const names[] = {"n1", "n2"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct group g;

    TEST_SEED(test_seed, 4);
    shoal_log_set_level(SHOAL_LOG_WARN);
    /* Alone: probe every 100 ms, push-pull every 1 s; no gossip queued. */
    start_node(loop, &obs[2], "solo", test_seed);
    CHECK(run_until(loop, timer_fired, obs[2].node, 5.0));
    uint64_t solo0 = shoal_node_counters(obs[2].node)->timer_fires;
    run_for(loop, 1.0);
    uint64_t solo = shoal_node_counters(obs[2].node)->timer_fires - solo0;
    shoal_node_free(obs[2].node);

    /* Two busy nodes: gossip every 20 ms, probes, acks. A timer re-armed
     * at "now" because of a rounding slip fires thousands of times. */
    start_group(loop, &g, obs, names, 2);
    uint64_t t0 = shoal_node_counters(obs[0].node)->timer_fires;
    run_for(loop, 1.0);
    uint64_t busy = shoal_node_counters(obs[0].node)->timer_fires - t0;
    fprintf(stderr, "timer fires in 1 s: solo %" PRIu64 ", busy %" PRIu64 "\n", solo, busy);
    CHECKF(solo >= 5 && solo <= 100, "solo fired %" PRIu64 " times", solo);
    CHECKF(busy >= 5 && busy <= 400, "busy fired %" PRIu64 " times", busy);
    CHECK_EQ(shoal_node_counters(obs[0].node)->stuck_deadlines, 0);
    shoal_node_free(obs[0].node);
    shoal_node_free(obs[1].node);
    ev_loop_destroy(loop);
}

/* ---------------------------------------------------- bad datagrams */

static uint64_t drops_total(struct shoal_node *n)
{
    uint64_t t = 0;
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        t += shoal_node_counters(n)->drops[i];
    return t;
}

struct drop_wait {
    struct shoal_node *n;
    uint64_t want;
};

static bool drops_reached(void *ud)
{
    struct drop_wait *w = ud;
    return drops_total(w->n) >= w->want;
}

static void send_raw(int fd, const struct shoal_addr *to, const void *buf, size_t len)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(to->port)};
    memcpy(&sin.sin_addr, to->ip, 4);
    CHECK(sendto(fd, buf, len, 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)len);
}

struct snapshot {
    size_t n;
    struct shoal_member_info m[8];
};

static void snap(struct shoal_node *node, struct snapshot *s)
{
    struct shoal_swim *sw = shoal_node_swim(node);
    s->n = shoal_swim_member_count(sw);
    CHECK(s->n <= 8);
    for (size_t i = 0; i < s->n; i++)
        CHECK(shoal_swim_member_at(sw, i, &s->m[i]));
}

static void snap_same(const struct snapshot *a, const struct snapshot *b)
{
    CHECK_EQ(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        CHECK(strcmp(a->m[i].name, b->m[i].name) == 0);
        CHECK_EQ(a->m[i].status, b->m[i].status);
        CHECK_EQ(a->m[i].incarnation, b->m[i].incarnation);
        CHECK_EQ(a->m[i].generation, b->m[i].generation);
        CHECK(shoal_addr_eq(&a->m[i].addr, &b->m[i].addr));
    }
}

TEST(drops, "garbage, oversize, tampered and replayed datagrams are counted drops")
{
    static const char *const names[] = {"n1", "n2"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[2];
    static uint8_t buf[2048];
    struct snapshot before, after;
    struct shoal_member_info n2;
    struct group g;

    TEST_SEED(test_seed, 5);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 2);
    struct shoal_node *n1 = obs[0].node;
    const struct shoal_addr *to = shoal_node_bound(n1);
    const struct shoal_node_counters *c = shoal_node_counters(n1);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    snap(n1, &before);
    CHECK(shoal_swim_member_find(shoal_node_swim(n1), "n2", &n2));

    /* 1. random bytes */
    for (size_t i = 0; i < 100; i++)
        buf[i] = (uint8_t)(test_seed * 131 + i * 7919);
    send_raw(fd, to, buf, 100);
    /* 2. bigger than max_datagram (1400) */
    memset(buf, 'S', 2000);
    send_raw(fd, to, buf, 2000);
    /* 3. a well-formed, signed claim that n2 is dead, altered after signing */
    struct shoal_identity intruder;
    shoal_identity_generate(&intruder);
    struct shoal_wire *w = shoal_wire_new(&intruder, NULL, 1000, 1400);
    CHECK(w != NULL);
    static struct shoal_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_MSG_GOSSIP;
    snprintf(m.from, sizeof(m.from), "intruder");
    m.n_updates = 1;
    snprintf(m.updates[0].name, sizeof(m.updates[0].name), "n2");
    m.updates[0].addr = n2.addr;
    m.updates[0].generation = n2.generation;
    m.updates[0].incarnation = n2.incarnation + 5;
    m.updates[0].status = SHOAL_DEAD;
    snprintf(m.updates[0].from, sizeof(m.updates[0].from), "intruder");
    int len = shoal_wire_seal(w, &m, buf, sizeof(buf));
    CHECK(len > 0);
    buf[len - 1] ^= 0x01;
    send_raw(fd, to, buf, (size_t)len);

    struct drop_wait dw = {n1, 3};
    CHECKF(run_until(loop, drops_reached, &dw, 10.0), "drops=%" PRIu64, drops_total(n1));
    run_for(loop, 0.3); /* anything they could have set off has had time */
    CHECK_EQ(drops_total(n1), 3);
    CHECK_EQ(c->drops[SHOAL_DROP_TOO_LARGE], 1);
    CHECK_EQ(c->drops[SHOAL_DROP_BAD_SIGNATURE], 1);
    snap(n1, &after);
    snap_same(&before, &after);
    CHECK_EQ(status_of(obs[1].node, "n2"), SHOAL_ALIVE);
    CHECK(status_of(n1, "intruder") == 0xff);

    /* 4. a valid, harmless datagram is accepted once; its copy is a replay */
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_MSG_GOSSIP;
    snprintf(m.from, sizeof(m.from), "intruder");
    len = shoal_wire_seal(w, &m, buf, sizeof(buf));
    CHECK(len > 0);
    send_raw(fd, to, buf, (size_t)len);
    send_raw(fd, to, buf, (size_t)len);
    dw.want = 4;
    CHECKF(run_until(loop, drops_reached, &dw, 10.0), "drops=%" PRIu64, drops_total(n1));
    run_for(loop, 0.2);
    CHECK_EQ(drops_total(n1), 4);
    CHECK_EQ(c->drops[SHOAL_DROP_REPLAY], 1);
    CHECK_EQ(status_of(n1, "n2"), SHOAL_ALIVE);

    shoal_wire_free(w);
    close(fd);
    shoal_node_free(obs[0].node);
    shoal_node_free(obs[1].node);
    ev_loop_destroy(loop);
}

TEST(cluster_key, "with a cluster key, endorsed nodes converge and an outsider is dropped")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct shoal_cluster_key ck, other;
    char dir[] = "/tmp/shoal-test-XXXXXX", path[64], path2[64];
    struct group g = {{&obs[0], &obs[1]}, 2};

    TEST_SEED(test_seed, 6);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/cluster.key", dir);
    snprintf(path2, sizeof(path2), "%s/other.key", dir);
    CHECK(shoal_cluster_key_generate(path) == 0);
    CHECK(shoal_cluster_key_generate(path2) == 0);
    CHECK(shoal_cluster_key_load(path, &ck) == 0);
    CHECK(shoal_cluster_key_load(path2, &other) == 0);

    const char *names[] = {"n1", "n2", "outsider"};
    for (int i = 0; i < 3; i++) {
        struct shoal_node_config c;
        int err = 0;
        fast_config(&c, names[i], test_seed + (uint64_t)i);
        /* the outsider's identity is endorsed by another cluster's key */
        shoal_identity_endorse(&c.identity, i < 2 ? &ck : &other);
        c.has_cluster_key = true;
        memcpy(c.cluster_pk, i < 2 ? ck.pk : other.pk, SHOAL_PK_BYTES);
        c.event = obs_event;
        c.ud = &obs[i];
        obs[i].node = shoal_node_new(loop, &c, &err);
        CHECKF(obs[i].node != NULL, "err %d", err);
        CHECK(shoal_node_has_cluster_key(obs[i].node));
    }
    CHECK(shoal_node_join(obs[1].node, shoal_node_addr(obs[0].node), 1) == 0);
    CHECK(shoal_node_join(obs[2].node, shoal_node_addr(obs[0].node), 1) == 0);
    CHECK(run_until(loop, group_all_alive, &g, 15.0));
    struct drop_wait dw = {obs[0].node, 2};
    CHECK(run_until(loop, drops_reached, &dw, 10.0)); /* join retries keep coming */
    CHECK(shoal_node_counters(obs[0].node)->drops[SHOAL_DROP_NOT_ENDORSED] >= 2);
    CHECK(status_of(obs[0].node, "outsider") == 0xff);
    CHECK(shoal_swim_joining(shoal_node_swim(obs[2].node)));
    for (int i = 0; i < 3; i++)
        shoal_node_free(obs[i].node);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

/* ------------------------------------------------------ API handlers */

struct api_call {
    int status;
    json_t *json;
};

static int leave_hook_calls;

static void leave_hook(void *ud) { leave_hook_calls++; }

static struct shoal_joinset *test_joins; /* POST /v1/join's joiners, when a test sets it */

static struct api_call call_api(struct shoal_node *n, const char *method, const char *path,
                                const char *body, size_t body_len)
{
    struct shoal_api api = {.node = n, .leave = leave_hook, .joins = test_joins};
    struct shoal_http_req req = {method, path, "", body, body_len, ""};
    struct shoal_http_resp resp = {0};
    struct api_call out = {0};
    json_error_t jerr;
    shoal_api_handle(&api, 1, &req, &resp);
    CHECK(resp.body != NULL);
    CHECK(!resp.deferred);
    CHECK(resp.content_type == NULL || strcmp(resp.content_type, "application/json") == 0);
    out.status = resp.status ? resp.status : 200;
    out.json = json_loads(resp.body, 0, &jerr);
    CHECKF(out.json != NULL, "response is not JSON: %s", resp.body);
    free(resp.body);
    return out;
}

static const char *error_of(const struct api_call *c)
{
    json_t *e = json_object_get(c->json, "error");
    CHECK(json_is_string(e));
    CHECK(json_string_length(e) > 0);
    CHECK(json_object_size(c->json) == 1);
    return json_string_value(e);
}

TEST(api_members, "GET /v1/members lists every member, self included, sorted by name")
{
    static const char *const names[] = {"zeta", "alpha", "mid"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[3];
    struct group g;
    char a[SHOAL_ADDR_STRLEN];

    TEST_SEED(test_seed, 7);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 3);
    struct api_call c = call_api(obs[0].node, "GET", "/v1/members", "", 0);
    CHECK_EQ(c.status, 200);
    json_t *arr = json_object_get(c.json, "members");
    CHECK(json_is_array(arr));
    CHECK_EQ(json_array_size(arr), 3);
    static const char *const sorted[] = {"alpha", "mid", "zeta"};
    static const int idx[] = {1, 2, 0};
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(arr, i);
        CHECK_EQ(json_object_size(m), 5);
        CHECK(strcmp(json_string_value(json_object_get(m, "name")), sorted[i]) == 0);
        CHECK(strcmp(json_string_value(json_object_get(m, "status")), "alive") == 0);
        shoal_addr_format(shoal_node_addr(obs[idx[i]].node), a, sizeof(a));
        CHECK(strcmp(json_string_value(json_object_get(m, "addr")), a) == 0);
        CHECK_EQ(json_integer_value(json_object_get(m, "generation")), 1);
        CHECK(json_is_integer(json_object_get(m, "incarnation")));
    }
    json_decref(c.json);
    for (size_t i = 0; i < 3; i++)
        shoal_node_free(obs[i].node);
    ev_loop_destroy(loop);
}

static json_int_t int_at(json_t *o, const char *obj, const char *key)
{
    json_t *v = obj ? json_object_get(json_object_get(o, obj), key) : json_object_get(o, key);
    CHECKF(json_is_integer(v), "%s.%s is not an integer", obj ? obj : "", key);
    return json_integer_value(v);
}

static bool probed(void *ud) { return shoal_swim_stats(shoal_node_swim(ud))->probes_sent > 0; }

TEST(api_info, "GET /v1/info reports identity, counters, drops and protocol stats")
{
    static const char *const names[] = {"n1", "n2"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs obs[2];
    struct group g;
    char a[SHOAL_ADDR_STRLEN];

    TEST_SEED(test_seed, 8);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, obs, names, 2);
    CHECK(run_until(loop, probed, obs[0].node, 10.0));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    send_raw(fd, shoal_node_bound(obs[0].node), "junk", 4);
    struct drop_wait dw = {obs[0].node, 1};
    CHECK(run_until(loop, drops_reached, &dw, 10.0));
    close(fd);

    struct api_call c = call_api(obs[0].node, "GET", "/v1/info", "", 0);
    json_t *j = c.json;
    CHECK_EQ(c.status, 200);
    CHECK(strcmp(json_string_value(json_object_get(j, "name")), "n1") == 0);
    shoal_addr_format(shoal_node_addr(obs[0].node), a, sizeof(a));
    CHECK(strcmp(json_string_value(json_object_get(j, "addr")), a) == 0);
    CHECK_EQ(int_at(j, NULL, "generation"), 1);
    CHECK_EQ(int_at(j, NULL, "incarnation"), 0);
    CHECK(int_at(j, NULL, "health") >= 0);
    CHECK_EQ(int_at(j, "members", "alive"), 2);
    CHECK_EQ(int_at(j, "members", "suspect"), 0);
    CHECK_EQ(int_at(j, "members", "dead"), 0);
    CHECK_EQ(int_at(j, "members", "left"), 0);
    const struct shoal_node_counters *nc = shoal_node_counters(obs[0].node);
    CHECK_EQ(int_at(j, "packets", "in"), (json_int_t)nc->packets_in);
    CHECK_EQ(int_at(j, "packets", "out"), (json_int_t)nc->packets_out);
    CHECK_EQ(int_at(j, "bytes", "in"), (json_int_t)nc->bytes_in);
    CHECK_EQ(int_at(j, "bytes", "out"), (json_int_t)nc->bytes_out);
    CHECK(int_at(j, "packets", "in") > 0);
    static const char *const drops[] = {"too_large",    "truncated", "unsigned", "bad_signature",
                                        "not_endorsed", "replay",    "decode",   "invalid"};
    CHECK_EQ(json_object_size(json_object_get(j, "drops")), 8);
    json_int_t dsum = 0;
    for (int i = 0; i < 8; i++)
        dsum += int_at(j, "drops", drops[i]);
    CHECK_EQ(dsum, 1);
    static const char *const proto[] = {
        "probes_sent",  "probes_failed",  "ping_reqs_sent", "suspicions",     "probe_suspicions",
        "refutes",      "stale_claims",   "fallback_pings", "fallback_acks",  "deaths",
        "conflicts",    "updates_applied", "pushpulls"};
    CHECK_EQ(json_object_size(json_object_get(j, "protocol")), 13);
    for (int i = 0; i < 13; i++)
        (void)int_at(j, "protocol", proto[i]);
    CHECK(int_at(j, "protocol", "probes_sent") > 0);
    CHECK(int_at(j, "protocol", "updates_applied") > 0);
    CHECK(json_is_false(json_object_get(j, "joining")));
    CHECK(json_is_false(json_object_get(j, "cluster_key")));
    /* "registry" is checked in test_registry_io.c. */
    CHECK(json_is_object(json_object_get(j, "registry")));
    CHECK(json_is_string(json_object_get(j, "version")));
    CHECK(json_is_string(json_object_get(j, "build")));
    CHECK(json_is_integer(json_object_get(j, "uptime_s")));
    CHECK_EQ(json_object_size(json_object_get(j, "addresses")), 3);
    CHECK_EQ(json_object_size(j), 17);
    json_decref(j);
    shoal_node_free(obs[0].node);
    shoal_node_free(obs[1].node);
    ev_loop_destroy(loop);
}

TEST(api_join, "POST /v1/join accepts only {\"addrs\":[HOST:PORT...]} and starts joining")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs o;
    static const struct {
        const char *body;
        const char *says; /* a substring of the error */
    } bad[] = {
        {"", "not valid JSON"},
        {"{\"addrs\":", "not valid JSON"},
        {"\xff\xfe{}", "not valid JSON"},
        {"[\"127.0.0.1:7946\"]", "not a JSON object"},
        {"{}", "\"addrs\""},
        {"{\"addrs\":[]}", "non-empty"},
        {"{\"addrs\":\"127.0.0.1:7946\"}", "array"},
        {"{\"addrs\":[7946]}", "addrs[0] is not a string"},
        {"{\"addrs\":[\"127.0.0.1:7946\",\"nope\"]}", "addrs[1] 'nope'"},
        {"{\"addrs\":[\"127.0.0.1:0\"]}", "is not HOST:PORT"},
        {"{\"addrs\":[\"127.0.0.1\"]}", "is not HOST:PORT"},
        {"{\"addrs\":[\"a b:1\"]}", "is not HOST:PORT"},
        {"{\"addrs\":[\"1.2.3.4:5\"],\"wait\":\"1h\"}", "\"wait\""},
        {"{\"addrs\":[\"1.2.3.4:5\"],\"wat\":1}", "unknown field \"wat\""},
        {"{\"addrs\":[\"1.2.3.4:5\"],\"addrs\":[\"1.2.3.4:6\"]}", "not valid JSON"},
        {"{\"addrs\":[\"\\u0001\\u00ff:1\"]}", "addrs[0] '???:1'"},
    };

    TEST_SEED(test_seed, 9);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_node(loop, &o, "n1", test_seed);
    static struct shoal_joinset js;
    js = (struct shoal_joinset){.loop = loop, .node = o.node};
    test_joins = &js;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct api_call c = call_api(o.node, "POST", "/v1/join", bad[i].body, strlen(bad[i].body));
        CHECKF(c.status == 400, "body %zu: status %d", i, c.status);
        const char *e = error_of(&c);
        CHECKF(strstr(e, bad[i].says) != NULL, "body %zu: error '%s' lacks '%s'", i, e,
               bad[i].says);
        json_decref(c.json);
        CHECK(!shoal_swim_joining(shoal_node_swim(o.node)));
    }
    /* Only its own address: nothing to join. */
    char self[SHOAL_ADDR_STRLEN], body[160];
    shoal_addr_format(shoal_node_addr(o.node), self, sizeof(self));
    snprintf(body, sizeof(body), "{\"addrs\":[\"%s\"]}", self);
    struct api_call c = call_api(o.node, "POST", "/v1/join", body, strlen(body));
    CHECK_EQ(c.status, 400);
    json_decref(c.json);

    const char *ok = "{\"addrs\":[\"127.0.0.1:9\",\"[::1]:9\"]}";
    c = call_api(o.node, "POST", "/v1/join", ok, strlen(ok));
    CHECK_EQ(c.status, 200);
    CHECK_EQ(json_integer_value(json_object_get(c.json, "joining")), 2);
    CHECK(shoal_swim_joining(shoal_node_swim(o.node)));
    json_decref(c.json);
    c = call_api(o.node, "GET", "/v1/info", "", 0);
    CHECK(json_is_true(json_object_get(c.json, "joining")));
    json_decref(c.json);
    CHECK_EQ(js.count, 1);
    shoal_joinset_close(&js);
    CHECK_EQ(js.count, 0);
    test_joins = NULL;
    shoal_node_free(o.node);
    ev_loop_destroy(loop);
}

TEST(api_routes, "unknown paths are 404, wrong methods 405, leave calls the hook")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct obs o;
    static const struct {
        const char *method, *path;
        int status;
    } cases[] = {
        {"GET", "/v1/nope", 404},     {"GET", "/", 404},
        {"GET", "/v1/members/", 404}, {"GET", "/v1/\x01\xff", 404},
        {"POST", "/v1/members", 405}, {"DELETE", "/v1/info", 405},
        {"GET", "/v1/join", 405},     {"GET", "/v1/leave", 405},
        {"PUT", "/v1/leave", 405},
    };

    TEST_SEED(test_seed, 10);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_node(loop, &o, "n1", test_seed);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct api_call c = call_api(o.node, cases[i].method, cases[i].path, "", 0);
        CHECKF(c.status == cases[i].status, "%s %s: %d", cases[i].method, cases[i].path, c.status);
        (void)error_of(&c);
        json_decref(c.json);
    }
    CHECK_EQ(leave_hook_calls, 0);
    struct api_call c = call_api(o.node, "POST", "/v1/leave", "", 0);
    CHECK_EQ(c.status, 200);
    CHECK(json_is_true(json_object_get(c.json, "leaving")));
    CHECK_EQ(json_object_size(c.json), 1);
    CHECK_EQ(leave_hook_calls, 1);
    json_decref(c.json);
    shoal_node_free(o.node);
    ev_loop_destroy(loop);
}

/* ---------------------------------------------------------- data dir */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    CHECK(fclose(f) == 0);
}

static void read_file(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = 0;
    fclose(f);
}

TEST(datadir, "the generation rises per start, never below the clock floor, durably; corruption is refused")
{
    char dir[] = "/tmp/shoal-test-XXXXXX", sub[96], gen[128], tmp[128], text[64];
    uint64_t g = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    CHECK(shoal_datadir_prepare(sub) == 0);
    struct stat st;
    CHECK(stat(sub, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(shoal_datadir_prepare(sub) == 0); /* again: fine */
    snprintf(gen, sizeof(gen), "%s/generation", sub);
    snprintf(tmp, sizeof(tmp), "%s/generation.tmp", sub);

    for (uint64_t want = 1; want <= 3; want++) {
        CHECK(shoal_datadir_next_generation(sub, 0, &g) == 0);
        CHECK_EQ(g, want);
    }
    read_file(gen, text, sizeof(text));
    CHECK(strcmp(text, "3\n") == 0);
    CHECK(access(tmp, F_OK) != 0);

    static const char *const corrupt[] = {
        "", "abc\n", "12x\n", "-4\n", "1\n\n", " 7\n", "99999999999999999999999\n"};
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        write_file(gen, corrupt[i]);
        g = 77;
        CHECKF(shoal_datadir_next_generation(sub, 0, &g) == SHOAL_EINVAL, "'%s'", corrupt[i]);
        CHECK_EQ(g, 77);
        read_file(gen, text, sizeof(text));
        CHECK(strcmp(text, corrupt[i]) == 0); /* left alone for the operator */
    }
    write_file(gen, "18446744073709551615\n");
    CHECK(shoal_datadir_next_generation(sub, 0, &g) == SHOAL_ERANGE);
    write_file(gen, "41");
    CHECK(shoal_datadir_next_generation(sub, 0, &g) == 0);
    CHECK_EQ(g, 42);
    /* A lost counter still comes back newer than the old self: the floor
     * (the agent passes wall-clock seconds) wins when it is larger. */
    CHECK(shoal_datadir_next_generation(sub, 1000, &g) == 0);
    CHECK_EQ(g, 1000);
    CHECK(shoal_datadir_next_generation(sub, 1000, &g) == 0);
    CHECK_EQ(g, 1001);
    read_file(gen, text, sizeof(text));
    CHECK(strcmp(text, "1001\n") == 0);

    /* A plain file where the directory should be. */
    char file[128];
    snprintf(file, sizeof(file), "%s/plain", dir);
    write_file(file, "x");
    CHECK(shoal_datadir_prepare(file) == -ENOTDIR);

    /* One agent per data dir. */
    int l1 = shoal_datadir_lock(sub);
    CHECK(l1 >= 0);
    CHECK_EQ(shoal_datadir_lock(sub), -EWOULDBLOCK);
    close(l1);
    int l2 = shoal_datadir_lock(sub);
    CHECK(l2 >= 0);
    close(l2);
    rm_tree(dir);
}

/* -------------------------------------------------- the agent process */

/* Runs shoal_agent_main(args) in this process with stderr captured into
 * err (NUL-terminated). Only for runs that return on their own. */
static int agent_capture(char **args, char *err, size_t errlen)
{
    int argc = 0;
    char path[] = "/tmp/shoal-test-err-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    while (args[argc])
        argc++;
    int rc = shoal_agent_main(argc, args);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, err, errlen - 1, 0);
    err[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(path);
    if (*err)
        fprintf(stderr, "agent said: %s", err);
    return rc;
}

TEST(agent_flags, "the agent rejects a bad flag or value with exit 2, naming the flag")
{
    static const struct {
        const char *flag, *value, *says;
    } bad[] = {
        {"--probe-interval", "x", "shoal agent: bad --probe-interval 'x': "},
        {"--probe-interval", "0", "bad --probe-interval '0'"},
        {"--probe-timeout", "2s", "bad --probe-timeout '2s': must be shorter"},
        {"--bind", "localhost:1", "bad --bind 'localhost:1'"},
        {"--bind", "0.0.0.0:7946", "bad --bind '0.0.0.0:7946': a wildcard"},
        {"--advertise", "[::]:7946", "bad --advertise '[::]:7946'"},
        {"--http", "127.0.0.1:99999", "bad --http '127.0.0.1:99999'"},
        {"--join", "1.2.3.4", "bad --join '1.2.3.4'"},
        {"--gossip-fanout", "0", "bad --gossip-fanout '0': must be between 1 and 64"},
        {"--suspicion-mult", "-1", "bad --suspicion-mult '-1'"},
        {"--max-datagram", "100", "bad --max-datagram '100'"},
        {"--max-datagram", "70000", "bad --max-datagram '70000'"},
        {"--log-level", "loud", "bad --log-level 'loud'"},
        {"--name", "bad name", "bad --name 'bad name'"},
        {"--name", "", "bad --name ''"},
        {"--leave-timeout", "3 s", "bad --leave-timeout '3 s'"},
        {"--nope", NULL, "unknown flag '--nope'"},
        {"--data-dir", NULL, "--data-dir needs a value"},
        {"stray", NULL, "unexpected argument 'stray'"},
    };
    char err[4096];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *args[] = {"agent", "--name", "t1", (char *)bad[i].flag, (char *)bad[i].value, NULL};
        int rc = agent_capture(args, err, sizeof(err));
        CHECKF(rc == 2, "%s %s: exit %d", bad[i].flag, bad[i].value ? bad[i].value : "", rc);
        CHECKF(strstr(err, bad[i].says) != NULL, "'%s' lacks '%s'", err, bad[i].says);
    }
    char *help[] = {"agent", "--help", NULL};
    CHECK_EQ(agent_capture(help, err, sizeof(err)), 0);
}

TEST(agent_retention, "retention times that would let a deregistration be undone are refused")
{
    static const struct {
        const char *args[6];
        const char *says;
    } bad[] = {
        {{"--registry-reap", "10m", "--tombstone-ttl", "60s"},
         "--tombstone-ttl must be at least --registry-reap"},
        {{"--registry-reap", "30s", "--sync-interval", "1m", "--tombstone-ttl", "90s"},
         "--tombstone-ttl must be at least twice --sync-interval"},
        {{"--reap", "30m", "--registry-reap", "1h"}, "--reap (dead members' retention) must be"},
    };
    char err[4096];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *args[10] = {"agent", "--name", "t1"};
        size_t n = 3;
        for (size_t k = 0; k < 6 && bad[i].args[k]; k++)
            args[n++] = (char *)bad[i].args[k];
        args[n] = NULL;
        int rc = agent_capture(args, err, sizeof(err));
        CHECKF(rc == 2, "case %zu: exit %d", i, rc);
        CHECKF(strstr(err, bad[i].says) != NULL, "'%s' lacks '%s'", err, bad[i].says);
    }
}

/* A port that was free a moment ago (type SOCK_DGRAM or SOCK_STREAM). */
static int free_port(int type, int *keep_fd)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    if (type == SOCK_STREAM)
        CHECK(listen(fd, 1) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    if (keep_fd)
        *keep_fd = fd;
    else
        close(fd);
    return ntohs(sin.sin_port);
}

/* A port free for UDP and TCP at once: the agent binds both at --bind. */
static int free_bind_port(void)
{
    for (int tries = 0; tries < 100; tries++) {
        int port = free_port(SOCK_DGRAM, NULL), fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        CHECK(fd >= 0);
        bool ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        close(fd);
        if (ok)
            return port;
    }
    CHECKF(0, "no port free for both UDP and TCP");
    return 0;
}

TEST(agent_ports, "the agent refuses to start when its UDP or HTTP port is taken (exit 1)")
{
    char dir[] = "/tmp/shoal-test-XXXXXX", err[4096], bind_s[32], http_s[32];
    int udp_fd, tcp_fd;
    CHECK(mkdtemp(dir) != NULL);

    snprintf(bind_s, sizeof(bind_s), "127.0.0.1:%d", free_port(SOCK_DGRAM, &udp_fd));
    snprintf(http_s, sizeof(http_s), "127.0.0.1:%d", free_port(SOCK_STREAM, NULL));
    char *a1[] = {"agent",  "--name", "t1",     "--data-dir", dir,
                  "--bind", bind_s,   "--http", http_s,       NULL};
    CHECK_EQ(agent_capture(a1, err, sizeof(err)), 1);
    CHECK(strstr(err, "cannot bind UDP") && strstr(err, "Address already in use"));
    close(udp_fd);

    snprintf(bind_s, sizeof(bind_s), "127.0.0.1:%d", free_port(SOCK_DGRAM, NULL));
    snprintf(http_s, sizeof(http_s), "127.0.0.1:%d", free_port(SOCK_STREAM, &tcp_fd));
    char *a2[] = {"agent",  "--name", "t1",     "--data-dir", dir,
                  "--bind", bind_s,   "--http", http_s,       NULL};
    CHECK_EQ(agent_capture(a2, err, sizeof(err)), 1);
    CHECK(strstr(err, "cannot listen for HTTP") && strstr(err, "Address already in use"));
    close(tcp_fd);

    /* A data dir held by another agent. */
    int lock = shoal_datadir_lock(dir);
    CHECK(lock >= 0);
    CHECK_EQ(agent_capture(a2, err, sizeof(err)), 1);
    CHECK(strstr(err, "in use by another agent") != NULL);
    close(lock);
    rm_tree(dir);
}

/* Sends one HTTP/1.1 request with Connection: close and reads the whole
 * response into out. Returns false if the connection cannot be made. */
static bool http_do(int port, const char *method, const char *path, char *out, size_t len)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[256];
    size_t n = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return false;
    }
    int rl = snprintf(req, sizeof(req),
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n",
                      method, path);
    CHECK(write(fd, req, (size_t)rl) == rl);
    struct pollfd p = {fd, POLLIN, 0};
    while (n + 1 < len && poll(&p, 1, 10000) == 1) {
        ssize_t r = read(fd, out + n, len - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = 0;
    close(fd);
    return true;
}

struct child {
    pid_t pid;
    int http_port;
};

static struct child spawn_agent(const char *dir, const char *name)
{
    struct child c;
    char bind_s[32], http_s[32];
    int bind_port = free_bind_port();
    snprintf(bind_s, sizeof(bind_s), "127.0.0.1:%d", bind_port);
    do /* the agent also listens on TCP at its --bind port */
        c.http_port = free_port(SOCK_STREAM, NULL);
    while (c.http_port == bind_port);
    snprintf(http_s, sizeof(http_s), "127.0.0.1:%d", c.http_port);
    c.pid = fork();
    CHECK(c.pid >= 0);
    if (c.pid == 0) {
        char *args[] = {"agent",      "--name",
                        (char *)name, "--data-dir",
                        (char *)dir,  "--bind",
                        bind_s,       "--http",
                        http_s,       "--probe-interval",
                        "100ms",      "--probe-timeout",
                        "40ms",       "--gossip-interval",
                        "20ms",       "--leave-timeout",
                        "2s",         "--log-level",
                        "warn",       NULL};
        _exit(shoal_agent_main((int)(sizeof(args) / sizeof(args[0])) - 1, args));
    }
    /* Wait until it answers HTTP (bounded). */
    char buf[4096];
    for (int i = 0; i < 1000; i++) {
        if (http_do(c.http_port, "GET", "/v1/info", buf, sizeof(buf)) && strstr(buf, "200"))
            return c;
        int st;
        CHECKF(waitpid(c.pid, &st, WNOHANG) == 0, "agent exited during start-up");
        usleep(10000);
    }
    kill(c.pid, SIGKILL);
    CHECKF(0, "agent did not answer HTTP");
    return c;
}

/* Waits (bounded) for the child to exit; returns its exit status or -1. */
static int wait_exit(pid_t pid, double max_s)
{
    int st;
    for (int i = 0; i < (int)(max_s * 100); i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

TEST(agent_leave_http, "POST /v1/leave is answered, then the agent exits 0")
{
    char dir[] = "/tmp/shoal-test-XXXXXX", buf[4096];
    CHECK(mkdtemp(dir) != NULL);
    struct child c = spawn_agent(dir, "t1");
    CHECK(http_do(c.http_port, "POST", "/v1/leave", buf, sizeof(buf)));
    CHECKF(strstr(buf, "HTTP/1.1 200") && strstr(buf, "{\"leaving\":true}"), "got: %s", buf);
    CHECK_EQ(wait_exit(c.pid, 10.0), 0);
    rm_tree(dir);
}

TEST(agent_sigterm, "SIGTERM makes the agent leave and exit 0; a restart raises the generation")
{
    char dir[] = "/tmp/shoal-test-XXXXXX", buf[4096];
    long long gens[3] = {0, 0, 0};
    CHECK(mkdtemp(dir) != NULL);
    for (int round = 1; round <= 2; round++) {
        struct child c = spawn_agent(dir, "t1");
        CHECK(http_do(c.http_port, "GET", "/v1/info", buf, sizeof(buf)));
        const char *g = strstr(buf, "\"generation\":");
        CHECKF(g != NULL, "round %d: %s", round, buf);
        gens[round] = strtoll(g + strlen("\"generation\":"), NULL, 10);
        CHECKF(gens[round] > gens[round - 1], "round %d: %lld after %lld", round, gens[round],
               gens[round - 1]);
        CHECK(strstr(buf, "\"name\":\"t1\"") != NULL);
        CHECK(http_do(c.http_port, "GET", "/v1/nope", buf, sizeof(buf)));
        CHECKF(strstr(buf, "HTTP/1.1 404"), "got: %s", buf);
        kill(c.pid, SIGTERM);
        CHECK_EQ(wait_exit(c.pid, 10.0), 0);
    }
    char path[96], text[64];
    snprintf(path, sizeof(path), "%s/generation", dir);
    read_file(path, text, sizeof(text));
    CHECK(strtoll(text, NULL, 10) == gens[2]);
    snprintf(path, sizeof(path), "%s/identity.key", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    rm_tree(dir);
}

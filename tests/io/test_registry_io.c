/* test_registry_io.c -- the registry wired into the agent, on real libev,
 * real UDP and TCP sockets and a real data dir.
 *
 * Several shoal_node instances share one ev loop (as in test_adapter.c):
 * registrations spread by UDP gossip, large ones and late joiners through
 * TCP anti-entropy, deregistrations propagate. Also here: DATA_DIR/registry
 * round trips and refusals, the service-file parser (every error with its
 * line), directory reloads, and the HTTP handlers: register validation that
 * changes nothing, and blocking queries over a real HTTP connection. A test
 * waits for a condition, it never asserts on elapsed time.
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
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/registry.h"
#include "io/agent.h"
#include "io/api.h"
#include "io/datadir.h"
#include "io/http.h"
#include "io/log.h"
#include "io/node.h"
#include "io/regstore.h"
#include "io/stream.h"
#include "io/svcfile.h"
#include "test.h"
#include "wire/wire.h"

TEST_MAIN()

/* ------------------------------------------------------------ helpers */

static uint64_t test_seed;

struct tnode {
    struct shoal_node *node;
    struct shoal_api *api; /* told about registry changes, if set */
    int changes;           /* reg_changed calls */
};

static void tnode_changed(void *ud)
{
    struct tnode *t = ud;
    t->changes++;
    if (t->api)
        shoal_api_registry_changed(t->api);
}

/* One identity per node name, as an agent keeps its key in its data dir:
 * a node restarted under the same name keeps its key (peers bind a name to
 * the key they first saw it with: io/node.c, node_interim_principal). */
static void identity_for(const char *name, struct shoal_identity *out)
{
    static struct {
        char name[SHOAL_NAME_MAX];
        struct shoal_identity id;
    } known[64];
    static size_t n_known;
    for (size_t i = 0; i < n_known; i++) {
        if (strcmp(known[i].name, name) == 0) {
            *out = known[i].id;
            return;
        }
    }
    shoal_identity_generate(out);
    if (n_known < 64) {
        snprintf(known[n_known].name, SHOAL_NAME_MAX, "%s", name);
        known[n_known++].id = *out;
    }
}

/* Fast protocol constants: probe 100 ms, gossip 20 ms. */
static void fast_config(struct shoal_node_config *c, const char *name, uint64_t seed,
                        uint32_t sync_ms)
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
    shoal_registry_config_defaults(&c->registry);
    c->registry.sync_interval_ms = sync_ms;
    CHECK(shoal_addr_parse("127.0.0.1:1", &c->bind) == 0);
    c->bind.port = 0; /* any free port; UDP and TCP share it */
    identity_for(name, &c->identity);
    c->seq_start = (uint64_t)shoal_node_clock_ms() * 1000; /* grows across restarts */
}

static struct shoal_node *start_tnode(struct ev_loop *loop, struct tnode *t, const char *name,
                                      uint64_t seed, uint32_t sync_ms)
{
    struct shoal_node_config c;
    int err = 0;
    fast_config(&c, name, seed, sync_ms);
    memset(t, 0, sizeof(*t));
    c.reg_changed = tnode_changed;
    c.ud = t;
    t->node = shoal_node_new(loop, &c, &err);
    CHECKF(t->node != NULL, "shoal_node_new(%s): %d", name, err);
    return t->node;
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

struct group {
    struct tnode *t;
    size_t n;
};

static bool group_all_alive(void *ud)
{
    struct group *g = ud;
    for (size_t i = 0; i < g->n; i++) {
        struct shoal_swim *s = shoal_node_swim(g->t[i].node);
        if (shoal_swim_member_count(s) != g->n)
            return false;
        for (size_t j = 0; j < g->n; j++) {
            struct shoal_member_info mi;
            const char *name = shoal_swim_config(shoal_node_swim(g->t[j].node))->name;
            if (!shoal_swim_member_find(s, name, &mi) || mi.status != SHOAL_ALIVE)
                return false;
        }
    }
    return true;
}

/* Starts names[] on loop, joins all to the first, waits for convergence. */
static void start_group(struct ev_loop *loop, struct group *g, struct tnode *t,
                        const char *const *names, size_t n, uint32_t sync_ms)
{
    g->t = t;
    g->n = n;
    for (size_t i = 0; i < n; i++)
        start_tnode(loop, &t[i], names[i], test_seed + i, sync_ms);
    for (size_t i = 1; i < n; i++)
        CHECK(shoal_node_join(t[i].node, shoal_node_addr(t[0].node), 1) == 0);
    CHECKF(run_until(loop, group_all_alive, g, 15.0), "%zu nodes did not converge", n);
}

static void free_group(struct group *g)
{
    for (size_t i = 0; i < g->n; i++)
        shoal_node_free(g->t[i].node);
}

/* How many instances of service the node answers with (all: any health). */
static size_t visible(struct shoal_node *n, const char *service, bool all)
{
    struct shoal_query q = {.service = service, .all = all};
    return shoal_registry_query(shoal_node_registry(n), &q, NULL, 0);
}

static const struct shoal_instance *find(struct shoal_node *n, const char *service, const char *id)
{
    const struct shoal_instance *v[256];
    struct shoal_query q = {.service = service, .all = true};
    size_t k = shoal_registry_query(shoal_node_registry(n), &q, v, 256);
    for (size_t i = 0; i < k && i < 256; i++)
        if (strcmp(v[i]->id, id) == 0)
            return v[i];
    return NULL;
}

static void spec_init(struct shoal_instance *s, const char *id, const char *service, uint16_t port)
{
    memset(s, 0, sizeof(*s));
    s->id = (char *)id;
    s->service = (char *)service;
    s->address = "127.0.0.1";
    s->port = port;
}

static void must_register(struct shoal_node *n, const struct shoal_instance *spec)
{
    const char *why = NULL;
    int rc = shoal_node_register(n, spec, &why);
    CHECKF(rc == 0, "register %s: %d %s", spec->id, rc, why ? why : "");
}

/* Every node of g holds `count` instances of service (any health). */
struct seen {
    struct group *g;
    const char *service;
    size_t count;
};

static bool all_see(void *ud)
{
    struct seen *s = ud;
    for (size_t i = 0; i < s->g->n; i++)
        if (visible(s->g->t[i].node, s->service, true) != s->count)
            return false;
    return true;
}

static uint64_t drops_total(const uint64_t *d)
{
    uint64_t t = 0;
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        t += d[i];
    return t;
}

/* No node dropped, failed to seal, or lost a stream send. */
static void group_clean(struct group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const struct shoal_node_counters *c = shoal_node_counters(g->t[i].node);
        CHECK_EQ(drops_total(c->drops), 0);
        CHECK_EQ(drops_total(c->frame_drops), 0);
        CHECK_EQ(c->seal_errors, 0);
        CHECK_EQ(c->send_errors, 0);
        CHECK_EQ(c->stream_errors, 0);
        CHECK_EQ(c->stuck_deadlines, 0);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

/* ----------------------------------------------------------- replication */

/* Every joiner got its join answered and the answer's anti-entropy reply
 * back, so whatever comes later travels by gossip alone. */
static bool joins_synced(void *ud)
{
    struct group *g = ud;
    for (size_t i = 1; i < g->n; i++)
        if (shoal_swim_joining(shoal_node_swim(g->t[i].node)) ||
            shoal_node_stream_counters(g->t[i].node)->frames_in < 1)
            return false;
    return true;
}

TEST(gossip, "an instance registered on one node reaches the others by UDP gossip")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[3];
    struct group g;
    struct shoal_instance spec;
    static char *tags[] = {"v1", "primary"};
    static struct shoal_kv meta[] = {{"version", "1.2.3"}, {"zone", "a"}};

    TEST_SEED(test_seed, 101);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, t, names, 3, 0); /* periodic anti-entropy off */
    CHECKF(run_until(loop, joins_synced, &g, 10.0), "the joins' anti-entropy did not finish");
    uint64_t sync_before[3];
    for (size_t i = 0; i < 3; i++)
        sync_before[i] = shoal_registry_stats(shoal_node_registry(t[i].node))->sync_events_received;

    spec_init(&spec, "web-1", "web", 8080);
    spec.tags = tags;
    spec.n_tags = 2;
    spec.meta = meta;
    spec.n_meta = 2;
    must_register(t[0].node, &spec);
    struct seen s = {&g, "web", 1};
    CHECKF(run_until(loop, all_see, &s, 10.0), "web-1 did not reach every node");

    for (size_t i = 1; i < 3; i++) {
        const struct shoal_instance *in = find(t[i].node, "web", "web-1");
        CHECK(in != NULL);
        CHECK(strcmp(in->owner, "n1") == 0);
        CHECK(strcmp(in->address, "127.0.0.1") == 0 && in->port == 8080);
        CHECK(in->n_tags == 2 && strcmp(in->tags[1], "primary") == 0);
        CHECK(in->n_meta == 2 && strcmp(in->meta[0].value, "1.2.3") == 0);
        CHECK_EQ(in->health, SHOAL_PASSING);
        CHECK(in->version >= 1);
        /* Passing and its owner alive: served without all=1. */
        CHECK_EQ(visible(t[i].node, "web", false), 1);
        /* It came by datagram: no anti-entropy event since the join. */
        CHECK_EQ(shoal_registry_stats(shoal_node_registry(t[i].node))->sync_events_received,
                 sync_before[i]);
        CHECK(shoal_node_counters(t[i].node)->reg_in > 0);
        CHECK(t[i].changes > 0);
    }
    CHECK(shoal_node_counters(t[0].node)->reg_out > 0);
    group_clean(&g);
    free_group(&g);
    ev_loop_destroy(loop);
}

TEST(large, "an instance with 8 KB of metadata replicates over the TCP stream")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[3];
    static char big1[4001], big2[4001];
    struct group g;
    struct shoal_instance spec;

    TEST_SEED(test_seed, 102);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, t, names, 3, 0);
    memset(big1, 'a', 4000);
    memset(big2, 'b', 4000);
    struct shoal_kv meta[] = {{"one", big1}, {"two", big2}};
    spec_init(&spec, "blob-1", "blob", 9000);
    spec.meta = meta;
    spec.n_meta = 2;
    CHECK(shoal_instance_cost(&spec) > 1400); /* cannot ride in a datagram */
    must_register(t[0].node, &spec);

    struct seen s = {&g, "blob", 1};
    CHECKF(run_until(loop, all_see, &s, 10.0), "blob-1 did not reach every node");
    for (size_t i = 1; i < 3; i++) {
        const struct shoal_instance *in = find(t[i].node, "blob", "blob-1");
        CHECK(in != NULL && in->n_meta == 2);
        CHECK(strcmp(in->meta[0].value, big1) == 0 && strcmp(in->meta[1].value, big2) == 0);
        const struct shoal_registry_stats *st =
            shoal_registry_stats(shoal_node_registry(t[i].node));
        CHECK(st->sync_events_received > 0); /* pulled by anti-entropy */
    }
    /* The owner sent notices, and frames went over TCP. */
    CHECK(shoal_registry_stats(shoal_node_registry(t[0].node))->notices_sent > 0);
    uint64_t frames = 0;
    for (size_t i = 0; i < 3; i++)
        frames += shoal_node_stream_counters(t[i].node)->frames_in;
    CHECK(frames >= 2);
    group_clean(&g);
    free_group(&g);
    ev_loop_destroy(loop);
}

TEST(deregister, "a deregistration propagates and leaves a tombstone everywhere")
{
    static const char *const names[] = {"n1", "n2", "n3"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[3];
    struct group g;
    struct shoal_instance spec;

    TEST_SEED(test_seed, 103);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, t, names, 3, 0);
    spec_init(&spec, "api-1", "api", 81);
    must_register(t[1].node, &spec);
    spec_init(&spec, "api-2", "api", 82);
    must_register(t[1].node, &spec);
    struct seen s = {&g, "api", 2};
    CHECK(run_until(loop, all_see, &s, 10.0));

    CHECK_EQ(shoal_node_deregister(t[1].node, "api-1"), 0);
    CHECK_EQ(shoal_node_deregister(t[1].node, "api-1"), SHOAL_ENOENT);
    CHECK_EQ(shoal_node_deregister(t[0].node, "api-2"), SHOAL_ENOENT); /* not n1's */
    s.count = 1;
    CHECKF(run_until(loop, all_see, &s, 10.0), "the deregistration did not reach every node");
    for (size_t i = 0; i < 3; i++) {
        size_t by_health[SHOAL_HEALTH_COUNT], tombs;
        CHECK(find(t[i].node, "api", "api-1") == NULL);
        CHECK(find(t[i].node, "api", "api-2") != NULL);
        shoal_registry_counts(shoal_node_registry(t[i].node), by_health, &tombs);
        CHECK_EQ(tombs, 1);
    }
    group_clean(&g);
    free_group(&g);
    ev_loop_destroy(loop);
}

static bool n3_has_all(void *ud)
{
    struct tnode *t = ud;
    return visible(t[2].node, "svc", true) == 40 && visible(t[2].node, "blob", true) == 1;
}

TEST(late_join, "a node that joins later gets the whole registry through a TCP sync")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[3];
    static const char *const names[] = {"n1", "n2"};
    static char ids[40][16], big[3001];
    struct group g;
    struct shoal_instance spec;

    TEST_SEED(test_seed, 104);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, t, names, 2, 0);
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof(ids[i]), "svc-%d", i);
        spec_init(&spec, ids[i], "svc", (uint16_t)(1000 + i));
        must_register(t[i % 2].node, &spec);
    }
    memset(big, 'x', 3000);
    struct shoal_kv meta[] = {{"blob", big}, {"blob2", big}};
    spec_init(&spec, "blob-1", "blob", 7);
    spec.meta = meta;
    spec.n_meta = 2;
    must_register(t[1].node, &spec);
    struct seen s = {&g, "svc", 40};
    CHECK(run_until(loop, all_see, &s, 10.0));
    /* Let gossip run out, so only anti-entropy can carry it to n3. */
    run_for(loop, 1.0);

    start_tnode(loop, &t[2], "n3", test_seed + 2, 0);
    CHECK_EQ(visible(t[2].node, "svc", true), 0);
    CHECK(shoal_node_join(t[2].node, shoal_node_addr(t[0].node), 1) == 0);
    CHECKF(run_until(loop, n3_has_all, t, 10.0), "n3 has %zu of 40 (+ blob %zu)",
           visible(t[2].node, "svc", true), visible(t[2].node, "blob", true));
    const struct shoal_registry_stats *st = shoal_registry_stats(shoal_node_registry(t[2].node));
    CHECK(st->syncs_started >= 1);
    CHECK(st->sync_events_received >= 41);
    CHECK(shoal_node_stream_counters(t[2].node)->connects >= 1);
    CHECK(shoal_node_stream_counters(t[2].node)->frames_in >= 1);
    CHECK(shoal_node_stream_counters(t[0].node)->accepted >= 1);
    g.n = 3;
    group_clean(&g);
    free_group(&g);
    ev_loop_destroy(loop);
}

static bool owner_gone(void *ud)
{
    struct tnode *t = ud;
    return visible(t[1].node, "lv", true) == 0;
}

TEST(leave, "a node that leaves takes its instances with it; its data dir keeps them")
{
    static const char *const names[] = {"n1", "n2"};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[2];
    struct group g;
    struct shoal_instance spec;
    char dir[] = "/tmp/shoal-rio-XXXXXX";

    TEST_SEED(test_seed, 105);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    start_group(loop, &g, t, names, 2, 0);
    /* n1 again, with a data dir: restart it in place. */
    shoal_node_free(t[0].node);
    {
        struct shoal_node_config c;
        int err;
        fast_config(&c, "n1", test_seed, 0);
        c.swim.generation = 2;
        c.data_dir = dir;
        c.reg_changed = tnode_changed;
        c.ud = &t[0];
        t[0].node = shoal_node_new(loop, &c, &err);
        CHECK(t[0].node != NULL);
        CHECK(shoal_node_join(t[0].node, shoal_node_addr(t[1].node), 1) == 0);
    }
    CHECK(run_until(loop, group_all_alive, &g, 15.0));
    spec_init(&spec, "lv-1", "lv", 1);
    must_register(t[0].node, &spec);
    struct seen s = {&g, "lv", 1};
    CHECK(run_until(loop, all_see, &s, 10.0));

    shoal_node_leave(t[0].node);
    CHECK_EQ(shoal_node_register(t[0].node, &spec, NULL), SHOAL_ESTATE);
    CHECK_EQ(shoal_node_deregister(t[0].node, "lv-1"), SHOAL_ESTATE);
    CHECKF(run_until(loop, owner_gone, t, 10.0), "n2 still serves the leaver's instance");
    /* The file still holds what was registered, for a restart. */
    struct shoal_regstore st;
    char why[256];
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 1);
    CHECK(strcmp(st.msg.events[0].id, "lv-1") == 0);
    shoal_regstore_clear(&st);
    free_group(&g);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

/* ----------------------------------------------------------- persistence */

TEST(persist, "our instances round-trip through DATA_DIR/registry; versions continue")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-rio-XXXXXX";
    struct shoal_node_config c;
    struct shoal_instance spec;
    struct shoal_regstore st;
    static char *tags[] = {"a", "b"};
    static struct shoal_kv meta[] = {{"k", "v"}, {"empty", ""}};
    char why[256];
    int err;

    TEST_SEED(test_seed, 106);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    /* Nothing saved yet: an empty store. */
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 0);
    CHECK_EQ(st.version, 0);

    fast_config(&c, "p1", test_seed, 0);
    c.data_dir = dir;
    struct shoal_node *n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    spec_init(&spec, "db-1", "db", 5432);
    spec.tags = tags;
    spec.n_tags = 2;
    spec.meta = meta;
    spec.n_meta = 2;
    spec.ttl_ms = 30000;
    must_register(n, &spec);
    spec_init(&spec, "db-2", "db", 5433);
    must_register(n, &spec);
    spec_init(&spec, "gone", "db", 1);
    must_register(n, &spec);
    CHECK_EQ(shoal_node_deregister(n, "gone"), 0);
    CHECK_EQ(shoal_node_heartbeat(n, "db-1"), 0);
    CHECK_EQ(shoal_node_persist(n), 0);
    uint64_t version = shoal_registry_own_version(shoal_node_registry(n));
    const struct shoal_node_counters *nc = shoal_node_counters(n);
    /* The start's snapshot, then one group commit for all five changes. */
    CHECK_EQ(nc->persist_writes, 2);
    CHECK_EQ(nc->persist_appends, 1);
    CHECK_EQ(nc->persist_errors, 0);
    shoal_node_free(n);

    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 2);
    CHECK_EQ(st.version, version);
    CHECK(strcmp(st.owner, "p1") == 0);
    const struct shoal_instance *db1 = NULL;
    for (uint32_t i = 0; i < st.msg.n_events; i++)
        if (strcmp(st.msg.events[i].id, "db-1") == 0)
            db1 = &st.msg.events[i];
    CHECK(db1 != NULL);
    CHECK(strcmp(db1->service, "db") == 0 && db1->port == 5432 && db1->ttl_ms == 30000);
    CHECK(db1->n_tags == 2 && strcmp(db1->tags[1], "b") == 0);
    CHECK(db1->n_meta == 2 && strcmp(db1->meta[1].key, "empty") == 0 && !db1->meta[1].value[0]);
    CHECK_EQ(db1->health, SHOAL_PASSING); /* the heartbeat was saved */

    /* Restart: restored under the new generation, versions go on. */
    fast_config(&c, "p1", test_seed, 0);
    c.swim.generation = 2;
    c.data_dir = dir;
    c.restore = st.msg.events;
    c.n_restore = st.msg.n_events;
    c.restore_version = st.version;
    n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    shoal_regstore_clear(&st);
    const struct shoal_instance *own[4];
    CHECK_EQ(shoal_registry_own(shoal_node_registry(n), own, 4), 2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(own[i]->generation, 2);
        CHECK(own[i]->version > version);
    }
    CHECK_EQ(visible(n, "db", true), 2);
    /* ... and the file was rewritten with them at once. */
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 2);
    CHECK(st.version > version);
    CHECK_EQ(st.msg.events[0].generation, 2);
    shoal_regstore_clear(&st);
    shoal_node_free(n);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

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

TEST(persist_corrupt, "a corrupt DATA_DIR/registry is refused, by the loader and the agent")
{
    char dir[] = "/tmp/shoal-rio-XXXXXX", why[256], err[4096];
    struct shoal_regstore st;
    struct shoal_instance ev[2];
    struct shoal_reg_digest d = {.owner = "p1", .version = 5};
    struct shoal_reg_msg m = {.type = SHOAL_REG_SYNC_DATA, .from = "p1", .last = true};
    static uint8_t buf[4096];

    TEST_SEED(test_seed, 107);
    CHECK(mkdtemp(dir) != NULL);
    spec_init(&ev[0], "a-1", "a", 1);
    spec_init(&ev[1], "a-2", "a", 2);
    for (int i = 0; i < 2; i++) {
        snprintf(ev[i].owner, sizeof(ev[i].owner), "p1");
        ev[i].generation = 1;
        ev[i].version = (uint64_t)i + 1;
    }
    m.events = ev;
    m.n_events = 2;
    m.digests = &d;
    m.n_digests = 1;

    /* A good file first, as a reference. */
    int len = shoal_wire_encode_reg(&m, buf, sizeof(buf));
    CHECK(len > 0);
    write_file(dir, "registry", buf, (size_t)len);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 2);
    CHECK_EQ(st.version, 5);
    shoal_regstore_clear(&st);

    struct {
        const char *what, *says;
        int mutate;
    } cases[] = {
        {"truncated", "does not decode", 1},  {"garbage", "does not decode", 2},
        {"wrong type", "type 8 message", 3},  {"no digest", "exactly one digest", 4},
        {"a tombstone", "tombstone", 5},      {"version above the counter", "above the counter", 6},
        {"duplicate id", "appears twice", 7}, {"another owner's instance", "belongs to", 8},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct shoal_reg_msg mm = m;
        struct shoal_instance e2[2] = {ev[0], ev[1]};
        mm.events = e2;
        switch (cases[i].mutate) {
        case 3:
            mm.type = SHOAL_REG_GOSSIP;
            break;
        case 4:
            mm.n_digests = 0;
            break;
        case 5:
            e2[1].deleted = true;
            break;
        case 6:
            e2[1].version = 9;
            break;
        case 7:
            e2[1].id = "a-1";
            break;
        case 8:
            snprintf(e2[1].owner, sizeof(e2[1].owner), "p2");
            break;
        }
        len = shoal_wire_encode_reg(&mm, buf, sizeof(buf));
        CHECK(len > 0);
        if (cases[i].mutate == 1)
            len -= 7;
        if (cases[i].mutate == 2)
            memset(buf, 0xff, (size_t)len);
        write_file(dir, "registry", buf, (size_t)len);
        int rc = shoal_regstore_load(dir, &st, why, sizeof(why));
        CHECKF(rc == SHOAL_EINVAL, "%s: rc %d", cases[i].what, rc);
        CHECKF(strstr(why, cases[i].says) != NULL, "%s: '%s'", cases[i].what, why);
        CHECK_EQ(st.msg.n_events, 0);
    }

    /* The agent refuses to start on the last one, exit 1, naming the file. */
    char *args[] = {"agent",  "--name",      "p1",     "--data-dir",  dir,
                    "--bind", "127.0.0.1:1", "--http", "127.0.0.1:1", NULL};
    CHECK_EQ(agent_capture(args, err, sizeof(err)), 1);
    CHECK(strstr(err, "/registry") && strstr(err, "belongs to") && strstr(err, "Refusing"));
    rm_tree(dir);
}

/* --------------------------------------------------------- service files */

static int parse(const char *text, struct shoal_svclist *l, char *err, size_t errlen)
{
    return shoal_svcfile_parse_text(text, strlen(text), "t.service", l, err, errlen);
}

TEST(svcfile_good, "a service file with comments, two sections, tags, meta and ttl parses")
{
    struct shoal_svclist l = {0};
    char err[SHOAL_SVCFILE_ERR_MAX + 64];
    static const char text[] = "# web tier\n"
                               "\n"
                               "[service]\n"
                               "id = web-1\n"
                               "service = web\n"
                               "  address=10.0.0.1  \r\n"
                               "port = 8080\n"
                               "tag = v1\n"
                               "tag = primary\n"
                               "meta.version = 1.2.3\n"
                               "meta.note = a = b # not a comment\n"
                               "ttl = 10s\n"
                               "\t# indented comment\n"
                               "[service]\n"
                               "id = db-1\n"
                               "service = db\n"
                               "address = db.local\n"
                               "port = 5432";
    CHECK_EQ(parse(text, &l, err, sizeof(err)), 0);
    CHECK_EQ(l.n, 2);
    const struct shoal_instance *w = &l.defs[0].spec;
    CHECK(strcmp(w->id, "web-1") == 0 && strcmp(w->service, "web") == 0);
    CHECK(strcmp(w->address, "10.0.0.1") == 0 && w->port == 8080 && w->ttl_ms == 10000);
    CHECK(w->n_tags == 2 && strcmp(w->tags[0], "v1") == 0 && strcmp(w->tags[1], "primary") == 0);
    CHECK(w->n_meta == 2 && strcmp(w->meta[0].key, "version") == 0);
    CHECK(strcmp(w->meta[1].value, "a = b # not a comment") == 0);
    CHECK_EQ(l.defs[0].line, 3);
    CHECK(strcmp(l.defs[0].file, "t.service") == 0);
    const struct shoal_instance *d = &l.defs[1].spec;
    CHECK(strcmp(d->address, "db.local") == 0 && d->port == 5432 && d->ttl_ms == 0);
    CHECK_EQ(l.defs[1].line, 14);
    /* An empty file (or only comments) is no error and no service. */
    CHECK_EQ(parse("# nothing\n\n", &l, err, sizeof(err)), 0);
    CHECK_EQ(l.n, 2);
    shoal_svclist_clear(&l);
}

TEST(svcfile_errors, "each kind of service file error is reported as FILE:LINE: message")
{
    static const struct {
        const char *text, *says;
    } cases[] = {
        {"id = x\n", "t.service:1: 'id' outside a [service] section"},
        {"[service]\nid web-1\n", "t.service:2: expected 'key = value'"},
        {"[service]\n= web\n", "t.service:2: missing key"},
        {"[services]\n", "t.service:1: unknown section '[services]'"},
        {"[service]\nid = a\nname = b\n", "t.service:3: unknown key 'name'"},
        {"[service]\nid = a\nid = b\n", "t.service:3: duplicate 'id' (first at line 2)"},
        {"[service]\nid = a\nservice = w\naddress = h\nport = 0\n", "t.service:5: port must be"},
        {"[service]\nid = a\nport = 70000\n", "t.service:3: port must be"},
        {"[service]\nid = a\nport = 8o\n", "t.service:3: port must be"},
        {"[service]\nid = a\nttl = soon\n", "t.service:3: ttl must be a duration"},
        {"[service]\nid = a b\n", "t.service:2: id must be"},
        {"[service]\nid = a\nservice = Web\n", "t.service:3: service must be"},
        {"[service]\nid = a\naddress = h/x\n", "t.service:3: address must be"},
        {"[service]\nid = a\ntag = has space\n", "t.service:3: a tag must be"},
        {"[service]\nid = a\nmeta.b@d = 1\n", "t.service:3: a meta key must be"},
        {"[service]\nid = a\nmeta.k = 1\nmeta.k = 2\n", "t.service:4: duplicate meta key 'k'"},
        {"# c\n[service]\nservice = w\naddress = h\nport = 1\n",
         "t.service:2: this [service] section has no 'id'"},
        {"[service]\nid = a\nservice = w\naddress = h\n[service]\n",
         "t.service:1: [service] 'a' has no 'port'"},
        {"[service]\nid = a\nport = 1\naddress = h\n",
         "t.service:1: [service] 'a' has no 'service'"},
        {"[service]\nid = a\nservice = w\naddress = h\nport = 1\n"
         "[service]\nid = a\nservice = w\naddress = h\nport = 2\n",
         "t.service:6: id 'a' is already defined at t.service:1"},
        {"[service]\nid = a\x00\n", "t.service:2: NUL byte"},
    };
    char err[SHOAL_SVCFILE_ERR_MAX + 64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct shoal_svclist l = {0};
        size_t len = strlen(cases[i].text);
        if (strstr(cases[i].says, "NUL"))
            len = 18; /* through the NUL and the newline after it */
        int rc = shoal_svcfile_parse_text(cases[i].text, len, "t.service", &l, err, sizeof(err));
        CHECKF(rc == SHOAL_EINVAL, "case %zu: rc %d", i, rc);
        CHECKF(strncmp(err, cases[i].says, strlen(cases[i].says)) == 0, "case %zu: '%s'", i, err);
        CHECK_EQ(l.n, 0); /* nothing of a bad file is kept */
    }

    /* 33 tags: the line of the 33rd. */
    char text[2048] = "[service]\nid = a\n";
    for (int i = 0; i < 33; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "tag = t%d\n", i);
    struct shoal_svclist l = {0};
    CHECK_EQ(parse(text, &l, err, sizeof(err)), SHOAL_EINVAL);
    CHECKF(strncmp(err, "t.service:35: at most 32 tags", 29) == 0, "'%s'", err);
    /* A line too long. */
    static char longline[SHOAL_SVCFILE_MAX_LINE + 64];
    snprintf(longline, sizeof(longline), "[service]\nmeta.k = ");
    memset(longline + strlen(longline), 'x', SHOAL_SVCFILE_MAX_LINE);
    CHECK_EQ(parse(longline, &l, err, sizeof(err)), SHOAL_EINVAL);
    CHECKF(strstr(err, "t.service:2: line longer than") != NULL, "'%s'", err);

    /* A good file after a bad one: the list holds only the good one's. */
    CHECK_EQ(parse("[service]\nid = a\nservice = w\naddress = h\nport = 1\n", &l, err, sizeof(err)),
             0);
    CHECK_EQ(parse("[service]\nid = b\nservice = w\naddress = h\nport = x\n", &l, err, sizeof(err)),
             SHOAL_EINVAL);
    CHECK_EQ(l.n, 1);
    /* Ids must be unique across files too. */
    CHECK_EQ(shoal_svcfile_parse_text("[service]\nid = a\nservice = w\naddress = h\nport = 2\n", 49,
                                      "u.service", &l, err, sizeof(err)),
             SHOAL_EINVAL);
    CHECKF(strstr(err, "u.service:1: id 'a' is already defined at t.service:1") != NULL, "'%s'",
           err);
    shoal_svclist_clear(&l);
}

TEST(svcdir_reload, "--config-dir loads good files, skips bad ones, and a reload reconciles")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-rio-XXXXXX";
    struct shoal_svcset set = {0};
    struct shoal_svcset_result res;
    struct tnode t;
    struct shoal_instance spec;

    TEST_SEED(test_seed, 108);
    shoal_log_set_level(SHOAL_LOG_ERROR);
    CHECK(mkdtemp(dir) != NULL);
    start_tnode(loop, &t, "c1", test_seed, 0);
    write_text(dir, "a.service",
               "[service]\nid = a-1\nservice = a\naddress = h\nport = 1\n"
               "[service]\nid = a-2\nservice = a\naddress = h\nport = 2\n");
    write_text(dir, "b.service", "[service]\nid = b-1\nservice = b\naddress = h\nport = x\n");
    write_text(dir, "c.service", "[service]\nid = c-1\nservice = c\naddress = h\nport = 3\n");
    write_text(dir, "notes.txt", "[service]\nid = n-1\n"); /* not *.service */
    /* An API registration, which reloads must leave alone. */
    spec_init(&spec, "api-1", "a", 9);
    must_register(t.node, &spec);

    CHECK_EQ(shoal_svcset_apply(&set, dir, t.node, &res), 0);
    CHECK_EQ(res.registered, 3);
    CHECK_EQ(res.files_failed, 1);
    CHECK_EQ(set.n, 3);
    CHECK_EQ(visible(t.node, "a", true), 3);
    CHECK_EQ(visible(t.node, "b", true), 0);
    CHECK_EQ(visible(t.node, "c", true), 1);

    /* Same content again: nothing changes, not even versions. */
    uint64_t v = shoal_registry_own_version(shoal_node_registry(t.node));
    CHECK_EQ(shoal_svcset_apply(&set, dir, t.node, &res), 0);
    CHECK_EQ(res.registered, 0);
    CHECK_EQ(res.unchanged, 3);
    CHECK_EQ(shoal_registry_own_version(shoal_node_registry(t.node)), v);

    /* Reload: a-2 removed, a-1 changed, b fixed, c broken (c-1 kept), new d. */
    write_text(dir, "a.service", "[service]\nid = a-1\nservice = a\naddress = h\nport = 11\n");
    write_text(dir, "b.service", "[service]\nid = b-1\nservice = b\naddress = h\nport = 4\n");
    write_text(dir, "c.service", "[service]\nid = c-1\nservice = c\naddress = h\nport = 3\nbad\n");
    write_text(dir, "d.service", "[service]\nid = d-1\nservice = d\naddress = h\nport = 5\n");
    CHECK_EQ(shoal_svcset_apply(&set, dir, t.node, &res), 0);
    CHECK_EQ(res.registered, 3); /* a-1 (changed), b-1, d-1 */
    CHECK_EQ(res.deregistered, 1);
    CHECK_EQ(res.kept, 1);
    CHECK_EQ(res.files_failed, 1);
    CHECK(find(t.node, "a", "a-2") == NULL);
    CHECK_EQ(find(t.node, "a", "a-1")->port, 11);
    CHECK(find(t.node, "a", "api-1") != NULL);
    CHECK(find(t.node, "b", "b-1") != NULL);
    CHECK(find(t.node, "c", "c-1") != NULL);
    CHECK(find(t.node, "d", "d-1") != NULL);

    /* An id the API took over is not the files' any more. */
    shoal_svcset_forget(&set, "d-1");
    unlink(strcat(strcpy((char[256]){0}, dir), "/d.service"));
    CHECK_EQ(shoal_svcset_apply(&set, dir, t.node, &res), 0);
    CHECK(find(t.node, "d", "d-1") != NULL);

    /* Everything gone but the broken c: only c-1 stays, and api-1. */
    unlink(strcat(strcpy((char[256]){0}, dir), "/a.service"));
    unlink(strcat(strcpy((char[256]){0}, dir), "/b.service"));
    CHECK_EQ(shoal_svcset_apply(&set, dir, t.node, &res), 0);
    CHECK_EQ(res.deregistered, 2);
    CHECK_EQ(visible(t.node, "a", true), 1);
    CHECK_EQ(visible(t.node, "b", true), 0);
    CHECK_EQ(visible(t.node, "c", true), 1);

    /* An unreadable directory changes nothing. */
    CHECK_EQ(shoal_svcset_apply(&set, "/nonexistent/shoal", t.node, &res), -ENOENT);
    CHECK_EQ(visible(t.node, "c", true), 1);
    shoal_svcset_clear(&set);
    shoal_node_free(t.node);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

/* ------------------------------------------------------------- HTTP API */

struct api_call {
    int status;
    json_t *json;
};

static struct api_call call_api(struct shoal_api *api, const char *method, const char *path,
                                const char *query, const char *body)
{
    struct shoal_http_req req = {method, path, query, body, strlen(body), ""};
    struct shoal_http_resp resp = {0};
    struct api_call out = {0};
    json_error_t jerr;
    shoal_api_handle(api, 1, &req, &resp);
    CHECK(resp.body != NULL);
    CHECK(!resp.deferred);
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
    CHECK(json_object_size(c->json) == 1);
    return json_string_value(e);
}

TEST(api_register, "POST /v1/register checks every field, names it, and changes nothing on error")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tnode t;
    static const struct {
        const char *body, *says;
    } bad[] = {
        {"", "body is not valid JSON"},
        {"[1]", "body is not a JSON object"},
        {"{\"service\":\"web\",\"address\":\"h\",\"port\":1}", "\"id\" is missing"},
        {"{\"id\":7,\"service\":\"web\",\"address\":\"h\",\"port\":1}", "\"id\" must be a string"},
        {"{\"id\":\"w\",\"address\":\"h\",\"port\":1}", "\"service\" is missing"},
        {"{\"id\":\"w\",\"service\":\"web\",\"port\":1}", "\"address\" is missing"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\"}", "\"port\" is missing"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":\"80\"}",
         "\"port\" must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":0}", "\"port\" must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1.5}", "\"port\" must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"tags\":\"v1\"}",
         "\"tags\" must be an array"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"tags\":[\"a\",2]}",
         "\"tags\"[1] must be a string"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"tags\":[\"a b\"]}",
         "a tag must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"meta\":[]}",
         "\"meta\" must be an object"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"meta\":{\"k\":1}}",
         "\"meta\".\"k\" must be a string"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"meta\":{\"b d\":\"1\"}}",
         "a meta key must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"ttl\":\"soon\"}",
         "\"ttl\" must be a duration"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"ttl\":-5}",
         "\"ttl\" must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"ttl\":true}",
         "\"ttl\" must be a duration"},
        {"{\"id\":\"w\",\"service\":\"Web\",\"address\":\"h\",\"port\":1}", "service must be"},
        {"{\"id\":\"w w\",\"service\":\"web\",\"address\":\"h\",\"port\":1}", "id must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"\",\"port\":1}", "address must be"},
        {"{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"name\":\"x\"}",
         "unknown field \"name\""},
        {"{\"id\":\"w\",\"id\":\"v\",\"service\":\"web\",\"address\":\"h\",\"port\":1}",
         "body is not valid JSON"},
        {"{\"id\":\"w\\u0000x\",\"service\":\"web\",\"address\":\"h\",\"port\":1}",
         "body is not valid JSON (\\u0000 is not allowed"},
    };

    TEST_SEED(test_seed, 109);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_tnode(loop, &t, "a1", test_seed, 0);
    struct shoal_api api = {.node = t.node};
    const struct shoal_registry *r = shoal_node_registry(t.node);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct api_call c = call_api(&api, "POST", "/v1/register", "", bad[i].body);
        CHECKF(c.status == 400, "case %zu: %d", i, c.status);
        CHECKF(strstr(error_of(&c), bad[i].says) != NULL, "case %zu: '%s'", i, error_of(&c));
        json_decref(c.json);
        CHECK_EQ(shoal_registry_own(r, NULL, 0), 0);
        CHECK_EQ(shoal_registry_own_version(r), 0);
    }
    /* 33 tags: refused whole. */
    char body[1024] = "{\"id\":\"w\",\"service\":\"web\",\"address\":\"h\",\"port\":1,\"tags\":[";
    for (int i = 0; i < 33; i++)
        snprintf(body + strlen(body), sizeof(body) - strlen(body), "%s\"t%d\"", i ? "," : "", i);
    strcat(body, "]}");
    struct api_call c = call_api(&api, "POST", "/v1/register", "", body);
    CHECK_EQ(c.status, 400);
    CHECK(strstr(error_of(&c), "tags") != NULL);
    json_decref(c.json);
    CHECK_EQ(shoal_registry_own_version(r), 0);

    /* A good one: 200 with the version; the same again is idempotent. */
    static const char good[] =
        "{\"id\":\"web-1\",\"service\":\"web\",\"address\":\"127.0.0.1\",\"port\":8080,"
        "\"tags\":[\"v1\"],\"meta\":{\"version\":\"1.2\"},\"ttl\":\"10s\"}";
    c = call_api(&api, "POST", "/v1/register", "", good);
    CHECK_EQ(c.status, 200);
    CHECK(strcmp(json_string_value(json_object_get(c.json, "registered")), "web-1") == 0);
    json_int_t v1 = json_integer_value(json_object_get(c.json, "version"));
    CHECK(v1 >= 1);
    json_decref(c.json);
    c = call_api(&api, "POST", "/v1/register", "", good);
    CHECK_EQ(c.status, 200);
    CHECK_EQ(json_integer_value(json_object_get(c.json, "version")), v1);
    json_decref(c.json);
    /* ttl as a number of ms updates it: a new version. */
    c = call_api(&api, "POST", "/v1/register", "",
                 "{\"id\":\"web-1\",\"service\":\"web\",\"address\":\"127.0.0.1\",\"port\":8080,"
                 "\"ttl\":20000}");
    CHECK_EQ(c.status, 200);
    CHECK(json_integer_value(json_object_get(c.json, "version")) > v1);
    json_decref(c.json);

    /* A TTL instance starts critical; a heartbeat makes it passing. */
    c = call_api(&api, "GET", "/v1/instances/web", "all=1", "");
    CHECK_EQ(c.status, 200);
    json_t *arr = json_object_get(c.json, "instances");
    CHECK_EQ(json_array_size(arr), 1);
    json_t *in = json_array_get(arr, 0);
    CHECK(strcmp(json_string_value(json_object_get(in, "status")), "critical") == 0);
    CHECK_EQ(json_integer_value(json_object_get(in, "ttl_ms")), 20000);
    CHECK(json_is_null(json_object_get(in, "last_heartbeat")));
    CHECK(strcmp(json_string_value(json_object_get(in, "owner")), "a1") == 0);
    CHECK(strcmp(json_string_value(json_object_get(in, "owner_status")), "alive") == 0);
    const char *reg_at = json_string_value(json_object_get(in, "registered_at"));
    CHECKF(reg_at && strlen(reg_at) == 24 && reg_at[10] == 'T' && reg_at[23] == 'Z', "%s",
           reg_at ? reg_at : "null");
    CHECK_EQ(json_object_size(in), 16); /* with checks, deregister_critical_after_ms */
    json_decref(c.json);
    c = call_api(&api, "GET", "/v1/instances/web", "", ""); /* passing only */
    CHECK_EQ(json_array_size(json_object_get(c.json, "instances")), 0);
    json_decref(c.json);

    c = call_api(&api, "POST", "/v1/heartbeat/web-1", "", "");
    CHECK_EQ(c.status, 200);
    CHECK(strcmp(json_string_value(json_object_get(c.json, "status")), "passing") == 0);
    json_decref(c.json);
    c = call_api(&api, "GET", "/v1/instances/web", "tag=v1", "");
    CHECK_EQ(json_array_size(json_object_get(c.json, "instances")), 0); /* tags were dropped */
    json_decref(c.json);
    c = call_api(&api, "GET", "/v1/instances/web", "", "");
    CHECK_EQ(json_array_size(json_object_get(c.json, "instances")), 1);
    in = json_array_get(json_object_get(c.json, "instances"), 0);
    CHECK(json_is_string(json_object_get(in, "last_heartbeat")));
    json_decref(c.json);

    /* Other endpoints' errors. */
    static const struct {
        const char *method, *path, *query;
        int status;
        const char *says;
    } errs[] = {
        {"POST", "/v1/heartbeat/nope", "", 404, "no instance 'nope'"},
        {"POST", "/v1/deregister/nope", "", 404, "no instance 'nope'"},
        {"POST", "/v1/deregister/", "", 400, "instance id"},
        {"POST", "/v1/deregister/a%20b", "", 400, "id must be"},
        {"GET", "/v1/deregister/web-1", "", 405, "use POST"},
        {"GET", "/v1/instances/Web", "", 400, "service must be"},
        {"GET", "/v1/instances/web", "tag=a%20b", 400, "tag filter"},
        {"GET", "/v1/instances/web", "meta=novalue", 400, "KEY:VALUE"},
        {"GET", "/v1/instances/web", "index=x", 400, "\"index\""},
        {"GET", "/v1/instances/web", "wait=11m&index=1", 400, "\"wait\""},
        {"GET", "/v1/instances/web", "all=maybe", 400, "\"all\""},
        {"GET", "/v1/instances/web", "color=red", 400, "unknown query parameter 'color'"},
        {"GET", "/v1/instances/a/b", "", 404, "no such endpoint"},
        {"POST", "/v1/services", "", 405, "use GET"},
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        c = call_api(&api, errs[i].method, errs[i].path, errs[i].query, "");
        CHECKF(c.status == errs[i].status, "%s %s?%s: %d", errs[i].method, errs[i].path,
               errs[i].query, c.status);
        CHECKF(strstr(error_of(&c), errs[i].says) != NULL, "%s: '%s'", errs[i].path, error_of(&c));
        json_decref(c.json);
    }
    c = call_api(&api, "POST", "/v1/register", "",
                 "{\"id\":\"plain\",\"service\":\"web\",\"address\":\"h\",\"port\":1}");
    CHECK_EQ(c.status, 200);
    json_decref(c.json);
    c = call_api(&api, "POST", "/v1/heartbeat/plain", "", "");
    CHECK_EQ(c.status, 400);
    CHECK(strstr(error_of(&c), "no TTL") != NULL);
    json_decref(c.json);

    /* services, registry and info. */
    c = call_api(&api, "GET", "/v1/services", "", "");
    CHECK_EQ(c.status, 200);
    arr = json_object_get(c.json, "services");
    CHECK_EQ(json_array_size(arr), 1);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(arr, 0), "name")), "web") == 0);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(arr, 0), "passing")), 2);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(arr, 0), "total")), 2);
    json_decref(c.json);
    c = call_api(&api, "GET", "/v1/registry", "", "");
    CHECK_EQ(c.status, 200);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(c.json, "instances"), "passing")),
             2);
    arr = json_object_get(c.json, "digests");
    CHECK_EQ(json_array_size(arr), 1);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(arr, 0), "owner")), "a1") == 0);
    CHECK_EQ(strlen(json_string_value(json_object_get(json_array_get(arr, 0), "hash"))), 16);
    CHECK(json_integer_value(json_object_get(json_object_get(c.json, "stats"), "events_applied")) >
          0);
    json_decref(c.json);
    c = call_api(&api, "GET", "/v1/info", "", "");
    json_t *reg = json_object_get(c.json, "registry");
    CHECK_EQ(json_integer_value(json_object_get(reg, "own")), 2);
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(reg, "instances"), "passing")), 2);
    CHECK(json_is_integer(json_object_get(reg, "tombstones")));
    CHECK(json_is_integer(json_object_get(reg, "syncs_started")));
    CHECK(json_is_integer(json_object_get(json_object_get(reg, "stream"), "frames_in")));
    CHECK_EQ(json_object_size(c.json), 17);
    json_decref(c.json);

    c = call_api(&api, "POST", "/v1/deregister/web-1", "", "");
    CHECK_EQ(c.status, 200);
    CHECK(strcmp(json_string_value(json_object_get(c.json, "deregistered")), "web-1") == 0);
    json_decref(c.json);
    CHECK_EQ(shoal_registry_own(r, NULL, 0), 1);
    shoal_api_close(&api);
    shoal_node_free(t.node);
    ev_loop_destroy(loop);
}

/* A raw HTTP client on a non-blocking socket. */
struct client {
    int fd;
    char buf[65536];
    size_t len;
};

static void client_open(struct client *c, const struct shoal_addr *to)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(to->port)};
    memcpy(&sin.sin_addr, to->ip, 4);
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c->fd >= 0);
    CHECK(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    CHECK(fcntl(c->fd, F_SETFL, O_NONBLOCK) == 0);
}

static void client_get(struct client *c, const char *target)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
    CHECK(write(c->fd, req, (size_t)n) == n);
}

/* Has a whole response arrived? (Content-Length bodies only.) */
static bool client_done(void *ud)
{
    struct client *c = ud;
    ssize_t r;
    while ((r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len)) > 0)
        c->len += (size_t)r;
    c->buf[c->len] = 0;
    const char *hdr_end = strstr(c->buf, "\r\n\r\n");
    const char *cl = strstr(c->buf, "Content-Length: ");
    if (!hdr_end || !cl)
        return false;
    return c->len >= (size_t)(hdr_end + 4 - c->buf) + strtoul(cl + 16, NULL, 10);
}

static json_t *client_json(struct client *c)
{
    json_error_t jerr;
    CHECK(strncmp(c->buf, "HTTP/1.1 200", 12) == 0);
    json_t *j = json_loads(strstr(c->buf, "\r\n\r\n") + 4, 0, &jerr);
    CHECK(j != NULL);
    c->len = 0;
    return j;
}

TEST(blocking, "a blocking query waits, wakes on a change of its service, else times out")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static struct tnode t[2];
    static const char *const names[] = {"b1", "b2"};
    struct group g;
    struct shoal_instance spec;
    struct shoal_addr haddr;
    struct client c1, c2;
    char target[256];
    int err;

    TEST_SEED(test_seed, 110);
    shoal_log_set_level(SHOAL_LOG_WARN);
    start_group(loop, &g, t, names, 2, 0);
    static struct shoal_api api;
    api.node = t[1].node;
    api.loop = loop;
    CHECK(shoal_addr_parse("127.0.0.1:1", &haddr) == 0);
    /* Find a free HTTP port by binding port 0 is not offered by http.h:
     * try a few. */
    struct shoal_http_server *srv = NULL;
    for (int p = 20000 + (int)(getpid() % 20000), i = 0; !srv && i < 50; i++, p++) {
        haddr.port = (uint16_t)p;
        srv = shoal_http_server_new(loop, &haddr, shoal_api_handle, &api, &err);
    }
    CHECK(srv != NULL);
    api.http = srv;
    t[1].api = &api;

    /* The index of "web" before anything exists. */
    uint64_t idx = shoal_registry_index(shoal_node_registry(t[1].node), "web");
    client_open(&c1, &haddr);
    snprintf(target, sizeof(target), "/v1/instances/web?index=%" PRIu64 "&wait=20s", idx);
    client_get(&c1, target);
    /* Another service's change does not wake it. */
    client_open(&c2, &haddr);
    snprintf(target, sizeof(target), "/v1/instances/db?index=%" PRIu64 "&wait=300ms",
             shoal_registry_index(shoal_node_registry(t[1].node), "db"));
    client_get(&c2, target);
    run_for(loop, 0.1);
    CHECK_EQ(shoal_api_waiting(&api), 2);
    CHECK(!client_done(&c1) && !client_done(&c2));

    /* A registration on b1 reaches b2 by gossip and wakes the web query. */
    spec_init(&spec, "web-1", "web", 80);
    must_register(t[0].node, &spec);
    CHECKF(run_until(loop, client_done, &c1, 10.0), "the blocking query was not woken");
    json_t *j = client_json(&c1);
    CHECK((uint64_t)json_integer_value(json_object_get(j, "index")) != idx);
    CHECK_EQ(json_array_size(json_object_get(j, "instances")), 1);
    json_decref(j);

    /* The db query times out with the same index and no instances. */
    CHECKF(run_until(loop, client_done, &c2, 5.0), "the blocking query did not time out");
    j = client_json(&c2);
    CHECK_EQ(json_array_size(json_object_get(j, "instances")), 0);
    json_decref(j);
    CHECK_EQ(shoal_api_waiting(&api), 0);

    /* An index that differs answers at once; the same keep-alive
     * connection serves the next blocking query. */
    client_get(&c1, "/v1/instances/web?index=1");
    CHECK(run_until(loop, client_done, &c1, 5.0));
    j = client_json(&c1);
    idx = (uint64_t)json_integer_value(json_object_get(j, "index"));
    json_decref(j);
    snprintf(target, sizeof(target), "/v1/instances/web?index=%" PRIu64 "&wait=10s", idx);
    client_get(&c1, target);
    run_for(loop, 0.05);
    CHECK_EQ(shoal_api_waiting(&api), 1);
    CHECK_EQ(shoal_node_deregister(t[0].node, "web-1"), 0);
    CHECK(run_until(loop, client_done, &c1, 10.0));
    j = client_json(&c1);
    CHECK_EQ(json_array_size(json_object_get(j, "instances")), 0);
    json_decref(j);

    /* A client that goes away: its waiter is answered into the void. */
    snprintf(target, sizeof(target), "/v1/instances/web?index=%" PRIu64 "&wait=200ms",
             shoal_registry_index(shoal_node_registry(t[1].node), "web"));
    client_get(&c2, target);
    run_for(loop, 0.05);
    close(c2.fd);
    run_for(loop, 0.4);
    CHECK_EQ(shoal_api_waiting(&api), 0);

    close(c1.fd);
    t[1].api = NULL;
    shoal_api_close(&api);
    shoal_http_server_free(srv);
    free_group(&g);
    ev_loop_destroy(loop);
}

TEST(blocking_cap, "past 4096 waiting blocking queries the next one is a 503")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tnode t;
    struct shoal_addr haddr;
    int err;

    TEST_SEED(test_seed, 112);
    shoal_log_set_level(SHOAL_LOG_ERROR);
    start_tnode(loop, &t, "w1", test_seed, 0);
    static struct shoal_api api;
    api.node = t.node;
    api.loop = loop;
    CHECK(shoal_addr_parse("127.0.0.1:1", &haddr) == 0);
    struct shoal_http_server *srv = NULL;
    for (int p = 40000 + (int)(getpid() % 20000), i = 0; !srv && i < 50; i++, p++) {
        haddr.port = (uint16_t)p;
        srv = shoal_http_server_new(loop, &haddr, shoal_api_handle, &api, &err);
    }
    CHECK(srv != NULL);
    api.http = srv;
    /* Deferred requests on connection ids the server never had: their
     * eventual answers are refused, which is what a vanished client gets. */
    struct shoal_http_req req = {"GET", "/v1/instances/web", "index=1&wait=10m", "", 0, ""};
    for (int i = 0; i < SHOAL_API_MAX_WAITERS; i++) {
        struct shoal_http_resp resp = {0};
        shoal_api_handle(&api, 1000000 + (uint64_t)i, &req, &resp);
        CHECK(resp.deferred && !resp.body);
    }
    CHECK_EQ(shoal_api_waiting(&api), SHOAL_API_MAX_WAITERS);
    struct shoal_http_resp resp = {0};
    shoal_api_handle(&api, 99, &req, &resp);
    CHECK(!resp.deferred);
    CHECK_EQ(resp.status, 503);
    CHECK(strstr(resp.body, "too many blocking queries") != NULL);
    free(resp.body);
    /* A change wakes them all at once; none of them is there to answer. */
    struct shoal_instance spec;
    spec_init(&spec, "web-1", "web", 80);
    must_register(t.node, &spec);
    shoal_api_registry_changed(&api);
    CHECK_EQ(shoal_api_waiting(&api), 0);
    shoal_api_close(&api);
    shoal_http_server_free(srv);
    shoal_node_free(t.node);
    ev_loop_destroy(loop);
}

/* --------------------------------------------------- stream robustness */

static bool stream_closed(void *ud)
{
    const struct shoal_stream_counters *c = ud;
    return c->open == 0 && c->accepted >= 2;
}

TEST(stream_garbage, "garbage and oversize frames on the TCP port are counted, never fatal")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct tnode t;
    uint8_t junk[512];

    TEST_SEED(test_seed, 111);
    shoal_log_set_level(SHOAL_LOG_ERROR);
    start_tnode(loop, &t, "s1", test_seed, 0);
    const struct shoal_addr *a = shoal_node_bound(t.node);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(a->port)};
    memcpy(&sin.sin_addr, a->ip, 4);

    /* A frame of the right length full of junk: a counted drop. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    memset(junk, 0x5a, sizeof(junk));
    junk[0] = 0;
    junk[1] = 0;
    junk[2] = 0x01;
    junk[3] = 0xfc; /* 508 bytes follow */
    CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
    /* A prefix announcing 2 GB: the connection is closed. */
    int fd2 = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd2, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    CHECK(write(fd2, "\x7f\xff\xff\xff", 4) == 4);
    run_for(loop, 0.2);
    close(fd);
    const struct shoal_stream_counters *sc = shoal_node_stream_counters(t.node);
    CHECKF(run_until(loop, stream_closed, (void *)sc, 5.0), "open %" PRIu64, sc->open);
    CHECK_EQ(sc->closed_too_large, 1);
    CHECK_EQ(sc->frames_in, 1);
    CHECK_EQ(drops_total(shoal_node_counters(t.node)->frame_drops), 1);
    char b[8];
    CHECK(read(fd2, b, sizeof(b)) <= 0); /* closed by the node */
    close(fd2);
    /* Registry datagram types a stream must carry are refused over UDP. */
    CHECK_EQ(shoal_registry_stats(shoal_node_registry(t.node))->syncs_served, 0);
    shoal_node_free(t.node);
    ev_loop_destroy(loop);
}

/* -------------------------------------------------------- agent flags */

/* A port that is free for both UDP and TCP right now. */
static int free_port(void)
{
    for (int tries = 0; tries < 100; tries++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sin);
        int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(u >= 0 && t >= 0);
        CHECK(bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0);
        CHECK(getsockname(u, (struct sockaddr *)&sin, &sl) == 0);
        bool ok = bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        close(u);
        close(t);
        if (ok)
            return ntohs(sin.sin_port);
    }
    CHECK(!"no free port");
    return 0;
}

TEST(agent_flags,
     "the registry flags are validated (exit 2 naming the flag); a bad --config-dir is exit 1")
{
    static const struct {
        const char *flag, *value, *says;
    } bad[] = {
        {"--sync-interval", "often", "bad --sync-interval 'often'"},
        {"--registry-reap", "0", "bad --registry-reap '0': must be at least 1ms"},
        {"--tombstone-ttl", "-1s", "bad --tombstone-ttl '-1s'"},
        {"--config-dir", "", "bad --config-dir '': must not be empty"},
        {"--max-datagram", "600", "bad --max-datagram '600': must be between 684"},
    };
    char err[4096], dir[] = "/tmp/shoal-rio-XXXXXX", cfg[300];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *args[] = {"agent", (char *)bad[i].flag, (char *)bad[i].value, NULL};
        CHECK_EQ(agent_capture(args, err, sizeof(err)), 2);
        CHECKF(strstr(err, bad[i].says) != NULL, "%s: '%s'", bad[i].flag, err);
    }
    char *help[] = {"agent", "--help", NULL};
    CHECK_EQ(agent_capture(help, err, sizeof(err)), 0);

    CHECK(mkdtemp(dir) != NULL);
    snprintf(cfg, sizeof(cfg), "%s/no-such-dir", dir);
    char bind_s[32], http_s[32];
    snprintf(bind_s, sizeof(bind_s), "127.0.0.1:%d", free_port());
    snprintf(http_s, sizeof(http_s), "127.0.0.1:%d", free_port());
    char *args[] = {"agent", "--name", "f1",   "--data-dir",   dir, "--bind",
                    bind_s,  "--http", http_s, "--config-dir", cfg, NULL};
    CHECK_EQ(agent_capture(args, err, sizeof(err)), 1);
    CHECKF(strstr(err, "cannot read --config-dir") && strstr(err, "No such file"), "'%s'", err);

    /* The stream listener needs the --bind port on TCP too. */
    int port = free_port();
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(tcp, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(tcp, 1) == 0);
    snprintf(bind_s, sizeof(bind_s), "127.0.0.1:%d", port);
    char *args2[] = {"agent",  "--name", "f1",     "--data-dir", dir,
                     "--bind", bind_s,   "--http", http_s,       NULL};
    CHECK_EQ(agent_capture(args2, err, sizeof(err)), 1);
    CHECKF(strstr(err, "cannot bind UDP and TCP") && strstr(err, "Address already in use"), "'%s'",
           err);
    close(tcp);
    rm_tree(dir);
}

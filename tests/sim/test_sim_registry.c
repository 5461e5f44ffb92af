/* test_sim_registry.c -- scenario tests of the replicated registry on the
 * deterministic simulator: every node runs swim + registry glued as
 * src/io/node.c does (regsim_util.h).
 *
 * Stories: one registration reaches all 200 nodes (no loss; median and
 * max spread printed); a node joining a cluster of 10,000 instances gets
 * them all by its join sync; 200 nodes under 10% loss take thousands of
 * registrations, deregistrations, updates, health changes and TTL expiries
 * while owners crash and restart and the cluster splits in two and heals,
 * and end with one registry that is exactly the live owners' own, with no
 * deregistered instance back anywhere; the same seed replays the same run.
 * Constants are memberlist's LAN profile (swim) and the registry's
 * defaults (gossip 200 ms x 3, retransmit mult 4, anti-entropy every 30 s);
 * every bound is on VIRTUAL time and derived below. Every failing check
 * repeats the seed: replay with SHOAL_SEED=<seed> ./test_sim_registry <name>.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "regsim_util.h"
#include "shoal/error.h"
#include "test.h"

TEST_MAIN()

static uint64_t g_seed; /* the running test's seed, repeated by every check */

#define SCHECK(cond, fmt, ...)                                                                     \
    CHECKF(cond, "[replay: SHOAL_SEED=%llu] " fmt, (unsigned long long)g_seed, ##__VA_ARGS__)

/* ---- protocol constants and derived bounds ------------------------------- */

#define PROBE_MS 1000.0
#define GOSSIP_MS 200.0
#define SYNC_MS 30000.0 /* registry anti-entropy interval (default) */
#define SUSP_MULT 4.0
#define SUSP_MAX_MULT 6.0

/* Push gossip reaches n nodes in about log2 n + ln n rounds (DESIGN.md,
 * Pittel); the registry also pushes a new event at once at every hop, so
 * this is an upper bound on the spread, x2 for the epidemic's tail. */
static int64_t spread_bound_ms(size_t n)
{
    return (int64_t)(2.0 * (log2((double)n) + log((double)n)) * GOSSIP_MS);
}

/* Lifeguard's largest suspicion timeout for n members, plus the slack of
 * test_sim.c's detection bound (first probe within 10 periods, its
 * timeout, the suspicion and the death spread by gossip). */
static int64_t detect_bound_ms(size_t n)
{
    double scale = log10((double)n);
    double susp_max = SUSP_MAX_MULT * SUSP_MULT * (scale > 1.0 ? scale : 1.0) * PROBE_MS;
    return (int64_t)(susp_max + 11.0 * PROBE_MS + 2.0 * (double)spread_bound_ms(n));
}

/* ---- instances ----------------------------------------------------------- */

/* A spec with its own storage: production-like fields (two tags and one
 * meta pair), rev changes the port (an update). */
struct spec {
    struct shoal_instance in;
    char id[32], service[32], address[32];
    char tag0[16], tag1[16], mkey[16], mval[32];
    char *tags[2];
    struct shoal_kv meta[1];
};

static void spec_make(struct spec *s, const char *prefix, uint32_t k, uint32_t service,
                      uint32_t rev, uint32_t ttl_ms)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s%u", prefix, k);
    snprintf(s->service, sizeof(s->service), "svc-%u", service);
    snprintf(s->address, sizeof(s->address), "10.%u.%u.%u", (k >> 16) & 255, (k >> 8) & 255,
             k & 255);
    snprintf(s->tag0, sizeof(s->tag0), "v%u", rev);
    snprintf(s->tag1, sizeof(s->tag1), "zone-%c", 'a' + (int)(k % 3));
    snprintf(s->mkey, sizeof(s->mkey), "commit");
    snprintf(s->mval, sizeof(s->mval), "%08x", (unsigned)(k * 2654435761u));
    s->tags[0] = s->tag0;
    s->tags[1] = s->tag1;
    s->meta[0].key = s->mkey;
    s->meta[0].value = s->mval;
    s->in.id = s->id;
    s->in.service = s->service;
    s->in.address = s->address;
    s->in.port = (uint16_t)(8000 + rev);
    s->in.n_tags = 2;
    s->in.tags = s->tags;
    s->in.n_meta = 1;
    s->in.meta = s->meta;
    s->in.ttl_ms = ttl_ms;
}

/* ---- helpers ------------------------------------------------------------- */

static struct regsim *new_regsim(uint64_t seed, size_t n)
{
    struct regsim *rs = regsim_new(seed, n);
    SCHECK(rs != NULL, "regsim_new(%zu) failed", n);
    return rs;
}

static bool pred_swim_converged(struct regsim *rs, void *ud)
{
    (void)ud;
    return sim_converged(regsim_sim(rs), NULL, 0);
}

/* Starts n0 alone and node i at i * stagger_ms through n0; returns when
 * membership is one view (bound: test_sim.c's join bound, generously). */
static int64_t join_all(struct regsim *rs, size_t n, int64_t stagger_ms, const char *what)
{
    char why[256];
    SCHECK(regsim_start(rs, 0, -1) == 0, "%s: start n0", what);
    for (size_t i = 1; i < n; i++) {
        regsim_run_until(rs, (int64_t)i * stagger_ms);
        int rc = regsim_start(rs, i, 0);
        SCHECK(rc == 0, "%s: start n%zu: %s", what, i, shoal_strerror(rc));
    }
    int64_t last = regsim_now(rs);
    /* One push-pull interval (30 s) plus the join wave's spread. */
    int64_t bound = last + 30000 + 2 * spread_bound_ms(n) + (int64_t)n * 100;
    int64_t t = regsim_run_until_true(rs, bound, 100, pred_swim_converged, NULL);
    if (t < 0) {
        sim_converged(regsim_sim(rs), why, sizeof(why));
        SCHECK(false, "%s: membership not one view by t=%.1f s: %s", what, (double)bound / 1000.0,
               why);
    }
    return t;
}

static void check_clean(const struct regsim *rs, const char *label)
{
    char why[512];
    regsim_print_stats(rs, label);
    SCHECK(regsim_clean(rs, why, sizeof(why)), "%s: %s", label, why);
    /* Invariants after every scenario (besides check_converged's digests,
     * acknowledged instances and nothing deregistered): refutations at
     * most one per claimed incarnation; false deaths counted. */
    struct sim *s = regsim_sim((struct regsim *)rs);
    SCHECK(sim_refutation_excess(s, why, sizeof(why)) == 0, "%s: %s", label, why);
    fprintf(stderr, "  [%s] false deaths: %zu\n", label, sim_false_deaths(s, NULL, 0));
}

/* Fails with every first difference if the registry has not converged. */
static void check_converged(struct regsim *rs, const char *label)
{
    char w_members[512] = "", w_digests[512] = "", w_replicas[512] = "", w_stale[512] = "";
    bool members = regsim_members_ok(rs, w_members, sizeof(w_members));
    size_t bad = regsim_divergent(rs, w_replicas, sizeof(w_replicas));
    if (bad)
        regsim_explain(rs);
    bool digests = regsim_digests_agree(rs, w_digests, sizeof(w_digests));
    if (!digests)
        regsim_explain(rs);
    size_t stale = regsim_stale_held(rs, w_stale, sizeof(w_stale));
    SCHECK(members && digests && bad == 0 && stale == 0,
           "%s at t=%.1f s:\n  membership: %s\n  (a) digests: %s\n  (b) %zu replicas differ from "
           "the live owners' own instances; first: %s\n  (c) %zu deregistered instances held "
           "live: %s",
           label, (double)regsim_now(rs) / 1000.0, members ? "ok" : w_members,
           digests ? "identical" : w_digests, bad, bad ? w_replicas : "-", stale,
           stale ? w_stale : "-");
}

static bool pred_converged(struct regsim *rs, void *ud)
{
    (void)ud;
    return regsim_converged(rs, NULL, 0);
}

/* Gossip alone may miss a (node, event) pair (about e^-8 each at these
 * constants); anti-entropy repairs it: each node syncs with a random
 * member every 30 s, so allow two rounds. Fails with the differences. */
static int64_t wait_converged(struct regsim *rs, const char *label)
{
    int64_t t0 = regsim_now(rs);
    int64_t t = regsim_run_until_true(rs, t0 + 2 * (int64_t)SYNC_MS, 500, pred_converged, NULL);
    if (t < 0)
        check_converged(rs, label);
    return t;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- 1. spread of one registration --------------------------------------- */

#define SPREAD_N 200
#define SPREAD_REGS 20

struct spread {
    int64_t registered_at[SPREAD_REGS];
    int64_t all_at[SPREAD_REGS];
    size_t reached[SPREAD_REGS];
};

static void spread_observer(void *ud, size_t node, const struct shoal_reg_change *c,
                            uint64_t generation, uint64_t version, int64_t now)
{
    struct spread *sp = ud;
    (void)node;
    (void)generation;
    (void)version;
    if (c->kind != SHOAL_REG_ADDED || strncmp(c->id, "p", 1) != 0)
        return;
    unsigned r = (unsigned)strtoul(c->id + 1, NULL, 10);
    if (r >= SPREAD_REGS)
        return;
    if (++sp->reached[r] == SPREAD_N)
        sp->all_at[r] = now;
}

TEST_T(spread_200,
       "a registration reaches all 200 nodes within the gossip bound, a straggler by "
       "anti-entropy (no loss)",
       300)
{
    TEST_SEED(g_seed, 1101);
    struct regsim *rs = new_regsim(g_seed, SPREAD_N);
    static struct spread sp;
    memset(&sp, 0, sizeof(sp));
    regsim_set_observer(rs, spread_observer, &sp);
    join_all(rs, SPREAD_N, 20, "spread: join");
    regsim_run_for(rs, 5000);

    int64_t bound = spread_bound_ms(SPREAD_N);
    /* A node misses every gossiped copy of one event with chance about
     * (1 - 1/199)^(200 * 12) = e^-12 (each holder sends it lambda *
     * ceil(log10(N+1)) = 12 times), about 2% per run of 20 x 199 pairs:
     * then anti-entropy (30 s) brings it, within two rounds. */
    int64_t repair = bound + 2 * (int64_t)SYNC_MS;
    int64_t gossip_until[SPREAD_REGS];
    size_t at_bound[SPREAD_REGS];
    for (unsigned r = 0; r < SPREAD_REGS; r++) {
        struct spec s;
        size_t owner = (r * 37 + 11) % SPREAD_N;
        spec_make(&s, "p", r, r % 5, 0, 0);
        sp.all_at[r] = -1;
        sp.registered_at[r] = regsim_now(rs);
        const char *why = NULL;
        int rc = regsim_register(rs, owner, &s.in, &why);
        SCHECK(rc == 0, "register p%u at n%zu: %s", r, owner, why ? why : shoal_strerror(rc));
        /* Each spreads alone: the next comes after this one's bound. */
        gossip_until[r] = regsim_now(rs) + bound;
        regsim_run_until(rs, gossip_until[r]);
        at_bound[r] = sp.reached[r];
    }
    regsim_run_until(rs, sp.registered_at[SPREAD_REGS - 1] + repair);

    int64_t dt[SPREAD_REGS];
    size_t stragglers = 0;
    for (unsigned r = 0; r < SPREAD_REGS; r++) {
        SCHECK(sp.all_at[r] >= 0, "p%u reached %zu of %d nodes by %.1f s after registering", r,
               sp.reached[r], SPREAD_N, (double)repair / 1000.0);
        dt[r] = sp.all_at[r] - sp.registered_at[r];
        stragglers += SPREAD_N - at_bound[r];
        SCHECK(at_bound[r] + 1 >= SPREAD_N,
               "p%u reached only %zu of %d nodes within the gossip bound %.3f s", r, at_bound[r],
               SPREAD_N, (double)bound / 1000.0);
    }
    qsort(dt, SPREAD_REGS, sizeof(dt[0]), cmp_i64);
    fprintf(stderr,
            "  spread: %d registrations reached all %d nodes in median %lld ms, min %lld ms, "
            "max %lld ms (gossip bound %lld ms, latency 1-10 ms); %zu (node, registration) "
            "pairs left to anti-entropy\n",
            SPREAD_REGS, SPREAD_N, (long long)dt[SPREAD_REGS / 2], (long long)dt[0],
            (long long)dt[SPREAD_REGS - 1], (long long)bound, stragglers);
    check_converged(rs, "spread");
    check_clean(rs, "spread");
    regsim_free(rs);
}

/* ---- 2. a joiner gets 10,000 instances ----------------------------------- */

#define BULK_OWNERS 10
#define BULK_PER_OWNER 1000
#define BULK_TOTAL (BULK_OWNERS * BULK_PER_OWNER)

static bool pred_all_hold(struct regsim *rs, void *ud)
{
    size_t want = *(const size_t *)ud;
    for (size_t i = 0; i < regsim_size(rs); i++)
        if (regsim_running(rs, i) && regsim_visible(rs, i) != want)
            return false;
    return true;
}

TEST_T(join_bulk, "a node joining a cluster of 10,000 instances holds them all within 5 s", 300)
{
    TEST_SEED(g_seed, 2202);
    struct regsim *rs = new_regsim(g_seed, BULK_OWNERS + 1);
    char why[512];
    join_all(rs, BULK_OWNERS, 50, "bulk: join");

    /* Every owner registers its thousand at once. */
    int64_t t0 = regsim_now(rs);
    for (size_t o = 0; o < BULK_OWNERS; o++) {
        for (uint32_t k = 0; k < BULK_PER_OWNER; k++) {
            struct spec s;
            uint32_t id = (uint32_t)o * BULK_PER_OWNER + k;
            spec_make(&s, "b", id, id % 100, 0, 0);
            const char *w = NULL;
            int rc = regsim_register(rs, o, &s.in, &w);
            SCHECK(rc == 0, "register b%u at n%zu: %s", id, o, w ? w : shoal_strerror(rc));
        }
    }
    /* Gossip carries most; anti-entropy (30 s) the rest: three rounds. */
    size_t want = BULK_TOTAL;
    int64_t t = regsim_run_until_true(rs, t0 + 3 * (int64_t)SYNC_MS, 100, pred_all_hold, &want);
    SCHECK(t >= 0, "the %d owners do not all hold %d instances %.0f s after registering",
           BULK_OWNERS, BULK_TOTAL, 3 * SYNC_MS / 1000.0);
    fprintf(stderr, "  bulk: %d owners hold all %d instances %.2f s after registering\n",
            BULK_OWNERS, BULK_TOTAL, (double)(t - t0) / 1000.0);

    /* The joiner: its JOINED event syncs with its seed, which holds all. */
    size_t j = BULK_OWNERS;
    int64_t tj = regsim_now(rs);
    SCHECK(regsim_start(rs, j, 0) == 0, "start the joiner");
    const int64_t bound = 5000;
    int64_t tf = -1;
    while (regsim_now(rs) < tj + bound && tf < 0) {
        regsim_run_for(rs, 1);
        if (regsim_visible(rs, j) == BULK_TOTAL)
            tf = regsim_now(rs);
    }
    SCHECK(tf >= 0, "the joiner holds %zu of %d instances %.1f s after starting",
           regsim_visible(rs, j), BULK_TOTAL, (double)bound / 1000.0);
    SCHECK(regsim_replica_ok(rs, j, why, sizeof(why)), "joiner: %s", why);
    fprintf(stderr,
            "  bulk: the joiner held all %d instances %lld ms after it started (bound %lld ms; "
            "stream bandwidth 1 Gbit/s, latency 1-10 ms)\n",
            BULK_TOTAL, (long long)(tf - tj), (long long)bound);
    regsim_run_for(rs, 10000);
    check_converged(rs, "bulk");
    check_clean(rs, "bulk");
    regsim_free(rs);
}

/* ---- 3. the scenario --------------------------------------------- */

#define MAIN_N 200
#define MAIN_REGS 3000
#define MAIN_DEREGS 1000
#define MAIN_UPDATES 300
#define MAIN_HEALTH 200
#define MAIN_TTL_EVERY 20 /* one registration in 20 has a TTL */
#define MAIN_TTL_MS 10000 /* heartbeated every 4 s while tended */
#define MAIN_HB_MS 4000
#define MAIN_SERVICES 100
#define MAIN_WORK_MS 240000 /* the workload runs this long */
#define MAIN_LOSS 0.10
#define MAIN_DUP 0.01         /* registry datagrams delivered twice, the copy */
#define MAIN_DUP_MAX_MS 20000 /* up to 20 s late */
/* A dead owner's instances are reaped after this (default 1 h): longer
 * than the partition, so that a side declared dead comes back before it is
 * reaped (the partition_reap story covers a longer split), short enough
 * that crashed owners are reaped within the quiet period. */
#define MAIN_REAP_MS 90000
#define MAIN_CRASHES 6
#define MAIN_RESTARTS 4
#define MAIN_CUT_AT 80000 /* partition, relative to the workload start */
#define MAIN_HEAL_AT 140000

enum op_kind { OP_REG, OP_DEREG, OP_UPDATE, OP_HEALTH, OP_CRASH, OP_RESTART, OP_CUT, OP_HEAL };

struct op {
    int64_t at;
    uint32_t seq;
    uint8_t kind;
    uint32_t arg;
};

static int op_cmp(const void *a, const void *b)
{
    const struct op *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct inst {
    int32_t owner;
    uint32_t service, rev, ttl_ms;
    bool tended; /* a TTL instance still heartbeated */
    int64_t stop_hb_at;
    int64_t next_hb;
};

struct main_state {
    struct regsim *rs;
    struct shoal_rng rng;
    struct inst *inst;
    uint32_t *live; /* instances registered and not deregistered, as far as we know */
    size_t n_live;
    int group[MAIN_N];
    bool cut;
    size_t crashed[MAIN_CRASHES]; /* the node of each crash */
    size_t regs, deregs, ttl_deregs, updates, health, crashes, restarts;
};

static void live_remove(struct main_state *m, size_t pos) { m->live[pos] = m->live[--m->n_live]; }

/* A running node, in `group` if >= 0 and the cluster is cut. */
static size_t pick_running(struct main_state *m, int group)
{
    for (;;) {
        size_t i = shoal_rng_below(&m->rng, MAIN_N);
        if (regsim_running(m->rs, i) && (group < 0 || !m->cut || m->group[i] == group))
            return i;
    }
}

static void do_register(struct main_state *m, uint32_t k)
{
    struct inst *in = &m->inst[k];
    size_t owner = pick_running(m, -1);
    struct spec s;
    in->owner = (int32_t)owner;
    in->service = shoal_rng_below(&m->rng, MAIN_SERVICES);
    in->rev = 0;
    in->ttl_ms = k % MAIN_TTL_EVERY == 0 ? MAIN_TTL_MS : 0;
    spec_make(&s, "i", k, in->service, 0, in->ttl_ms);
    const char *why = NULL;
    int rc = regsim_register(m->rs, owner, &s.in, &why);
    SCHECK(rc == 0, "register i%u at n%zu: %s", k, owner, why ? why : shoal_strerror(rc));
    if (in->ttl_ms) {
        /* Tended from now: a third are abandoned at a random later time
         * (critical after the TTL, deregistered by the owner 2 TTLs later). */
        in->tended = true;
        in->next_hb = regsim_now(m->rs);
        in->stop_hb_at = shoal_rng_below(&m->rng, 3) == 0
                             ? regsim_now(m->rs) + 5000 + shoal_rng_below(&m->rng, 60000)
                             : INT64_MAX;
    }
    m->live[m->n_live++] = k;
    m->regs++;
}

/* Picks a live instance whose owner runs (at most 64 tries); -1 if none. */
static long pick_live(struct main_state *m)
{
    for (int tries = 0; tries < 64 && m->n_live > 0; tries++) {
        size_t pos = shoal_rng_below(&m->rng, (uint32_t)m->n_live);
        struct inst *in = &m->inst[m->live[pos]];
        if (regsim_running(m->rs, (size_t)in->owner))
            return (long)pos;
    }
    return -1;
}

static void do_deregister(struct main_state *m)
{
    for (int tries = 0; tries < 16; tries++) {
        long pos = pick_live(m);
        if (pos < 0)
            return;
        uint32_t k = m->live[pos];
        struct inst *in = &m->inst[k];
        char id[32];
        snprintf(id, sizeof(id), "i%u", k);
        int rc = regsim_deregister(m->rs, (size_t)in->owner, id);
        live_remove(m, (size_t)pos);
        in->tended = false;
        if (rc == SHOAL_ENOENT) {
            /* Its TTL ran out: its owner deregistered it already. */
            SCHECK(in->ttl_ms && in->stop_hb_at != INT64_MAX,
                   "deregister i%u at n%d: not found, yet it was tended or had no TTL", k,
                   in->owner);
            m->ttl_deregs++;
            continue;
        }
        SCHECK(rc == 0, "deregister i%u at n%d: %s", k, in->owner, shoal_strerror(rc));
        m->deregs++;
        return;
    }
}

static void do_update(struct main_state *m, bool health)
{
    long pos = pick_live(m);
    if (pos < 0)
        return;
    uint32_t k = m->live[pos];
    struct inst *in = &m->inst[k];
    char id[32];
    snprintf(id, sizeof(id), "i%u", k);
    int rc;
    if (health) {
        if (in->ttl_ms)
            return; /* TTL instances' health is the TTL's */
        rc = regsim_set_health(m->rs, (size_t)in->owner, id,
                               (uint8_t)shoal_rng_below(&m->rng, SHOAL_HEALTH_COUNT));
        m->health++;
    } else {
        struct spec s;
        spec_make(&s, "i", k, in->service, in->rev + 1, in->ttl_ms);
        const char *why = NULL;
        rc = regsim_register(m->rs, (size_t)in->owner, &s.in, &why);
        if (rc == 0)
            in->rev++;
        m->updates++;
    }
    SCHECK(rc == 0, "%s i%u at n%d: %s", health ? "health change of" : "update", k, in->owner,
           shoal_strerror(rc));
}

static void do_heartbeats(struct main_state *m)
{
    int64_t now = regsim_now(m->rs);
    for (size_t p = 0; p < m->n_live; p++) {
        uint32_t k = m->live[p];
        struct inst *in = &m->inst[k];
        if (!in->tended || in->next_hb > now)
            continue;
        if (now >= in->stop_hb_at) {
            in->tended = false;
            continue;
        }
        in->next_hb = now + MAIN_HB_MS;
        if (!regsim_running(m->rs, (size_t)in->owner))
            continue;
        char id[32];
        snprintf(id, sizeof(id), "i%u", k);
        int rc = regsim_heartbeat(m->rs, (size_t)in->owner, id);
        /* A tended instance may have expired only while its owner was
         * down (the TTL restarts at the restore): never while tended. */
        SCHECK(rc == 0, "heartbeat i%u at n%d: %s", k, in->owner, shoal_strerror(rc));
    }
}

/* A running node whose membership holds a crashed owner dead (or does not
 * know it at all) does not serve its instances. */
static void check_dead_not_served(struct main_state *m, const char *label)
{
    struct sim *s = regsim_sim(m->rs);
    for (size_t x = 0; x < MAIN_N; x++) {
        if (sim_node_state(s, x) != SIM_CRASHED)
            continue;
        char name[16];
        snprintf(name, sizeof(name), "n%zu", x);
        for (size_t y = 0; y < MAIN_N; y++) {
            int st = regsim_running(m->rs, y) ? sim_view(s, y, x, NULL) : SHOAL_ALIVE;
            if (st == SHOAL_ALIVE || st == SHOAL_SUSPECT)
                continue;
            SCHECK(!shoal_registry_owner_live(regsim_registry(m->rs, y), name),
                   "%s: n%zu's membership has %s %s, yet its registry serves %s's instances at "
                   "t=%lld ms",
                   label, y, name, st < 0 ? "absent" : shoal_status_name(st), name,
                   (long long)regsim_now(m->rs));
        }
    }
}

static void run_op(struct main_state *m, const struct op *o)
{
    char why[512];
    switch (o->kind) {
    case OP_REG:
        do_register(m, o->arg);
        break;
    case OP_DEREG:
        do_deregister(m);
        break;
    case OP_UPDATE:
        do_update(m, false);
        break;
    case OP_HEALTH:
        do_update(m, true);
        break;
    case OP_CRASH: {
        size_t x;
        do
            x = 1 + shoal_rng_below(&m->rng, MAIN_N - 1); /* n0 is everybody's seed */
        while (!regsim_running(m->rs, x));
        SCHECK(regsim_crash(m->rs, x) == 0, "crash n%zu", x);
        m->crashed[o->arg] = x;
        m->crashes++;
        fprintf(stderr, "  main: t=%.1f s crash n%zu\n", (double)regsim_now(m->rs) / 1000.0, x);
        break;
    }
    case OP_RESTART: {
        /* The node of crash o->arg, through a node on its side of any cut. */
        struct sim *s = regsim_sim(m->rs);
        size_t x = m->crashed[o->arg];
        size_t seed = pick_running(m, m->group[x]);
        int rc = regsim_restart(m->rs, x, (int)seed);
        SCHECK(rc == 0, "restart n%zu through n%zu: %s", x, seed, shoal_strerror(rc));
        m->restarts++;
        fprintf(stderr, "  main: t=%.1f s restart n%zu (generation %llu) through n%zu\n",
                (double)regsim_now(m->rs) / 1000.0, x, (unsigned long long)sim_generation(s, x),
                seed);
        break;
    }
    case OP_CUT:
        for (size_t i = 0; i < MAIN_N; i++)
            m->group[i] = i < MAIN_N / 2 ? 0 : 1;
        regsim_partition(m->rs, m->group);
        m->cut = true;
        fprintf(stderr, "  main: t=%.1f s partition into n0-n%d | n%d-n%d\n",
                (double)regsim_now(m->rs) / 1000.0, MAIN_N / 2 - 1, MAIN_N / 2, MAIN_N - 1);
        break;
    case OP_HEAL:
        regsim_heal(m->rs);
        m->cut = false;
        fprintf(stderr, "  main: t=%.1f s heal\n", (double)regsim_now(m->rs) / 1000.0);
        break;
    }
    SCHECK(regsim_clean(m->rs, why, sizeof(why)), "after op %u at t=%lld ms: %s", o->kind,
           (long long)regsim_now(m->rs), why);
}

TEST_T(main_scenario,
       "200 nodes, 10% loss, crashes, restarts, a healed partition: one registry, the live "
       "owners' own, nothing deregistered back",
       600)
{
    TEST_SEED(g_seed, 3303);
    struct main_state m;
    memset(&m, 0, sizeof(m));
    shoal_rng_seed(&m.rng, g_seed ^ 0x6d61696eULL);
    m.rs = new_regsim(g_seed, MAIN_N);
    regsim_base_config(m.rs)->reap_ms = MAIN_REAP_MS;
    m.inst = calloc(MAIN_REGS, sizeof(*m.inst));
    m.live = calloc(MAIN_REGS, sizeof(*m.live));
    SCHECK(m.inst && m.live, "out of memory");

    int64_t t_join = join_all(m.rs, MAIN_N, 20, "main: join");
    regsim_set_loss(m.rs, MAIN_LOSS);
    regsim_set_duplication(m.rs, MAIN_DUP, MAIN_DUP_MAX_MS);
    int64_t t0 = t_join + 5000;
    regsim_run_until(m.rs, t0);

    /* The workload, drawn up front, run in time order. */
    size_t n_ops =
        MAIN_REGS + MAIN_DEREGS + MAIN_UPDATES + MAIN_HEALTH + MAIN_CRASHES + MAIN_RESTARTS + 2;
    struct op *ops = calloc(n_ops, sizeof(*ops));
    SCHECK(ops != NULL, "out of memory");
    size_t k = 0;
    uint32_t seq = 0;
#define ADD_OP(kind_, at_, arg_)                                                                   \
    ops[k++] = (struct op) { (at_), seq++, (kind_), (arg_) }
    for (uint32_t i = 0; i < MAIN_REGS; i++)
        ADD_OP(OP_REG, t0 + (int64_t)i * (MAIN_WORK_MS - 40000) / MAIN_REGS, i);
    /* Deregistrations, updates and health changes start 20 s in. */
    for (uint32_t i = 0; i < MAIN_DEREGS; i++)
        ADD_OP(OP_DEREG, t0 + 20000 + shoal_rng_below(&m.rng, MAIN_WORK_MS - 20000), 0);
    for (uint32_t i = 0; i < MAIN_UPDATES; i++)
        ADD_OP(OP_UPDATE, t0 + 20000 + shoal_rng_below(&m.rng, MAIN_WORK_MS - 20000), 0);
    for (uint32_t i = 0; i < MAIN_HEALTH; i++)
        ADD_OP(OP_HEALTH, t0 + 20000 + shoal_rng_below(&m.rng, MAIN_WORK_MS - 20000), 0);
    /* Crashes spread over the workload, one during the partition; each of
     * the first MAIN_RESTARTS comes back 10-60 s later. */
    for (uint32_t i = 0; i < MAIN_CRASHES; i++) {
        int64_t at = t0 + 10000 + (int64_t)i * (MAIN_WORK_MS - 60000) / MAIN_CRASHES +
                     shoal_rng_below(&m.rng, 20000);
        ADD_OP(OP_CRASH, at, i);
        if (i < MAIN_RESTARTS)
            ADD_OP(OP_RESTART, at + 10000 + shoal_rng_below(&m.rng, 50000), i);
    }
    ADD_OP(OP_CUT, t0 + MAIN_CUT_AT, 0);
    ADD_OP(OP_HEAL, t0 + MAIN_HEAL_AT, 0);
#undef ADD_OP
    SCHECK(k == n_ops, "op count %zu != %zu", k, n_ops);
    qsort(ops, n_ops, sizeof(*ops), op_cmp);

    int64_t next_check = t0;
    for (size_t i = 0; i < n_ops; i++) {
        while (regsim_now(m.rs) < ops[i].at) {
            int64_t next = regsim_now(m.rs) + 100;
            regsim_run_until(m.rs, next < ops[i].at ? next : ops[i].at);
            do_heartbeats(&m);
            if (regsim_now(m.rs) >= next_check) {
                check_dead_not_served(&m, "workload");
                next_check += 5000;
            }
        }
        run_op(&m, &ops[i]);
    }
    free(ops);
    int64_t t_quiet = regsim_now(m.rs);
    fprintf(stderr,
            "  main: workload done at t=%.1f s: %zu registrations, %zu deregistrations (+%zu by "
            "TTL found at deregister), %zu updates, %zu health changes, %zu crashes, %zu "
            "restarts; %zu instances live by the test's count\n",
            (double)t_quiet / 1000.0, m.regs, m.deregs, m.ttl_deregs, m.updates, m.health,
            m.crashes, m.restarts, m.n_live);
    SCHECK(m.regs == MAIN_REGS && m.crashes == MAIN_CRASHES && m.restarts == MAIN_RESTARTS,
           "workload incomplete: %zu registrations, %zu crashes, %zu restarts", m.regs, m.crashes,
           m.restarts);
    SCHECK(m.deregs >= MAIN_DEREGS * 9 / 10, "only %zu of %d deregistrations found a live target",
           m.deregs, MAIN_DEREGS);

    /* Quiet: no more changes but tended heartbeats and TTL expiries. The
     * last crash is detected (detect bound), reaped (reap_ms), and four
     * anti-entropy rounds repair whatever gossip and the partition missed. */
    int64_t bound = detect_bound_ms(MAIN_N) + MAIN_REAP_MS + 4 * (int64_t)SYNC_MS;
    int64_t t_conv = -1, next = t_quiet;
    while (regsim_now(m.rs) < t_quiet + bound) {
        regsim_run_for(m.rs, 1000);
        do_heartbeats(&m);
        if (regsim_now(m.rs) >= next) {
            next += 5000;
            check_dead_not_served(&m, "quiet");
            if (regsim_converged(m.rs, NULL, 0)) {
                t_conv = regsim_now(m.rs);
                break;
            }
        }
    }
    if (t_conv < 0)
        check_converged(m.rs, "main: quiet");
    fprintf(stderr, "  main: one registry %.1f s after the workload (bound %.1f s)\n",
            (double)(t_conv - t_quiet) / 1000.0, (double)bound / 1000.0);

    /* It holds through two more anti-entropy rounds. */
    for (int s = 0; s < 2 * (int)(SYNC_MS / 1000); s++) {
        regsim_run_for(m.rs, 1000);
        do_heartbeats(&m);
    }
    check_converged(m.rs, "main: end");
    const struct regsim_oracle_stats *o = regsim_oracle_stats(m.rs);
    struct shoal_registry *r0 = regsim_registry(m.rs, 0);
    size_t by_health[SHOAL_HEALTH_COUNT], tombs;
    shoal_registry_counts(r0, by_health, &tombs);
    fprintf(stderr,
            "  main: every node holds %zu instances (%zu passing, %zu warning, %zu critical) and "
            "%zu tombstones; %llu deregistrations by owners watched, %llu changes seen, %llu "
            "came back\n",
            by_health[0] + by_health[1] + by_health[2], by_health[0], by_health[1], by_health[2],
            tombs, (unsigned long long)o->deregistrations, (unsigned long long)o->changes,
            (unsigned long long)o->comebacks);
    SCHECK(o->deregistrations >= m.deregs, "the oracle saw %llu deregistrations, the test made %zu",
           (unsigned long long)o->deregistrations, m.deregs);
    check_clean(m.rs, "main");
    free(m.inst);
    free(m.live);
    regsim_free(m.rs);
}

/* ---- 4. a partition longer than the reap time ---------------------------- */

#define PR_N 40
#define PR_PER_NODE 5
#define PR_REAP_MS 30000
#define PR_CUT_MS 120000

TEST_T(partition_reap,
       "a partition longer than the reap time heals into one registry (each side reaped the "
       "other)",
       300)
{
    TEST_SEED(g_seed, 5505);
    struct regsim *rs = new_regsim(g_seed, PR_N);
    regsim_base_config(rs)->reap_ms = PR_REAP_MS;
    join_all(rs, PR_N, 20, "partition_reap: join");
    for (uint32_t i = 0; i < PR_N; i++) {
        for (uint32_t k = 0; k < PR_PER_NODE; k++) {
            struct spec s;
            uint32_t id = i * PR_PER_NODE + k;
            spec_make(&s, "r", id, id % 7, 0, 0);
            const char *why = NULL;
            SCHECK(regsim_register(rs, i, &s.in, &why) == 0, "register r%u at n%u", id, i);
        }
    }
    wait_converged(rs, "partition_reap: before the cut");

    int group[PR_N];
    for (size_t i = 0; i < PR_N; i++)
        group[i] = i < PR_N / 2 ? 0 : 1;
    regsim_partition(rs, group);
    /* Each side declares the other dead and, reap_ms later, reaps it; an
     * owner on each side changes one instance meanwhile. */
    regsim_run_for(rs, PR_CUT_MS / 2);
    for (size_t i = 0; i < PR_N; i += PR_N / 2) {
        struct spec s;
        uint32_t id = (uint32_t)i * PR_PER_NODE;
        spec_make(&s, "r", id, id % 7, 1, 0);
        const char *why = NULL;
        SCHECK(regsim_register(rs, i, &s.in, &why) == 0, "update r%u at n%zu", id, i);
    }
    regsim_run_for(rs, PR_CUT_MS / 2);
    struct shoal_registry_stats st;
    regsim_registry_stats(rs, &st);
    fprintf(stderr, "  partition_reap: %llu owners reaped during the %d s split\n",
            (unsigned long long)st.reaped, PR_CUT_MS / 1000);
    SCHECK(st.reaped > 0, "no side reaped the other: the story needs a longer split");

    int64_t t_heal = regsim_now(rs);
    regsim_heal(rs);
    /* Membership heals by push-pull (each side stopped gossiping to the
     * other, dead for over gossip_to_dead_ms): memberlist's scaled
     * interval, 30 s * (ceil(log2(40/32)) + 1) = 60 s at 40 nodes. Then
     * anti-entropy needs a few rounds (each node pulls from a random
     * member every 30 s): three. */
    int64_t bound = 60000 + 3 * (int64_t)SYNC_MS;
    int64_t t = -1;
    while (regsim_now(rs) < t_heal + bound && t < 0) {
        regsim_run_for(rs, 1000);
        if (regsim_converged(rs, NULL, 0))
            t = regsim_now(rs);
    }
    if (t < 0)
        check_converged(rs, "partition_reap: after the heal");
    fprintf(stderr, "  partition_reap: one registry %.1f s after the heal (bound %.1f s)\n",
            (double)(t - t_heal) / 1000.0, (double)bound / 1000.0);
    check_clean(rs, "partition_reap");
    regsim_free(rs);
}

/* ---- 5. a newcomer and an owner that died before it came ----------------- */

#define LJ_N 12
#define LJ_OWNER 3
#define LJ_NEW 11
#define LJ_REAP_MS 60000

static bool pred_all_see_dead(struct regsim *rs, void *ud)
{
    return sim_all_see(regsim_sim(rs), *(const size_t *)ud, SIM_MASK(SHOAL_DEAD), NULL, 0);
}

TEST_T(late_joiner_dead_owner,
       "a node that joins after an owner died neither serves nor keeps that owner's instances", 300)
{
    TEST_SEED(g_seed, 6606);
    struct regsim *rs = new_regsim(g_seed, LJ_N);
    regsim_base_config(rs)->reap_ms = LJ_REAP_MS;
    join_all(rs, LJ_N - 1, 20, "late_joiner: join"); /* n11 stays off */
    for (uint32_t k = 0; k < 5; k++) {
        struct spec s;
        spec_make(&s, "x", k, 0, 0, 0);
        const char *why = NULL;
        SCHECK(regsim_register(rs, LJ_OWNER, &s.in, &why) == 0, "register x%u", k);
    }
    wait_converged(rs, "late_joiner: before the crash");

    int64_t t_crash = regsim_now(rs);
    SCHECK(regsim_crash(rs, LJ_OWNER) == 0, "crash n%d", LJ_OWNER);
    size_t owner = LJ_OWNER;
    int64_t t_dead =
        regsim_run_until_true(rs, t_crash + detect_bound_ms(LJ_N), 100, pred_all_see_dead, &owner);
    SCHECK(t_dead >= 0, "n%d not dead for all within %.1f s", LJ_OWNER,
           (double)detect_bound_ms(LJ_N) / 1000.0);

    /* Before the others reap n3, a newcomer joins through n0: its join
     * sync brings n3's instances, while its membership never heard of n3. */
    SCHECK(regsim_start(rs, LJ_NEW, 0) == 0, "start n%d", LJ_NEW);
    regsim_run_for(rs, 2000);
    struct shoal_registry *r = regsim_registry(rs, LJ_NEW);
    struct shoal_query q = {.service = "svc-0"};
    size_t served = shoal_registry_query(r, &q, NULL, 0);
    struct shoal_member_info mi;
    int st = sim_view(regsim_sim(rs), LJ_NEW, LJ_OWNER, &mi);
    fprintf(stderr,
            "  late_joiner: n%d joined %.1f s after n%d died; it holds %zu instances, serves %zu "
            "of n%d's; its membership says n%d is %s\n",
            LJ_NEW, (double)(regsim_now(rs) - t_dead) / 1000.0, LJ_OWNER,
            regsim_visible(rs, LJ_NEW), served, LJ_OWNER, LJ_OWNER,
            st < 0 ? "absent" : shoal_status_name(st));
    SCHECK(served == 0, "n%d serves %zu instances of n%d, dead before it joined", LJ_NEW, served,
           LJ_OWNER);

    /* And the instances are gone everywhere after the reap time. */
    regsim_run_until(rs, t_dead + LJ_REAP_MS + 2 * (int64_t)SYNC_MS);
    check_converged(rs, "late_joiner: after the reap time");
    check_clean(rs, "late_joiner");
    regsim_free(rs);
}

/* ---- 6. determinism ------------------------------------------------------ */

static uint64_t small_run(uint64_t seed)
{
    const size_t n = 40;
    struct regsim *rs = new_regsim(seed, n);
    struct shoal_rng rng;
    shoal_rng_seed(&rng, seed ^ 0x736d616cULL);
    join_all(rs, n, 20, "determinism: join");
    regsim_set_loss(rs, 0.05);
    for (uint32_t k = 0; k < 300; k++) {
        struct spec s;
        spec_make(&s, "d", k, k % 10, 0, 0);
        size_t owner = 1 + shoal_rng_below(&rng, (uint32_t)n - 1);
        if (!regsim_running(rs, owner))
            continue;
        const char *why = NULL;
        SCHECK(regsim_register(rs, owner, &s.in, &why) == 0, "register d%u", k);
        if (k % 3 == 0) {
            char id[16];
            regsim_run_for(rs, 50);
            snprintf(id, sizeof(id), "d%u", k);
            SCHECK(regsim_deregister(rs, owner, id) == 0, "deregister d%u", k);
        }
        if (k == 100)
            SCHECK(regsim_crash(rs, 7) == 0, "crash n7");
        if (k == 200)
            SCHECK(regsim_restart(rs, 7, 0) == 0, "restart n7");
        regsim_run_for(rs, 100);
    }
    regsim_run_for(rs, 60000);
    uint64_t h = regsim_trace_hash(rs);
    char why[512];
    SCHECK(regsim_clean(rs, why, sizeof(why)), "determinism: %s", why);
    regsim_free(rs);
    return h;
}

TEST_T(determinism, "the same seed replays the same registry run, another seed another", 300)
{
    TEST_SEED(g_seed, 4404);
    uint64_t a = small_run(g_seed), b = small_run(g_seed), c = small_run(g_seed + 1);
    fprintf(stderr, "  determinism: %016llx %016llx (seed+1: %016llx)\n", (unsigned long long)a,
            (unsigned long long)b, (unsigned long long)c);
    SCHECK(a == b, "two runs of one seed differ: %016llx vs %016llx", (unsigned long long)a,
           (unsigned long long)b);
    SCHECK(a != c, "seed and seed+1 gave the same trace %016llx", (unsigned long long)a);
}

/* ---- 7. a liar among 200 ------------------------------------------------- */

#define LIAR_N 200
#define LIAR 7
#define VICTIM 3

/* One event of owner `owner`, generation gen, version v (a tombstone if
 * service is NULL), in s's storage. */
static void liar_event(struct spec *s, const char *owner, const char *id, const char *service,
                       uint64_t gen, uint64_t v)
{
    spec_make(s, "x", 0, 0, 0, 0);
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->in.owner, sizeof(s->in.owner), "%s", owner);
    if (service)
        snprintf(s->service, sizeof(s->service), "%s", service);
    s->in.deleted = service == NULL;
    s->in.generation = gen;
    s->in.version = v;
}

TEST_T(liar_200,
       "a liar among 200 nodes with owner signatures changes nothing but its own entries", 600)
{
    TEST_SEED(g_seed, 1701);
    struct regsim *rs = new_regsim(g_seed, LIAR_N);
    SCHECK(regsim_enable_authority(rs) == 0, "enable authority");
    SCHECK(regsim_set_scope(rs, LIAR, "liar-*") == 0, "liar scope");
    join_all(rs, LIAR_N, 20, "liar: join");
    for (size_t i = 0; i < LIAR_N; i++) {
        struct spec s;
        spec_make(&s, "a", (uint32_t)i, (uint32_t)i % 5, 0, 0);
        if (i == LIAR)
            snprintf(s.service, sizeof(s.service), "liar-svc");
        const char *why = NULL;
        int rc = regsim_register(rs, i, &s.in, &why);
        SCHECK(rc == 0, "register a%zu: %s", i, why ? why : shoal_strerror(rc));
    }
    /* The liar cannot register outside its scope, through its own API. */
    struct spec pay;
    spec_make(&pay, "pay", 1, 0, 0, 0);
    snprintf(pay.service, sizeof(pay.service), "payments");
    const char *why = NULL;
    SCHECK(regsim_register(rs, LIAR, &pay.in, &why) == SHOAL_EPERM, "liar registered payments");
    wait_converged(rs, "liar: before");
    check_converged(rs, "liar: before");

    /* Every other node gets, one datagram each: a tombstone at 2^62 for the
     * victim's instance, an instance in the victim's name and a generation
     * of 2^64-1 for it (all signed with the liar's own key), the tombstone
     * unsigned, an instance of an owner nobody knows, and an event in the
     * liar's own name outside its scope (its signature is valid). */
    char victim_id[32];
    snprintf(victim_id, sizeof(victim_id), "a%d", VICTIM);
    const char *victim = regsim_name(rs, VICTIM);
    const char *liar = regsim_name(rs, LIAR);
    struct shoal_registry_stats before, after;
    regsim_registry_stats(rs, &before);
    static struct spec ev[6];
    liar_event(&ev[0], victim, victim_id, NULL, 1, 1ull << 62);
    liar_event(&ev[1], victim, "fake-1", "svc-1", 1, 1000);
    liar_event(&ev[2], victim, victim_id, "svc-3", UINT64_MAX, 1);
    liar_event(&ev[3], victim, victim_id, NULL, 1, 1ull << 62);
    liar_event(&ev[4], "ghost-1", "g-1", "svc-1", 1, 1);
    liar_event(&ev[5], liar, "pay-2", "payments", 1, 1000);
    for (int k = 0; k < 6; k++)
        if (k != 3)
            SCHECK(regsim_sign_as(rs, LIAR, &ev[k].in) == 0, "sign");
    for (size_t t = 0; t < LIAR_N; t++)
        for (int k = 0; t != LIAR && k < 6; k++)
            SCHECK(regsim_inject(rs, LIAR, t, &ev[k].in, 1) == 0, "inject %d to n%zu", k, t);
    regsim_run_for(rs, 5000);
    regsim_registry_stats(rs, &after);
    uint64_t d[SHOAL_REG_REFUSE_COUNT];
    for (int k = 0; k < SHOAL_REG_REFUSE_COUNT; k++)
        d[k] = after.refused[k] - before.refused[k];
    /* The victim takes nothing in its own name from others (stale). */
    size_t others = LIAR_N - 2;
    fprintf(stderr,
            "  liar: refused bad_signature %llu, unsigned %llu, unknown_owner %llu, "
            "out_of_scope %llu over %zu nodes\n",
            (unsigned long long)d[SHOAL_REG_REFUSE_BAD_SIGNATURE],
            (unsigned long long)d[SHOAL_REG_REFUSE_UNSIGNED],
            (unsigned long long)d[SHOAL_REG_REFUSE_UNKNOWN_OWNER],
            (unsigned long long)d[SHOAL_REG_REFUSE_OUT_OF_SCOPE], (size_t)LIAR_N - 1);
    SCHECK(d[SHOAL_REG_REFUSE_BAD_SIGNATURE] == 3 * others, "bad_signature %llu, want %zu",
           (unsigned long long)d[SHOAL_REG_REFUSE_BAD_SIGNATURE], 3 * others);
    SCHECK(d[SHOAL_REG_REFUSE_UNSIGNED] == others, "unsigned %llu",
           (unsigned long long)d[SHOAL_REG_REFUSE_UNSIGNED]);
    SCHECK(d[SHOAL_REG_REFUSE_UNKNOWN_OWNER] >= LIAR_N - 1, "unknown_owner %llu",
           (unsigned long long)d[SHOAL_REG_REFUSE_UNKNOWN_OWNER]);
    SCHECK(d[SHOAL_REG_REFUSE_OUT_OF_SCOPE] == LIAR_N - 1, "out_of_scope %llu",
           (unsigned long long)d[SHOAL_REG_REFUSE_OUT_OF_SCOPE]);
    /* Every replica is still exactly the owners' own instances. */
    check_converged(rs, "liar: after the lies");

    /* The victim's later registrations arrive everywhere. */
    struct spec later;
    spec_make(&later, "later", VICTIM, 2, 1, 0);
    SCHECK(regsim_register(rs, VICTIM, &later.in, &why) == 0, "victim registers later");
    wait_converged(rs, "liar: the victim's later registration");
    check_converged(rs, "liar: end");
    check_clean(rs, "liar");
    regsim_free(rs);
}

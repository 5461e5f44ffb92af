/* test_sim.c -- scenario tests of SWIM + Lifeguard on the deterministic simulator.
 *
 * Each test is a story at 100+ nodes with memberlist's LAN constants (probe
 * 1 s, timeout 500 ms, gossip 200 ms x 3, 3 indirect checks, suspicion
 * mult 4 / max mult 6, retransmit mult 4, push-pull 30 s): joins, a crash,
 * loss, a partition and its heal, pauses, leave and restart, a one-way
 * partition, and determinism. Every bound is on VIRTUAL time and is derived
 * below from the protocol constants. Every test prints its seed and every
 * failing check repeats it: replay with SHOAL_SEED=<seed> ./test_sim <name>.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim_util.h"
#include "test.h"

TEST_MAIN()

static uint64_t g_seed; /* the running test's seed, repeated by every check */

/* CHECKF with the replay hint in front of every message. */
#define SCHECK(cond, fmt, ...)                                                                     \
    CHECKF(cond, "[replay: SHOAL_SEED=%llu] " fmt, (unsigned long long)g_seed, ##__VA_ARGS__)

/* ---- protocol constants (memberlist LAN profile) and derived bounds ---- */

#define PROBE_MS 1000.0
#define GOSSIP_MS 200.0
#define PUSHPULL_MS 30000.0
#define SUSP_MULT 4.0
#define SUSP_MAX_MULT 6.0
#define STRAGGLERS 3 /* (observer, member) pairs one piece of news may still miss */

/* Suspicion timeouts of Lifeguard sec. 4.2 for n live members:
 * min = mult * max(1, log10 n) * probe, max = max_mult * min. */
static double susp_min_ms(size_t n)
{
    double scale = log10((double)n);
    return SUSP_MULT * (scale > 1.0 ? scale : 1.0) * PROBE_MS;
}

static double susp_max_ms(size_t n) { return SUSP_MAX_MULT * susp_min_ms(n); }

/* Rounds for push gossip to reach n nodes: about log2 n + ln n (Pittel). */
static double gossip_spread_ms(size_t n) { return (log2((double)n) + log((double)n)) * GOSSIP_MS; }

/* One piece of news (a refutation, a leave, a restart) reaches all but a
 * few stragglers: the spread, x2 for queueing behind other updates in the
 * 200 ms rounds, x2 for the tail of the epidemic. A given node misses it
 * only if none of the ~N * lambda*ceil(log10(N+1)) copies reached it:
 * ~e^-8 = 3.4e-4 at N = 100, so 0.03 stragglers expected of 99; we allow
 * STRAGGLERS. */
static int64_t news_ms(size_t n) { return (int64_t)(4.0 * gossip_spread_ms(n)); }

/* Periodic push-pull repairs what gossip missed: each node swaps full
 * tables with a random live member once per interval, scaled as memberlist's
 * pushPullScale, 30 s * (ceil(log2(n/32)) + 1) beyond 32 nodes (90 s at
 * n = 100). The partner holds the news unless it is a straggler too, or is
 * the very member the node has wrong (a leaver it still thinks alive: 1 in
 * n-1), so allow two intervals, + the spread of what the repair triggers
 * (a refutation). */
static double pushpull_every_ms(size_t n)
{
    double mult = n > 32 ? ceil(log2((double)n) - log2(32.0)) + 1.0 : 1.0;
    return PUSHPULL_MS * mult;
}

static int64_t repair_ms(size_t n)
{
    return (int64_t)(2.0 * pushpull_every_ms(n) + gossip_spread_ms(n));
}

/* Detection slack for one crashed member, added to the suspicion timeout:
 *  - first probe: every one of the n-1 others probes it with chance about
 *    1/(n-1) per period (shuffled round robin), so none has in k periods
 *    with chance (1-1/(n-1))^((n-1)k) ~ e^-k; k = 10 leaves 5e-5;
 *  - that probe fails at the end of its period: 1 probe interval;
 *  - the suspicion and then the death spread: 2 x news.
 * Every live node starts its own timer on hearing the suspicion, so by
 * (heard + max timeout) it declares the death itself even if the gossip of
 * the death misses it. */
static double detect_slack_ms(size_t n)
{
    return 10.0 * PROBE_MS + PROBE_MS + 2.0 * (double)news_ms(n);
}

/* ---- helpers ---------------------------------------------------------- */

static struct sim *new_sim(uint64_t seed, size_t n)
{
    struct sim *s = sim_new(seed, n);
    SCHECK(s != NULL, "sim_new(%zu) failed", n);
    return s;
}

static bool pred_converged(struct sim *s, void *ud)
{
    (void)ud;
    return sim_converged(s, NULL, 0);
}

struct see_arg {
    size_t x;
    unsigned mask;
};

static bool pred_all_see(struct sim *s, void *ud)
{
    const struct see_arg *a = ud;
    return sim_all_see(s, a->x, a->mask, NULL, 0);
}

/* (observer, member) pairs, both up, where the member is not seen alive. */
static size_t not_alive_pairs(const struct sim *s, char *why, size_t len)
{
    size_t bad = 0;
    for (size_t y = 0; y < sim_size(s); y++) {
        if (sim_node_state(s, y) != SIM_UP)
            continue;
        for (size_t x = 0; x < sim_size(s); x++) {
            if (x == y || sim_node_state(s, x) != SIM_UP)
                continue;
            int st = sim_view(s, y, x, NULL);
            if (st != SHOAL_ALIVE && bad++ == 0 && why)
                snprintf(why, len, "n%zu sees n%zu %s at t=%lld ms", y, x,
                         st < 0 ? "absent" : shoal_status_name(st), (long long)sim_now(s));
        }
    }
    return bad;
}

static bool pred_few_not_alive(struct sim *s, void *ud)
{
    return not_alive_pairs(s, NULL, 0) <= *(const size_t *)ud;
}

static bool pred_left(struct sim *s, void *ud)
{
    return sim_node_state(s, *(const size_t *)ud) == SIM_LEFT;
}

static bool pred_few_wrong(struct sim *s, void *ud)
{
    const size_t *allowed = ud;
    return sim_divergence(s, NULL, 0) <= *allowed;
}

/* No codec, size, routing or scheduler failure happened in this run. */
static void check_clean(const struct sim *s, const char *label)
{
    char why[256];
    sim_print_stats(s, label);
    SCHECK(sim_clean(s, why, sizeof(why)), "%s: %s", label, why);
    /* Invariants after every scenario: one refutation per claimed
     * incarnation at most; false deaths are counted (printed), and the
     * stories without a partition or a long pause assert none. */
    SCHECK(sim_refutation_excess((struct sim *)s, why, sizeof(why)) == 0, "%s: %s", label, why);
    fprintf(stderr, "  [%s] false deaths: %zu\n", label, sim_false_deaths(s, NULL, 0));
}

/* Runs until converged or deadline; fails with the first divergence. */
static int64_t wait_converged(struct sim *s, int64_t deadline, const char *what)
{
    char why[256];
    int64_t t = sim_run_until_true(s, deadline, 100, pred_converged, NULL);
    if (t < 0) {
        size_t wrong = sim_divergence(s, why, sizeof(why));
        SCHECK(false, "%s: not converged by t=%.1f s, %zu wrong pairs, first: %s", what,
               (double)deadline / 1000.0, wrong, why);
    }
    return t;
}

static int64_t wait_all_see(struct sim *s, size_t x, unsigned mask, int64_t deadline,
                            const char *what)
{
    char why[256];
    struct see_arg a = {x, mask};
    int64_t t = sim_run_until_true(s, deadline, 100, pred_all_see, &a);
    if (t < 0) {
        sim_all_see(s, x, mask, why, sizeof(why));
        SCHECK(false, "%s: not by t=%.1f s: %s", what, (double)deadline / 1000.0, why);
    }
    return t;
}

/* News settles in two steps after t_ref: by gossip_ms at most `allowed`
 * (observer, member) pairs are still wrong, by repair_bound one view.
 * Prints both measured times; returns the time of the one view. */
static int64_t settle(struct sim *s, int64_t t_ref, int64_t gossip_ms, size_t allowed,
                      int64_t repair_bound, const char *what)
{
    char why[256];
    int64_t tg = sim_run_until_true(s, t_ref + gossip_ms, 100, pred_few_wrong, &allowed);
    if (tg < 0) {
        size_t wrong = sim_divergence(s, why, sizeof(why));
        SCHECK(false, "%s: %zu wrong pairs (allowed %zu) %.1f s after: %s", what, wrong, allowed,
               (double)gossip_ms / 1000.0, why);
    }
    size_t wrong = sim_divergence(s, NULL, 0);
    int64_t t = wait_converged(s, t_ref + repair_bound, what);
    fprintf(stderr,
            "  %s: %zu wrong pairs left after %.1f s (bound %.1f s), one view after %.1f s "
            "(bound %.1f s)\n",
            what, wrong, (double)(tg - t_ref) / 1000.0, (double)gossip_ms / 1000.0,
            (double)(t - t_ref) / 1000.0, (double)repair_bound / 1000.0);
    return t;
}

static size_t count(const struct sim *s, int observer, int subject, int type, int status,
                    int64_t since)
{
    struct sim_filter f = {observer, subject, type, status, since, 0};
    return sim_count_events(s, &f);
}

static size_t deaths_of(const struct sim *s, int subject, int64_t since)
{
    return count(s, -1, subject, SHOAL_EV_MEMBER_STATUS, SHOAL_DEAD, since);
}

/* Join bounds, after the last start.
 * (1) Gossip. A joiner's push-pull with n0 hands it n0's table at once (one
 * round trip); its alive update then spreads in about log2 N + ln N rounds.
 * During a join wave N updates are queued together; each is sent
 * lambda*ceil(log10(N+1)) times (4*2 = 8 below 99 members, 4*3 = 12 up to
 * 998), ~15 fit a 1228-byte payload by the core's cost model, and a node
 * sends fanout 3 messages per 200 ms round, so draining a wave of N takes
 * about N*12/(15*3*5) s. Bound: 2 x (spread + drain), by when only the pairs
 * that missed every copy (~e^-8 each: ~3 of 9900 at N = 100) are wrong; we
 * allow N*N/1000.
 * (2) Push-pull. Each node's first periodic push-pull comes one unscaled
 * interval (30 s) after its start, so one view by max(30 s, bound 1) +
 * spread after the last start. */
static int64_t join_gossip_ms(size_t n)
{
    double drain = (double)n * 12.0 / (15.0 * 3.0 * 5.0) * 1000.0;
    return (int64_t)(2.0 * (gossip_spread_ms(n) + drain));
}

static int64_t join_repair_ms(size_t n)
{
    int64_t g = join_gossip_ms(n);
    return (g > (int64_t)PUSHPULL_MS ? g : (int64_t)PUSHPULL_MS) + (int64_t)gossip_spread_ms(n);
}

/* Starts n0 alone, then node i at i * stagger_ms joining through n0, and
 * waits for one view. Returns its time. */
static int64_t join_all(struct sim *s, size_t n, int64_t stagger_ms, const char *what)
{
    SCHECK(sim_start(s, 0, -1) == 0, "start n0");
    for (size_t i = 1; i < n; i++)
        SCHECK(sim_start_at(s, i, (int64_t)i * stagger_ms, 0) == 0, "schedule n%zu", i);
    int64_t last = (int64_t)(n - 1) * stagger_ms;
    sim_run_until(s, last); /* nodes not started yet count as (rightly) absent */
    return settle(s, last, join_gossip_ms(n), n * n / 1000, join_repair_ms(n), what);
}

/* ---- 1. join ---------------------------------------------------------- */

TEST_T(join_100, "100 nodes joining through n0 converge to one view", 300)
{
    TEST_SEED(g_seed, 1001);
    struct sim *s = new_sim(g_seed, 100);
    join_all(s, 100, 50, "join 100");
    /* The view holds, nobody suspected, through two scaled push-pull rounds. */
    int64_t t0 = sim_now(s);
    sim_run_for(s, 2 * (int64_t)pushpull_every_ms(100));
    char why[256];
    SCHECK(sim_converged(s, why, sizeof(why)), "view did not hold: %s", why);
    SCHECK(count(s, -1, -1, SHOAL_EV_MEMBER_STATUS, -1, t0) == 0,
           "%zu status changes in a quiet cluster",
           count(s, -1, -1, SHOAL_EV_MEMBER_STATUS, -1, t0));
    SCHECK(count(s, -1, -1, SHOAL_EV_JOINED, -1, 0) == 99, "%zu JOINED events, want 99",
           count(s, -1, -1, SHOAL_EV_JOINED, -1, 0));
    check_clean(s, "join 100");
    sim_free(s);
}

/* ---- 2. larger join --------------------------------------------------- */

TEST_T(join_300, "300 nodes joining through n0 converge to one view", 300)
{
    TEST_SEED(g_seed, 2002);
    struct sim *s = new_sim(g_seed, 300);
    join_all(s, 300, 20, "join 300");
    sim_run_for(s, 10000);
    char why[256];
    SCHECK(sim_converged(s, why, sizeof(why)), "view did not hold: %s", why);
    SCHECK(deaths_of(s, -1, 0) == 0, "%zu deaths while joining", deaths_of(s, -1, 0));
    check_clean(s, "join 300");
    sim_free(s);
}

/* ---- 3. crash --------------------------------------------------------- */

TEST_T(crash_detected, "a crashed node is declared dead by all, and nobody else", 300)
{
    TEST_SEED(g_seed, 3003);
    const size_t n = 100, victim = 42;
    struct sim *s = new_sim(g_seed, n);
    join_all(s, n, 50, "crash: join");
    sim_run_for(s, 5000);

    int64_t t0 = sim_now(s);
    SCHECK(sim_crash(s, victim) == 0, "crash");
    /* 99 live members: max timeout 6*4*log10(99)*1 s = 47.9 s, + slack. */
    double bound = susp_max_ms(n - 1) + detect_slack_ms(n - 1);
    int64_t t = wait_all_see(s, victim, SIM_MASK(SHOAL_DEAD), t0 + (int64_t)bound,
                             "crashed node declared dead by all");
    size_t suspects = count(s, -1, (int)victim, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0);
    int64_t first = -1;
    size_t nev;
    const struct sim_event_rec *ev = sim_events(s, &nev);
    for (size_t i = 0; i < nev && first < 0; i++)
        if (ev[i].at_ms >= t0 && ev[i].subject == (int)victim && ev[i].status == SHOAL_DEAD)
            first = ev[i].at_ms;
    fprintf(stderr,
            "  crash: first death %.1f s, all %.1f s after the crash (bound %.1f s), "
            "%zu suspect events\n",
            (double)(first - t0) / 1000.0, (double)(t - t0) / 1000.0, bound / 1000.0, suspects);
    SCHECK(suspects > 0, "the death came without a suspicion");

    /* Nobody else is ever declared dead, now or later. */
    sim_run_for(s, 30000);
    char why[256];
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    SCHECK(deaths_of(s, -1, 0) == deaths_of(s, (int)victim, 0), "%zu deaths of others",
           deaths_of(s, -1, 0) - deaths_of(s, (int)victim, 0));
    SCHECK(sim_converged(s, why, sizeof(why)), "%s", why);
    check_clean(s, "crash");
    sim_free(s);
}

/* ---- 4. packet loss --------------------------------------------------- */

TEST_T(loss_no_false_death, "10% loss for 120 s: suspicions are refuted, nobody dies", 300)
{
    TEST_SEED(g_seed, 4004);
    const size_t n = 100;
    struct sim *s = new_sim(g_seed, n);
    join_all(s, n, 50, "loss: join");

    int64_t t0 = sim_now(s);
    sim_set_loss(s, 0.10); /* every message, so each direction of a round trip */
    sim_run_for(s, 120000);
    sim_set_loss(s, 0.0);
    size_t suspects = count(s, -1, -1, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0);
    size_t refuted = count(s, -1, -1, SHOAL_EV_MEMBER_STATUS, SHOAL_ALIVE, t0);
    char why[256];
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    SCHECK(deaths_of(s, -1, t0) == 0, "%zu deaths under loss", deaths_of(s, -1, t0));
    SCHECK(sim_net_stats(s)->lost > 0, "no message was lost");

    /* Once the loss stops, a suspicion raised just before is carried to its
     * subject and refuted (news), and the refutation spreads (news): by 2 x
     * news every pair but a few stragglers that missed the refutation sees
     * alive. A straggler, or a node that missed someone's newest alive(inc)
     * and still holds an older alive, is repaired by push-pull; no timer of
     * a straggler may expire into a death meanwhile. */
    int64_t t1 = sim_now(s);
    size_t allowed = STRAGGLERS;
    int64_t ta = sim_run_until_true(s, t1 + 2 * news_ms(n), 100, pred_few_not_alive, &allowed);
    if (ta < 0) {
        size_t bad = not_alive_pairs(s, why, sizeof(why));
        SCHECK(false, "loss: %zu pairs not alive %.1f s after the loss: %s", bad,
               (double)(2 * news_ms(n)) / 1000.0, why);
    }
    int64_t t = wait_converged(s, t1 + repair_ms(n), "loss: one view after the loss");
    fprintf(stderr,
            "  loss: %zu suspect events, %zu back to alive, 0 deaths in 120 s; all alive "
            "%.1f s (bound %.1f s), one view %.1f s (bound %.1f s) after the loss\n",
            suspects, refuted, (double)(ta - t1) / 1000.0, (double)(2 * news_ms(n)) / 1000.0,
            (double)(t - t1) / 1000.0, (double)repair_ms(n) / 1000.0);
    sim_run_until(s, t1 + repair_ms(n) + (int64_t)susp_max_ms(n));
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "after the loss: %s", why);
    SCHECK(deaths_of(s, -1, t0) == 0, "%zu deaths", deaths_of(s, -1, t0));
    check_clean(s, "loss");
    sim_free(s);
}

/* ---- 5. partition and heal -------------------------------------------- */

#define HALVES_N 100

/* Every running node sees its own half alive and the other half dead. */
static bool split_view(const struct sim *s, const int *group, char *why, size_t len)
{
    for (size_t y = 0; y < HALVES_N; y++) {
        for (size_t x = 0; x < HALVES_N; x++) {
            if (x == y)
                continue;
            int want = group[x] == group[y] ? SHOAL_ALIVE : SHOAL_DEAD;
            int st = sim_view(s, y, x, NULL);
            if (st != want) {
                if (why)
                    snprintf(why, len, "n%zu sees n%zu %s, want %s", y, x,
                             st < 0 ? "absent" : shoal_status_name(st), shoal_status_name(want));
                return false;
            }
        }
    }
    return true;
}

static bool pred_split(struct sim *s, void *ud) { return split_view(s, ud, NULL, 0); }

/* Deaths declared by a node about a member of its own half since t. */
static size_t deaths_within_halves(const struct sim *s, const int *group, int64_t since, char *why,
                                   size_t len)
{
    size_t nev, n = 0;
    const struct sim_event_rec *ev = sim_events(s, &nev);
    for (size_t i = 0; i < nev; i++) {
        if (ev[i].at_ms < since || ev[i].type != SHOAL_EV_MEMBER_STATUS ||
            ev[i].status != SHOAL_DEAD || ev[i].subject < 0 ||
            group[ev[i].subject] != group[ev[i].observer])
            continue;
        if (n++ == 0)
            snprintf(why, len, "n%d declared n%d of its own half dead at t=%lld ms", ev[i].observer,
                     ev[i].subject, (long long)ev[i].at_ms);
    }
    return n;
}

TEST_T(partition_heal, "two halves split for 90 s declare each other dead, then heal", 300)
{
    TEST_SEED(g_seed, 5005);
    int group[HALVES_N];
    struct sim *s = new_sim(g_seed, HALVES_N);
    join_all(s, HALVES_N, 50, "partition: join");
    for (size_t i = 0; i < HALVES_N; i++)
        group[i] = i % 2; /* interleaved, so both halves hold old and new nodes */

    int64_t t0 = sim_now(s);
    sim_partition(s, group);
    /* Each side sees 50 members fail at once. Bound: max timeout at N=100
     * (48 s, the live count shrinks only as deaths land) + slack; 90 s of
     * partition leaves room for it. */
    double split_bound = susp_max_ms(HALVES_N) + detect_slack_ms(HALVES_N);
    int64_t t_split = sim_run_until_true(s, t0 + (int64_t)split_bound, 500, pred_split, group);
    char why[256];
    if (t_split < 0) {
        split_view(s, group, why, sizeof(why));
        SCHECK(false, "halves did not declare each other dead in %.1f s: %s", split_bound / 1000.0,
               why);
    }
    SCHECK(deaths_within_halves(s, group, t0, why, sizeof(why)) == 0, "split: %s", why);
    sim_run_until(s, t0 + 90000);

    /* Heal. Each node reconnects (push-pull to a random dead member) once
     * per push-pull interval, so with 100 nodes the first exchange across
     * comes within a second or two; its full tables carry the dead claims,
     * their subjects refute (alive at inc + 1 beats dead at inc) and gossip
     * spreads the refutations. Bound: one scaled push-pull interval at
     * N = 100, so that every node has exchanged tables at least once, + the
     * max suspicion timeout for claims made while merging, + news. */
    int64_t t1 = sim_now(s);
    sim_heal(s);
    int64_t bound =
        (int64_t)(pushpull_every_ms(HALVES_N) + susp_max_ms(HALVES_N)) + news_ms(HALVES_N);
    int64_t t = wait_converged(s, t1 + bound, "partition: one view after the heal");
    sim_run_for(s, 30000);
    SCHECK(sim_converged(s, why, sizeof(why)), "view did not hold after the heal: %s", why);
    size_t merge_suspects = count(s, -1, -1, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t1);
    size_t merge_deaths = deaths_within_halves(s, group, t1, why, sizeof(why));
    fprintf(stderr,
            "  partition: halves split %.1f s after the cut (bound %.1f s); one view %.1f s "
            "after the heal (bound %.1f s); after the heal %zu suspicions, %zu deaths "
            "within a half\n",
            (double)(t_split - t0) / 1000.0, split_bound / 1000.0, (double)(t - t1) / 1000.0,
            (double)bound / 1000.0, merge_suspects, merge_deaths);
    /* Merging the tables must not make a node's own half, which it reaches
     * directly all along, declare it dead: a claim from across a healed
     * partition is at most a suspicion (memberlist's mergeState). */
    SCHECK(merge_deaths == 0, "heal: %zu deaths within a half, first: %s", merge_deaths, why);
    check_clean(s, "partition");
    sim_free(s);
}

/* ---- 6. paused nodes -------------------------------------------------- */

TEST_T(pause_refute, "a paused node refutes its suspicion; a long-paused one comes back", 300)
{
    TEST_SEED(g_seed, 6006);
    const size_t n = 100;
    struct sim *s = new_sim(g_seed, n);
    join_all(s, n, 50, "pause: join");
    char why[256];

    /* Short pause: 3 s is enough to fail a probe (suspect at the end of the
     * prober's period) and far below the 8 s minimum suspicion timeout. A
     * given 3 s window sees a probe of the node with chance ~1 - e^-2
     * (probes starting in its first 2 s), so try nodes until one was
     * suspected; five misses in a row have chance ~e^-10. */
    size_t x = 0;
    int64_t t0 = 0;
    struct shoal_member_info before = {0};
    bool suspected = false;
    for (int attempt = 0; attempt < 5 && !suspected; attempt++) {
        x = 10 + (size_t)attempt * 7;
        SCHECK(sim_view(s, x, x, &before) == SHOAL_ALIVE, "n%zu does not see itself alive", x);
        t0 = sim_now(s);
        SCHECK(sim_pause(s, x) == 0, "pause");
        sim_run_for(s, 3000);
        SCHECK(sim_resume(s, x) == 0, "resume");
        suspected = count(s, -1, (int)x, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0) > 0;
        if (!suspected)
            sim_run_for(s, 2000);
    }
    SCHECK(suspected, "no paused node was suspected in 5 attempts");
    int64_t t_resume = sim_now(s);
    /* Pings to a suspect carry the suspicion (Lifeguard), so it refutes at
     * once; alive(inc+1) is news. */
    struct see_arg alive = {x, SIM_MASK(SHOAL_ALIVE)};
    int64_t ta = sim_run_until_true(s, t_resume + news_ms(n), 100, pred_all_see, &alive);
    if (ta < 0) {
        sim_all_see(s, x, SIM_MASK(SHOAL_ALIVE), why, sizeof(why));
        SCHECK(false, "n%zu not seen alive again after resuming: %s", x, why);
    }
    int64_t tv = settle(s, t_resume, news_ms(n), STRAGGLERS, repair_ms(n), "pause: refutation");
    struct shoal_member_info after;
    sim_view(s, x, x, &after);
    SCHECK(after.incarnation > before.incarnation, "n%zu did not refute (inc %u -> %u)", x,
           before.incarnation, after.incarnation);
    /* No suspicion timer started before the refutation fires later: run
     * past the max suspicion timeout. */
    sim_run_until(s, t0 + (int64_t)susp_max_ms(n) + 5000);
    SCHECK(deaths_of(s, (int)x, t0) == 0, "paused n%zu was declared dead", x);
    SCHECK(sim_converged(s, why, sizeof(why)), "%s", why);
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    fprintf(stderr,
            "  pause 3 s: n%zu suspected by %zu, alive for all %.1f s and inc %u for all "
            "%.1f s after resuming\n",
            x, count(s, -1, (int)x, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0),
            (double)(ta - t_resume) / 1000.0, after.incarnation, (double)(tv - t_resume) / 1000.0);

    /* Long pauses: past max timeout + slack, everyone declares it dead.
     * One resumes 5 s after that, while the others still gossip to the
     * dead (gossip_to_dead 30 s). The other resumes 40 s after, when only
     * what it sends can bring news back: acks to its probes carry the claim
     * about it (Lifeguard), else push-pull, its own or anyone's reconnect to
     * a random dead member. Bound: repair. */
    const size_t longs[2] = {77, 55};
    const int64_t extra[2] = {5000, 40000};
    for (int k = 0; k < 2; k++) {
        size_t y = longs[k];
        int64_t t2 = sim_now(s);
        SCHECK(sim_pause(s, y) == 0, "pause");
        double dead_bound = susp_max_ms(n - 1) + detect_slack_ms(n - 1);
        int64_t td = wait_all_see(s, y, SIM_MASK(SHOAL_DEAD), t2 + (int64_t)dead_bound,
                                  "long-paused node declared dead by all");
        sim_run_for(s, extra[k]);
        SCHECK(sim_resume(s, y) == 0, "resume");
        int64_t t3 = sim_now(s);
        int64_t tb = wait_converged(s, t3 + repair_ms(n), "long-paused node back alive");
        struct shoal_member_info yi;
        sim_view(s, 0, y, &yi);
        fprintf(stderr,
                "  pause %.1f s: n%zu dead for all %.1f s after pausing; back alive (inc %u) "
                "for all %.1f s after resuming (bound %.1f s)\n",
                (double)(t3 - t2) / 1000.0, y, (double)(td - t2) / 1000.0, yi.incarnation,
                (double)(tb - t3) / 1000.0, (double)repair_ms(n) / 1000.0);
    }
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    check_clean(s, "pause");
    sim_free(s);
}

/* ---- 7. leave and restart --------------------------------------------- */

TEST_T(leave_and_restart, "a leaver is seen left, a restarted node alive in its new generation",
       300)
{
    TEST_SEED(g_seed, 7007);
    const size_t n = 100;
    struct sim *s = new_sim(g_seed, n);
    join_all(s, n, 50, "leave: join");
    char why[256];

    /* Graceful leave: the left update is pushed at once and gossiped; it is
     * news. A straggler learns it by push-pull. */
    const size_t leaver = 5;
    int64_t t0 = sim_now(s);
    SCHECK(sim_leave(s, leaver) == 0, "leave");
    /* It stops once its left update went out lambda*log times, or at the
     * agent's 3 s leave timeout; until then the view does not judge it. */
    size_t who = leaver;
    int64_t ts = sim_run_until_true(s, t0 + 3000, 10, pred_left, &who);
    SCHECK(ts >= 0, "leaver still running after 3 s");
    settle(s, t0, news_ms(n), STRAGGLERS, repair_ms(n), "leave: n5 left");
    fprintf(stderr, "  leave: n5 stopped %.2f s after leaving\n", (double)(ts - t0) / 1000.0);
    /* ... and stays left, never dead, past any suspicion a straggler may
     * have raised before it learnt of the leave. */
    sim_run_until(s, t0 + repair_ms(n) + (int64_t)susp_max_ms(n));
    SCHECK(sim_all_see(s, leaver, SIM_MASK(SHOAL_LEFT), why, sizeof(why)), "%s", why);
    SCHECK(deaths_of(s, (int)leaver, t0) == 0, "leaver declared dead %zu times",
           deaths_of(s, (int)leaver, t0));

    /* Crash, declared dead everywhere, then restart under the same name: its
     * join push-pull makes n0 take generation 2, and that is news. */
    const size_t phoenix = 9;
    int64_t t1 = sim_now(s);
    SCHECK(sim_crash(s, phoenix) == 0, "crash");
    wait_all_see(s, phoenix, SIM_MASK(SHOAL_DEAD),
                 t1 + (int64_t)(susp_max_ms(n - 2) + detect_slack_ms(n - 2)),
                 "crashed node declared dead");
    int64_t t2 = sim_now(s);
    SCHECK(sim_restart(s, phoenix, 0) == 0, "restart");
    SCHECK(sim_generation(s, phoenix) == 2, "generation not raised");
    settle(s, t2, news_ms(n), STRAGGLERS, repair_ms(n), "restart: n9 generation 2");

    /* A quick restart: back 4 s after the crash, before anyone could declare
     * it dead. Suspicions and deaths of generation 1 still in flight must not
     * shadow generation 2. */
    const size_t quick = 31;
    int64_t t3 = sim_now(s);
    SCHECK(sim_crash(s, quick) == 0, "crash");
    sim_run_for(s, 4000);
    SCHECK(sim_restart(s, quick, 0) == 0, "restart");
    settle(s, t3 + 4000, news_ms(n), STRAGGLERS, repair_ms(n),
           "restart: n31 generation 2 after 4 s");
    sim_run_until(s, t3 + repair_ms(n) + (int64_t)susp_max_ms(n));
    SCHECK(sim_converged(s, why, sizeof(why)), "generation 2 shadowed: %s", why);
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    SCHECK(count(s, -1, -1, SHOAL_EV_CONFLICT, -1, 0) == 0, "%zu name conflicts",
           count(s, -1, -1, SHOAL_EV_CONFLICT, -1, 0));
    check_clean(s, "leave/restart");
    sim_free(s);
}

/* ---- 8. one-way partition --------------------------------------------- */

TEST_T(one_way_partition, "A cannot reach B but B reaches A: ping-req keeps B alive", 300)
{
    TEST_SEED(g_seed, 8008);
    const size_t n = 100;
    struct sim *s = new_sim(g_seed, n);
    join_all(s, n, 50, "one-way: join");

    /* Ten A nodes (n10..n19) cannot reach ten B nodes (n60..n69); every B
     * reaches every A. A node probes a given member once per ~N periods, so
     * one pair would be tried about once in 120 s: 100 blocked pairs give
     * ~120 probes A->B (direct ping lost, relays reach B) and ~120 B->A
     * (ping arrives, the ack is lost, relays carry it). */
    int64_t t0 = sim_now(s);
    for (size_t a = 10; a < 20; a++)
        for (size_t b = 60; b < 70; b++)
            sim_block(s, a, b, true);
    struct shoal_swim_stats before, after;
    sim_core_stats(s, &before);
    sim_run_for(s, 120000); /* more than two max suspicion timeouts */
    sim_core_stats(s, &after);
    char why[256];
    SCHECK(sim_false_deaths(s, why, sizeof(why)) == 0, "%s", why);
    SCHECK(deaths_of(s, -1, t0) == 0, "%zu deaths", deaths_of(s, -1, t0));
    size_t ab = 0;
    for (int a = 10; a < 20; a++)
        for (int b = 60; b < 70; b++)
            ab += count(s, a, b, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0) +
                  count(s, b, a, SHOAL_EV_MEMBER_STATUS, SHOAL_SUSPECT, t0);
    uint64_t relayed = after.acks_relayed - before.acks_relayed;
    SCHECK(sim_net_stats(s)->blocked > 50, "only %llu messages blocked",
           (unsigned long long)sim_net_stats(s)->blocked);
    SCHECK(relayed > 50, "only %llu acks relayed: the indirect path was not exercised",
           (unsigned long long)relayed);
    /* Suspicions raised meanwhile are refuted: all alive now, one view after
     * the refutations settle. */
    int64_t t1 = sim_now(s);
    int64_t t = wait_converged(s, t1 + repair_ms(n), "one-way: one view");
    fprintf(stderr,
            "  one-way: 120 s, %llu blocked, %llu ping-reqs, %llu acks relayed, %zu suspicions "
            "between A and B, no deaths, one view %.1f s later\n",
            (unsigned long long)sim_net_stats(s)->blocked,
            (unsigned long long)(after.ping_reqs_sent - before.ping_reqs_sent),
            (unsigned long long)relayed, ab, (double)(t - t1) / 1000.0);
    check_clean(s, "one-way");
    sim_free(s);
}

/* ---- 9. determinism --------------------------------------------------- */

/* A busy 100-node run: staggered joins, 5% loss, a crash, a pause. */
static uint64_t busy_run(uint64_t seed, size_t *events)
{
    struct sim *s = new_sim(seed, 100);
    SCHECK(sim_start(s, 0, -1) == 0, "start n0");
    for (size_t i = 1; i < 100; i++)
        SCHECK(sim_start_at(s, i, (int64_t)i * 30, 0) == 0, "schedule n%zu", i);
    sim_run_until(s, 10000);
    sim_set_loss(s, 0.05);
    SCHECK(sim_crash(s, 17) == 0, "crash");
    SCHECK(sim_pause(s, 33) == 0, "pause");
    sim_run_until(s, 14000);
    SCHECK(sim_resume(s, 33) == 0, "resume");
    sim_run_until(s, 40000);
    uint64_t h = sim_trace_hash(s);
    sim_events(s, events);
    char why[256];
    SCHECK(sim_clean(s, why, sizeof(why)), "%s", why);
    sim_free(s);
    return h;
}

TEST_T(determinism, "the same seed gives the same trace, another seed another", 300)
{
    TEST_SEED(g_seed, 9009);
    size_t e1, e2, e3;
    uint64_t h1 = busy_run(g_seed, &e1);
    uint64_t h2 = busy_run(g_seed, &e2);
    uint64_t h3 = busy_run(g_seed + 1, &e3);
    fprintf(stderr, "  determinism: %016llx %016llx (seed+1: %016llx), %zu events\n",
            (unsigned long long)h1, (unsigned long long)h2, (unsigned long long)h3, e1);
    SCHECK(e1 > 100 * 99, "only %zu events recorded", e1);
    SCHECK(h1 == h2 && e1 == e2, "same seed, different traces");
    SCHECK(h1 != h3, "different seeds, same trace");
}

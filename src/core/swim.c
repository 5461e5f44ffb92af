/* swim.c -- SWIM membership with Lifeguard, as a sans-IO state machine.
 *
 * Concepts: the member table (members.c) holds every known member with its
 * (generation, incarnation, status); the dissemination queue (dissem.c)
 * holds updates waiting to ride on outgoing messages; this file runs the
 * failure detector (probe, ping-req, suspicion), applies updates by the
 * precedence rules, and does push-pull anti-entropy and join/leave.
 * Time is whatever the caller passes (ms); randomness is the seeded rng.
 */
#include "core/swim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dissem.h"
#include "core/members.h"
#include "core/rng.h"
#include "shoal/error.h"

#define NEVER INT64_MAX
#define MAX_RELAYS 64
#define MAX_SEEDS 16

/* A ping we send on behalf of another node's ping-req. */
struct relay {
    bool active;
    uint32_t seq;        /* of our ping to the target */
    uint32_t origin_seq; /* the requester's seq, echoed in ack/nack */
    struct shoal_addr origin;
    int64_t deadline; /* no ack by then: nack the requester */
};

/* The probe of the current protocol period. */
struct probe {
    bool active, acked, indirect_sent, fallback_acked;
    uint32_t seq;
    char target[SHOAL_NAME_MAX];
    int64_t direct_deadline; /* probe timeout: then ping-req */
    int64_t end;             /* end of the period: then judge */
    uint32_t expected_nacks, nacks;
};

struct shoal_swim {
    struct shoal_swim_config cfg;
    struct shoal_rng rng;
    struct shoal_members members;
    struct shoal_dissem dq;
    struct shoal_swim_stats stats;
    char self[SHOAL_NAME_MAX];

    uint32_t awareness; /* Lifeguard local health: 0 healthy .. max-1 */
    uint32_t next_seq;

    /* Randomized round-robin probe order (SWIM sec. 4.3). */
    char (*order)[SHOAL_NAME_MAX];
    size_t order_len, order_pos, order_cap;

    struct probe probe;
    int64_t next_probe;
    int64_t next_gossip;
    int64_t next_pushpull;
    int64_t next_suspicion; /* earliest suspicion deadline (cache) */
    struct relay relays[MAX_RELAYS];

    bool joining;
    struct shoal_addr seeds[MAX_SEEDS];
    size_t n_seeds;
    int64_t next_join;
    uint32_t join_backoff;

    bool leaving;

    struct shoal_msg out; /* scratch for building messages */
};

/* ---------------------------------------------------------------- config */

void shoal_swim_config_defaults(struct shoal_swim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->probe_interval_ms = 1000;
    c->probe_timeout_ms = 500;
    c->gossip_interval_ms = 200;
    c->gossip_fanout = 3;
    c->indirect_checks = 3;
    c->suspicion_mult = 4;
    c->suspicion_max_mult = 6;
    c->retransmit_mult = 4;
    c->pushpull_interval_ms = 30000;
    c->awareness_max = 8;
    c->gossip_to_dead_ms = 30000;
    c->reap_ms = 86400000;
    c->join_retry_min_ms = 1000;
    c->join_retry_max_ms = 30000;
    c->max_datagram = 1400;
}

static bool config_valid(const struct shoal_swim_config *c)
{
    return shoal_name_valid(c->name) && c->addr.family != 0 && c->send &&
           c->probe_interval_ms > 0 && c->probe_timeout_ms > 0 &&
           c->probe_timeout_ms < c->probe_interval_ms && c->gossip_interval_ms > 0 &&
           c->suspicion_mult >= 1 && c->suspicion_max_mult >= 1 && c->retransmit_mult >= 1 &&
           c->awareness_max >= 1 && c->join_retry_min_ms > 0 &&
           c->join_retry_max_ms >= c->join_retry_min_ms &&
           c->max_datagram >= SHOAL_ENVELOPE_BYTES + SHOAL_MSG_BASE_BYTES + 4 * SHOAL_NAME_MAX +
                                  2 * SHOAL_UPDATE_BASE_BYTES;
}

/* --------------------------------------------------------------- helpers */

static struct shoal_member *self_member(const struct shoal_swim *s)
{
    return shoal_members_find(&s->members, s->self);
}

/* Copies a name (or "") into a SHOAL_NAME_MAX buffer, always terminated. */
static void name_copy(char *dst, const char *src)
{
    size_t n = src ? strnlen(src, SHOAL_NAME_MAX - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = 0;
}

static bool is_live(uint8_t st)
{
    return st == SHOAL_ALIVE || st == SHOAL_SUSPECT;
}

/* Members that are not dead or left, self included (memberlist's estimate). */
static size_t live_count(const struct shoal_swim *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->members.n; i++)
        n += is_live(s->members.v[i].info.status);
    return n;
}

/* lambda * ceil(log10(N+1)): sends per update (SWIM sec. 4.4). */
static uint32_t retransmit_limit(const struct shoal_swim *s)
{
    double n = (double)live_count(s);
    uint32_t l = s->cfg.retransmit_mult * (uint32_t)ceil(log10(n + 1.0));
    return l ? l : 1;
}

static void emit(struct shoal_swim *s, enum shoal_event_type type, const struct shoal_member *m,
                 uint8_t old_status, const struct shoal_addr *other)
{
    if (!s->cfg.event)
        return;
    struct shoal_event ev = {.type = type, .member = m ? &m->info : NULL,
                             .old_status = old_status};
    if (other)
        ev.other_addr = *other;
    s->cfg.event(s->cfg.ud, &ev);
}

static void update_of(const struct shoal_member *m, const char *from, struct shoal_update *u)
{
    memset(u, 0, sizeof(*u));
    memcpy(u->name, m->info.name, SHOAL_NAME_MAX);
    u->addr = m->info.addr;
    u->generation = m->info.generation;
    u->incarnation = m->info.incarnation;
    u->status = m->info.status;
    name_copy(u->from, from);
}

static void enqueue(struct shoal_swim *s, const struct shoal_member *m, const char *from)
{
    struct shoal_update u;
    update_of(m, from, &u);
    (void)shoal_dissem_push(&s->dq, &u); /* on ENOMEM push-pull repairs */
}

/* Bytes left for updates in a message whose fixed fields are set. */
static uint32_t update_budget(const struct shoal_swim *s, const struct shoal_msg *m)
{
    uint32_t fixed = SHOAL_ENVELOPE_BYTES + SHOAL_MSG_BASE_BYTES + (uint32_t)strlen(m->from) +
                     (uint32_t)strlen(m->target);
    return s->cfg.max_datagram > fixed ? s->cfg.max_datagram - fixed : 0;
}

static struct shoal_msg *msg_begin(struct shoal_swim *s, uint8_t type, uint32_t seq)
{
    struct shoal_msg *m = &s->out;
    m->type = type;
    m->seq = seq;
    m->part = 0;
    memcpy(m->from, s->self, SHOAL_NAME_MAX);
    m->target[0] = 0;
    memset(&m->target_addr, 0, sizeof(m->target_addr));
    m->n_updates = 0;
    return m;
}

static void msg_send(struct shoal_swim *s, const struct shoal_addr *to, struct shoal_msg *m)
{
    s->stats.msgs_out++;
    s->cfg.send(s->cfg.ud, to, m);
}

/* Piggybacks queued updates, first_about's current state leading. Lifeguard
 * sec. 4.3 ("buddy system"): a message to a member we think suspect or dead
 * carries that news, so it can refute at once. */
static void piggyback(struct shoal_swim *s, struct shoal_msg *m, const char *about)
{
    uint32_t budget = update_budget(s, m);
    const char *skip = NULL;
    if (about) {
        struct shoal_member *t = shoal_members_find(&s->members, about);
        if (t && (t->info.status == SHOAL_SUSPECT || t->info.status == SHOAL_DEAD)) {
            struct shoal_update *u = &m->updates[m->n_updates];
            update_of(t, t->info.status == SHOAL_SUSPECT ? t->suspect_from : s->self, u);
            uint32_t cost = shoal_update_cost(u);
            if (cost <= budget) {
                budget -= cost;
                m->n_updates++;
                skip = about;
            }
        }
    }
    shoal_dissem_fill(&s->dq, m, &budget, retransmit_limit(s), skip);
}

/* Picks up to k distinct members matching pred (self never), uniformly, by
 * reservoir sampling. Returns how many went into out. */
typedef bool (*member_pred)(const struct shoal_swim *s, const struct shoal_member *m,
                            int64_t now, const char *exclude);

static size_t pick_members(struct shoal_swim *s, size_t k, member_pred pred, int64_t now,
                           const char *exclude, size_t *out)
{
    size_t seen = 0, got = 0;
    for (size_t i = 0; i < s->members.n; i++) {
        const struct shoal_member *m = &s->members.v[i];
        if (strcmp(m->info.name, s->self) == 0 || !pred(s, m, now, exclude))
            continue;
        seen++;
        if (got < k) {
            out[got++] = i;
        } else {
            uint32_t j = shoal_rng_below(&s->rng, (uint32_t)seen);
            if (j < k)
                out[j] = i;
        }
    }
    return got;
}

static bool pred_alive(const struct shoal_swim *s, const struct shoal_member *m, int64_t now,
                       const char *exclude)
{
    (void)s;
    (void)now;
    return m->info.status == SHOAL_ALIVE && !(exclude && strcmp(m->info.name, exclude) == 0);
}

/* Gossip targets: live members, and the recently dead so that a member
 * wrongly declared dead hears it and refutes (memberlist GossipToTheDead). */
static bool pred_gossip(const struct shoal_swim *s, const struct shoal_member *m, int64_t now,
                        const char *exclude)
{
    if (is_live(m->info.status))
        return true;
    return m->info.status == SHOAL_DEAD && now - m->info.since_ms < s->cfg.gossip_to_dead_ms &&
           !exclude;
}

static bool pred_dead(const struct shoal_swim *s, const struct shoal_member *m, int64_t now,
                      const char *exclude)
{
    (void)s;
    (void)now;
    (void)exclude;
    return m->info.status == SHOAL_DEAD;
}

/* ------------------------------------------------------------ suspicion */

/* Lifeguard sec. 4.2: the timeout starts at max and falls towards min as
 * independent confirmations arrive, as log(c+1)/log(k+1);
 * min = mult * max(1, log10 N) * probe interval, max = max_mult * min,
 * k = mult - 2 expected confirmations (0 when the cluster is too small). */
static int64_t suspicion_timeout(const struct shoal_swim *s, uint32_t confirmations)
{
    double n = (double)live_count(s);
    double scale = n > 10.0 ? log10(n) : 1.0;
    double min = s->cfg.suspicion_mult * scale * s->cfg.probe_interval_ms;
    double max = s->cfg.suspicion_max_mult * min;
    double k = (double)s->cfg.suspicion_mult - 2.0;
    if (n - 2.0 < k)
        k = 0;
    if (k < 1.0)
        return (int64_t)min;
    double frac = log((double)confirmations + 1.0) / log(k + 1.0);
    double t = max - (max - min) * frac;
    return (int64_t)(t < min ? min : t);
}

static void recompute_next_suspicion(struct shoal_swim *s)
{
    s->next_suspicion = NEVER;
    for (size_t i = 0; i < s->members.n; i++) {
        const struct shoal_member *m = &s->members.v[i];
        if (m->info.status == SHOAL_SUSPECT && m->suspect_deadline < s->next_suspicion)
            s->next_suspicion = m->suspect_deadline;
    }
}

/* Counts `from` as a confirmation of m's suspicion. Returns true if new. */
static bool confirm_suspicion(struct shoal_swim *s, struct shoal_member *m, const char *from,
                              int64_t now)
{
    (void)now;
    if (!from[0])
        return false;
    /* n_confirmers never exceeds the array: a confirmer we cannot record
     * could not be told from a duplicate later, so it is not counted.
     * Lifeguard needs only mult - 2 confirmations (sec. 4.2), far fewer. */
    for (uint32_t i = 0; i < m->n_confirmers && i < SHOAL_MAX_CONFIRMERS; i++)
        if (strcmp(m->confirmers[i], from) == 0)
            return false;
    if (m->n_confirmers >= SHOAL_MAX_CONFIRMERS)
        return false;
    name_copy(m->confirmers[m->n_confirmers], from);
    m->n_confirmers++;
    /* The first suspecter starts the timer; others confirm it. */
    uint32_t confirmations = m->n_confirmers - 1;
    m->suspect_deadline = m->suspect_start + suspicion_timeout(s, confirmations);
    recompute_next_suspicion(s);
    return true;
}

static void start_suspicion(struct shoal_swim *s, struct shoal_member *m, const char *from,
                            int64_t now)
{
    m->suspect_start = now;
    m->n_confirmers = 0;
    name_copy(m->suspect_from, from[0] ? from : s->self);
    confirm_suspicion(s, m, m->suspect_from, now);
}

/* ------------------------------------------------------- state changes */

static void set_status(struct shoal_swim *s, struct shoal_member *m, uint8_t status,
                       int64_t now)
{
    uint8_t old = m->info.status;
    m->info.status = status;
    if (old != status)
        m->info.since_ms = now;
    if (old == SHOAL_SUSPECT && status != SHOAL_SUSPECT)
        recompute_next_suspicion(s);
    if (status == SHOAL_DEAD && old != SHOAL_DEAD)
        s->stats.deaths++;
}

/* Someone says something about us. Refute suspicion and death at our
 * generation by raising our incarnation (only we may); report another node
 * claiming our name. */
static void apply_about_self(struct shoal_swim *s, const struct shoal_update *u, int64_t now)
{
    struct shoal_member *me = self_member(s);
    if (s->leaving)
        return;
    bool other_claimant = u->generation > me->info.generation ||
                          (u->generation == me->info.generation &&
                           u->status == SHOAL_ALIVE && !shoal_addr_eq(&u->addr, &me->info.addr));
    if (other_claimant) {
        s->stats.conflicts++;
        emit(s, SHOAL_EV_CONFLICT, me, me->info.status, &u->addr);
        return;
    }
    if (u->generation < me->info.generation) {
        /* About our previous life: make sure the sender hears our new one. */
        enqueue(s, me, NULL);
        return;
    }
    if (u->status == SHOAL_ALIVE && u->incarnation <= me->info.incarnation)
        return;
    if (u->status != SHOAL_ALIVE && u->incarnation < me->info.incarnation) {
        /* A claim about an incarnation we have already outgrown (a stale
         * suspicion still in flight, or a backlog read after a pause): our
         * alive already overrides it everywhere (DESIGN.md precedence), so
         * raising again would only add refutations. Make sure the sender
         * hears our current state. */
        s->stats.stale_claims++;
        enqueue(s, me, NULL);
        return;
    }
    /* Suspect/dead/left about us at our generation, or a stale alive with an
     * incarnation we must outgrow: refute (Lifeguard: we may be the slow one). */
    me->info.incarnation = (u->incarnation > me->info.incarnation ? u->incarnation
                                                                   : me->info.incarnation) +
                           1;
    s->stats.refutes++;
    if (s->awareness + 1 < s->cfg.awareness_max)
        s->awareness++;
    enqueue(s, me, NULL);
    s->next_gossip = now; /* push the refutation at once */
}

bool shoal_update_overrides(const struct shoal_update *u, uint64_t held_gen, uint32_t held_inc,
                            uint8_t held_status)
{
    if (u->generation != held_gen)
        return u->generation > held_gen;
    uint32_t i = u->incarnation, j = held_inc;
    switch (u->status) {
    case SHOAL_ALIVE:
        return i > j;
    case SHOAL_SUSPECT:
        if (held_status == SHOAL_ALIVE)
            return i >= j;
        if (held_status == SHOAL_SUSPECT)
            return i > j;
        return false; /* dead/left yield only to a later alive */
    case SHOAL_DEAD:
        if (is_live(held_status))
            return i >= j;
        return i > j;
    case SHOAL_LEFT:
        if (held_status == SHOAL_LEFT)
            return i > j;
        return i >= j;
    default:
        return false;
    }
}

static void apply_update(struct shoal_swim *s, const struct shoal_update *u, int64_t now)
{
    if (strcmp(u->name, s->self) == 0) {
        apply_about_self(s, u, now);
        return;
    }
    struct shoal_member *m = shoal_members_find(&s->members, u->name);
    if (!m) {
        /* Learn members only from alive claims (memberlist): a suspicion or
         * death of someone we never knew tells us nothing useful. */
        if (u->status != SHOAL_ALIVE) {
            s->stats.updates_stale++;
            return;
        }
        m = shoal_members_add(&s->members, u->name);
        if (!m)
            return;
        m->info.addr = u->addr;
        m->info.generation = u->generation;
        m->info.incarnation = u->incarnation;
        m->info.status = SHOAL_ALIVE;
        m->info.since_ms = now;
        s->stats.updates_applied++;
        /* New members go to a random place in the rest of this round. */
        if (s->order_len < s->order_cap) {
            size_t span = s->order_len - s->order_pos + 1;
            size_t at = s->order_pos + shoal_rng_below(&s->rng, (uint32_t)span);
            if (at < s->order_len)
                memcpy(s->order[s->order_len], s->order[at], SHOAL_NAME_MAX);
            memcpy(s->order[at], m->info.name, SHOAL_NAME_MAX);
            s->order_len++;
        }
        emit(s, SHOAL_EV_MEMBER_JOIN, m, SHOAL_ALIVE, NULL);
        enqueue(s, m, NULL);
        return;
    }

    /* Same generation, live, but a different address: two nodes claim the
     * name. Keep the first and report it rather than flap between them. */
    if (u->status == SHOAL_ALIVE && u->generation == m->info.generation &&
        is_live(m->info.status) && !shoal_addr_eq(&u->addr, &m->info.addr)) {
        s->stats.conflicts++;
        emit(s, SHOAL_EV_CONFLICT, m, m->info.status, &u->addr);
        return;
    }

    if (!shoal_update_overrides(u, m->info.generation, m->info.incarnation, m->info.status)) {
        /* An equal suspicion from someone new is a Lifeguard confirmation. */
        if (u->status == SHOAL_SUSPECT && m->info.status == SHOAL_SUSPECT &&
            u->generation == m->info.generation && u->incarnation == m->info.incarnation &&
            confirm_suspicion(s, m, u->from, now)) {
            enqueue(s, m, u->from);
            return;
        }
        s->stats.updates_stale++;
        /* The sender is behind us about m: it missed a leave, a refutation
         * or a restart. Re-queue what we hold so it learns within a gossip
         * round instead of at the next push-pull. Only alive and left are
         * re-spread: a stale death re-gossiped after a healed partition
         * would kill members in their own half (deaths from full states
         * are merged as suspicions for the same reason). */
        struct shoal_update ours;
        update_of(m, NULL, &ours);
        if ((ours.status == SHOAL_ALIVE || ours.status == SHOAL_LEFT) &&
            shoal_update_overrides(&ours, u->generation, u->incarnation, u->status))
            enqueue(s, m, NULL);
        return;
    }

    uint8_t old = m->info.status;
    bool moved = u->generation != m->info.generation || !shoal_addr_eq(&u->addr, &m->info.addr);
    m->info.addr = u->addr;
    m->info.generation = u->generation;
    m->info.incarnation = u->incarnation;
    set_status(s, m, u->status, now);
    if (u->status == SHOAL_SUSPECT) {
        start_suspicion(s, m, u->from, now);
        s->stats.suspicions++;
    }
    s->stats.updates_applied++;
    if (old != u->status || moved)
        emit(s, SHOAL_EV_MEMBER_STATUS, m, old, NULL);
    enqueue(s, m, u->status == SHOAL_ALIVE ? NULL : (u->from[0] ? u->from : NULL));
}

static void apply_updates(struct shoal_swim *s, const struct shoal_msg *m, int64_t now)
{
    bool full_state = m->type == SHOAL_MSG_PUSHPULL_REQ || m->type == SHOAL_MSG_PUSHPULL_RESP;
    for (uint32_t i = 0; i < m->n_updates && i < SHOAL_MSG_MAX_UPDATES; i++) {
        const struct shoal_update *u = &m->updates[i];
        if (full_state && u->status == SHOAL_DEAD) {
            /* A full state is old news about many members at once: after a
             * healed partition it says the whole far side is dead. Merge a
             * death as a suspicion (as memberlist does), so every member it
             * names gets a suspicion timeout to refute in rather than dying
             * at once in its own side's view. */
            struct shoal_update v = *u;
            v.status = SHOAL_SUSPECT;
            apply_update(s, &v, now);
            continue;
        }
        apply_update(s, u, now);
    }
}

/* We suspect m ourselves (a failed probe). */
static void suspect_member(struct shoal_swim *s, struct shoal_member *m, int64_t now)
{
    if (m->info.status == SHOAL_ALIVE) {
        uint8_t old = m->info.status;
        set_status(s, m, SHOAL_SUSPECT, now);
        start_suspicion(s, m, s->self, now);
        s->stats.suspicions++;
        s->stats.probe_suspicions++;
        emit(s, SHOAL_EV_MEMBER_STATUS, m, old, NULL);
        enqueue(s, m, s->self);
        s->next_gossip = now;
    } else if (m->info.status == SHOAL_SUSPECT && confirm_suspicion(s, m, s->self, now)) {
        enqueue(s, m, s->self);
    }
}

/* ------------------------------------------------------------- probing */

static uint32_t scaled(const struct shoal_swim *s, uint32_t ms)
{
    return ms * (s->awareness + 1); /* Lifeguard sec. 4.1 */
}

static void reshuffle(struct shoal_swim *s)
{
    if (s->order_cap < s->members.n + 1) {
        size_t ncap = (s->members.n + 1) * 2;
        char(*no)[SHOAL_NAME_MAX] = realloc(s->order, ncap * sizeof(*no));
        if (!no)
            return;
        s->order = no;
        s->order_cap = ncap;
    }
    s->order_len = 0;
    for (size_t i = 0; i < s->members.n; i++) {
        const struct shoal_member *m = &s->members.v[i];
        if (strcmp(m->info.name, s->self) != 0 && is_live(m->info.status))
            memcpy(s->order[s->order_len++], m->info.name, SHOAL_NAME_MAX);
    }
    for (size_t i = s->order_len; i > 1; i--) { /* Fisher-Yates */
        size_t j = shoal_rng_below(&s->rng, (uint32_t)i);
        char tmp[SHOAL_NAME_MAX];
        memcpy(tmp, s->order[i - 1], SHOAL_NAME_MAX);
        memcpy(s->order[i - 1], s->order[j], SHOAL_NAME_MAX);
        memcpy(s->order[j], tmp, SHOAL_NAME_MAX);
    }
    s->order_pos = 0;
}

/* Next live member of the shuffled round; a fresh shuffle when the round is
 * done. Detection within 2N-1 periods worst case (SWIM sec. 4.3). */
static struct shoal_member *next_probe_target(struct shoal_swim *s)
{
    for (int round = 0; round < 2; round++) {
        while (s->order_pos < s->order_len) {
            struct shoal_member *m = shoal_members_find(&s->members, s->order[s->order_pos++]);
            if (m && is_live(m->info.status))
                return m;
        }
        reshuffle(s);
    }
    return NULL;
}

static void send_ping(struct shoal_swim *s, const struct shoal_member *t, uint32_t seq)
{
    struct shoal_msg *m = msg_begin(s, SHOAL_MSG_PING, seq);
    memcpy(m->target, t->info.name, SHOAL_NAME_MAX);
    piggyback(s, m, t->info.name);
    msg_send(s, &t->info.addr, m);
}

static void start_probe(struct shoal_swim *s, int64_t now)
{
    struct shoal_member *t = next_probe_target(s);
    s->next_probe = now + scaled(s, s->cfg.probe_interval_ms);
    if (!t)
        return;
    struct probe *p = &s->probe;
    memset(p, 0, sizeof(*p));
    p->active = true;
    p->seq = ++s->next_seq;
    memcpy(p->target, t->info.name, SHOAL_NAME_MAX);
    p->direct_deadline = now + scaled(s, s->cfg.probe_timeout_ms);
    p->end = s->next_probe;
    s->stats.probes_sent++;
    send_ping(s, t, p->seq);
}

static void probe_indirect(struct shoal_swim *s, int64_t now)
{
    struct probe *p = &s->probe;
    (void)now;
    p->indirect_sent = true;
    struct shoal_member *t = shoal_members_find(&s->members, p->target);
    if (!t)
        return;
    size_t idx[64];
    size_t k = s->cfg.indirect_checks < 64 ? s->cfg.indirect_checks : 64;
    size_t n = pick_members(s, k, pred_alive, now, p->target, idx);
    p->expected_nacks = (uint32_t)n;
    if (s->cfg.fallback_ping) {
        s->stats.fallback_pings++;
        s->cfg.fallback_ping(s->cfg.ud, &t->info.addr, t->info.name, p->seq);
    }
    for (size_t i = 0; i < n; i++) {
        const struct shoal_member *via = &s->members.v[idx[i]];
        struct shoal_msg *m = msg_begin(s, SHOAL_MSG_PING_REQ, p->seq);
        memcpy(m->target, t->info.name, SHOAL_NAME_MAX);
        m->target_addr = t->info.addr;
        piggyback(s, m, NULL);
        s->stats.ping_reqs_sent++;
        msg_send(s, &via->info.addr, m);
    }
}

static void probe_judge(struct shoal_swim *s, int64_t now)
{
    struct probe *p = &s->probe;
    p->active = false;
    if (p->acked)
        return;
    s->stats.probes_failed++;
    /* Lifeguard: missing nacks mean our own links are the likely problem. */
    uint32_t delta = p->expected_nacks ? p->expected_nacks - (p->nacks < p->expected_nacks
                                                                  ? p->nacks
                                                                  : p->expected_nacks)
                                       : 1;
    s->awareness = s->awareness + delta < s->cfg.awareness_max ? s->awareness + delta
                                                               : s->cfg.awareness_max - 1;
    if (p->fallback_acked)
        return; /* reached over TCP: alive, though our UDP path is suspect */
    struct shoal_member *t = shoal_members_find(&s->members, p->target);
    if (t)
        suspect_member(s, t, now);
}

static void on_ack(struct shoal_swim *s, uint32_t seq, int64_t now)
{
    (void)now;
    struct probe *p = &s->probe;
    if (p->active && p->seq == seq && !p->acked) {
        p->acked = true;
        if (s->awareness > 0)
            s->awareness--;
        return;
    }
    for (int i = 0; i < MAX_RELAYS; i++) {
        struct relay *r = &s->relays[i];
        if (r->active && r->seq == seq) {
            r->active = false;
            struct shoal_msg *m = msg_begin(s, SHOAL_MSG_ACK, r->origin_seq);
            piggyback(s, m, NULL);
            s->stats.acks_relayed++;
            msg_send(s, &r->origin, m);
            return;
        }
    }
}

void shoal_swim_fallback_ack(struct shoal_swim *s, int64_t now, uint32_t seq)
{
    (void)now;
    struct probe *p = &s->probe;
    if (p->active && p->seq == seq && !p->acked && !p->fallback_acked) {
        p->fallback_acked = true;
        s->stats.fallback_acks++;
    }
}

static void on_ping_req(struct shoal_swim *s, const struct shoal_addr *src,
                        const struct shoal_msg *in, int64_t now)
{
    struct relay *r = NULL;
    for (int i = 0; i < MAX_RELAYS; i++) {
        if (!s->relays[i].active) {
            r = &s->relays[i];
            break;
        }
    }
    if (!r) { /* full: reuse the one closest to its deadline */
        r = &s->relays[0];
        for (int i = 1; i < MAX_RELAYS; i++)
            if (s->relays[i].deadline < r->deadline)
                r = &s->relays[i];
    }
    r->active = true;
    r->seq = ++s->next_seq;
    r->origin_seq = in->seq;
    r->origin = *src;
    /* Nack at 80% of the probe timeout so the nack reaches the requester
     * before its probe period ends (Lifeguard sec. 4.1 counts missing nacks). */
    r->deadline = now + (int64_t)s->cfg.probe_timeout_ms * 4 / 5;
    struct shoal_msg *m = msg_begin(s, SHOAL_MSG_PING, r->seq);
    memcpy(m->target, in->target, SHOAL_NAME_MAX);
    piggyback(s, m, in->target);
    msg_send(s, &in->target_addr, m);
}

/* ---------------------------------------------------------- push-pull */

/* Sends our whole table to `to`, split over as many datagrams as needed. */
static void send_state(struct shoal_swim *s, const struct shoal_addr *to, uint8_t type)
{
    struct shoal_msg *m = msg_begin(s, type, ++s->next_seq);
    uint32_t budget = update_budget(s, m);
    uint32_t part = 0;
    for (size_t i = 0; i < s->members.n; i++) {
        const struct shoal_member *mb = &s->members.v[i];
        struct shoal_update u;
        update_of(mb, mb->info.status == SHOAL_SUSPECT ? mb->suspect_from : NULL, &u);
        uint32_t cost = shoal_update_cost(&u);
        if (m->n_updates == SHOAL_MSG_MAX_UPDATES || cost > budget) {
            msg_send(s, to, m);
            uint32_t seq = m->seq;
            m = msg_begin(s, type, seq);
            m->part = ++part;
            budget = update_budget(s, m);
        }
        m->updates[m->n_updates++] = u;
        budget -= cost;
    }
    msg_send(s, to, m);
}

static uint32_t pushpull_interval(const struct shoal_swim *s)
{
    /* memberlist pushPullScale: beyond 32 nodes, slow down as log2(N/32)+1
     * so the total push-pull load grows only logarithmically. */
    double n = (double)live_count(s);
    uint32_t mult = 1;
    if (n > 32)
        mult = (uint32_t)ceil(log2(n) - log2(32.0)) + 1;
    return s->cfg.pushpull_interval_ms * mult;
}

static void pushpull_tick(struct shoal_swim *s, int64_t now)
{
    size_t idx = 0;
    s->next_pushpull = now + pushpull_interval(s);
    if (pick_members(s, 1, pred_alive, now, NULL, &idx) == 1) {
        s->stats.pushpulls++;
        send_state(s, &s->members.v[idx].info.addr, SHOAL_MSG_PUSHPULL_REQ);
    }
    /* Reconnect (serf's reconnect_interval): a member we hold dead may be
     * on the far side of a healed partition. It answers with its state and
     * refutes our claim. */
    if (pick_members(s, 1, pred_dead, now, NULL, &idx) == 1) {
        s->stats.pushpulls++;
        send_state(s, &s->members.v[idx].info.addr, SHOAL_MSG_PUSHPULL_REQ);
    }
}

/* -------------------------------------------------------------- ticks */

static void gossip_tick(struct shoal_swim *s, int64_t now)
{
    s->next_gossip = now + s->cfg.gossip_interval_ms;
    if (shoal_dissem_len(&s->dq) == 0)
        return;
    size_t idx[64];
    size_t k = s->cfg.gossip_fanout < 64 ? s->cfg.gossip_fanout : 64;
    size_t n = pick_members(s, k, pred_gossip, now, NULL, idx);
    for (size_t i = 0; i < n && shoal_dissem_len(&s->dq) > 0; i++) {
        const struct shoal_member *t = &s->members.v[idx[i]];
        struct shoal_msg *m = msg_begin(s, SHOAL_MSG_GOSSIP, 0);
        piggyback(s, m, t->info.name);
        if (m->n_updates == 0)
            continue;
        s->stats.gossip_sent++;
        msg_send(s, &t->info.addr, m);
    }
}

static void suspicion_tick(struct shoal_swim *s, int64_t now)
{
    for (size_t i = 0; i < s->members.n; i++) {
        struct shoal_member *m = &s->members.v[i];
        if (m->info.status != SHOAL_SUSPECT || m->suspect_deadline > now)
            continue;
        uint8_t old = m->info.status;
        set_status(s, m, SHOAL_DEAD, now);
        emit(s, SHOAL_EV_MEMBER_STATUS, m, old, NULL);
        enqueue(s, m, s->self);
        s->next_gossip = now;
    }
    recompute_next_suspicion(s);
}

static void reap_tick(struct shoal_swim *s, int64_t now)
{
    for (size_t i = 0; i < s->members.n;) {
        struct shoal_member *m = &s->members.v[i];
        bool gone = m->info.status == SHOAL_DEAD || m->info.status == SHOAL_LEFT;
        if (gone && strcmp(m->info.name, s->self) != 0 &&
            now - m->info.since_ms >= (int64_t)s->cfg.reap_ms) {
            emit(s, SHOAL_EV_MEMBER_REAPED, m, m->info.status, NULL);
            shoal_members_remove(&s->members, i);
            continue;
        }
        i++;
    }
}

static void relay_tick(struct shoal_swim *s, int64_t now)
{
    for (int i = 0; i < MAX_RELAYS; i++) {
        struct relay *r = &s->relays[i];
        if (!r->active || r->deadline > now)
            continue;
        r->active = false;
        struct shoal_msg *m = msg_begin(s, SHOAL_MSG_NACK, r->origin_seq);
        piggyback(s, m, NULL);
        s->stats.nacks_sent++;
        msg_send(s, &r->origin, m);
    }
}

static void join_tick(struct shoal_swim *s, int64_t now)
{
    for (size_t i = 0; i < s->n_seeds; i++)
        send_state(s, &s->seeds[i], SHOAL_MSG_PUSHPULL_REQ);
    s->next_join = now + s->join_backoff;
    s->join_backoff = s->join_backoff * 2 < s->cfg.join_retry_max_ms ? s->join_backoff * 2
                                                                     : s->cfg.join_retry_max_ms;
}

void shoal_swim_tick(struct shoal_swim *s, int64_t now)
{
    if (s->joining && now >= s->next_join)
        join_tick(s, now);
    if (s->next_suspicion <= now)
        suspicion_tick(s, now);
    relay_tick(s, now);
    if (!s->leaving) {
        struct probe *p = &s->probe;
        if (p->active && !p->acked && !p->indirect_sent && now >= p->direct_deadline)
            probe_indirect(s, now);
        if (p->active && now >= p->end)
            probe_judge(s, now);
        if (!p->active && now >= s->next_probe) {
            reap_tick(s, now);
            start_probe(s, now);
        }
        /* A failed probe of a member already suspect is one more Lifeguard
         * confirmation: it shortens the timeout, possibly to before now.
         * Expire it in this tick, not the next ("deadline did not advance
         * past ... after a tick", which came with every such death). */
        if (s->next_suspicion <= now)
            suspicion_tick(s, now);
        if (s->cfg.pushpull_interval_ms && now >= s->next_pushpull)
            pushpull_tick(s, now);
    }
    if (now >= s->next_gossip)
        gossip_tick(s, now);
}

int64_t shoal_swim_next_deadline(const struct shoal_swim *s)
{
    int64_t d = s->next_suspicion;
#define AT_MOST(x)                                                                              \
    do {                                                                                        \
        if ((x) < d)                                                                            \
            d = (x);                                                                            \
    } while (0)
    if (shoal_dissem_len(&s->dq) > 0)
        AT_MOST(s->next_gossip);
    if (s->joining)
        AT_MOST(s->next_join);
    for (int i = 0; i < MAX_RELAYS; i++)
        if (s->relays[i].active)
            AT_MOST(s->relays[i].deadline);
    if (!s->leaving) {
        const struct probe *p = &s->probe;
        if (p->active) {
            if (!p->acked && !p->indirect_sent)
                AT_MOST(p->direct_deadline);
            AT_MOST(p->end);
        } else {
            AT_MOST(s->next_probe);
        }
        if (s->cfg.pushpull_interval_ms)
            AT_MOST(s->next_pushpull);
    }
#undef AT_MOST
    return d;
}

/* ------------------------------------------------------------ receive */

static bool is_seed(const struct shoal_swim *s, const struct shoal_addr *a);

void shoal_swim_recv(struct shoal_swim *s, int64_t now, const struct shoal_addr *src,
                     const struct shoal_msg *in)
{
    s->stats.msgs_in++;
    apply_updates(s, in, now);
    switch (in->type) {
    case SHOAL_MSG_PING: {
        if (strcmp(in->target, s->self) != 0) {
            s->stats.msgs_ignored++; /* meant for whoever had our address before */
            return;
        }
        struct shoal_msg *m = msg_begin(s, SHOAL_MSG_ACK, in->seq);
        piggyback(s, m, in->from);
        msg_send(s, src, m);
        break;
    }
    case SHOAL_MSG_ACK:
        on_ack(s, in->seq, now);
        break;
    case SHOAL_MSG_NACK:
        if (s->probe.active && s->probe.seq == in->seq)
            s->probe.nacks++;
        break;
    case SHOAL_MSG_PING_REQ:
        if (s->leaving)
            return;
        on_ping_req(s, src, in, now);
        break;
    case SHOAL_MSG_GOSSIP:
        break;
    case SHOAL_MSG_PUSHPULL_REQ:
        if (in->part == 0 && !s->leaving)
            send_state(s, src, SHOAL_MSG_PUSHPULL_RESP);
        break;
    case SHOAL_MSG_PUSHPULL_RESP:
        /* Only a seed's answer ends a join: a periodic push-pull with a
         * member already known says nothing about the seeds asked for. */
        if (s->joining && is_seed(s, src)) {
            s->joining = false;
            s->n_seeds = 0;
            emit(s, SHOAL_EV_JOINED, self_member(s), SHOAL_ALIVE, src);
        }
        break;
    default:
        s->stats.msgs_ignored++;
        break;
    }
}

/* -------------------------------------------------------- join, leave */

static bool is_seed(const struct shoal_swim *s, const struct shoal_addr *a)
{
    for (size_t i = 0; i < s->n_seeds; i++)
        if (shoal_addr_eq(&s->seeds[i], a))
            return true;
    return false;
}

int shoal_swim_join(struct shoal_swim *s, int64_t now, const struct shoal_addr *seeds, size_t n)
{
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        if (seeds[i].family == 0 || shoal_addr_eq(&seeds[i], &s->cfg.addr))
            continue;
        bool dup = false;
        for (size_t j = 0; j < s->n_seeds; j++)
            dup |= shoal_addr_eq(&s->seeds[j], &seeds[i]);
        if (!dup && s->n_seeds == MAX_SEEDS) { /* the oldest seed makes room */
            memmove(&s->seeds[0], &s->seeds[1], (MAX_SEEDS - 1) * sizeof(s->seeds[0]));
            s->n_seeds--;
        }
        if (!dup)
            s->seeds[s->n_seeds++] = seeds[i];
        added++;
    }
    if (!added)
        return SHOAL_EINVAL;
    s->joining = true;
    s->join_backoff = s->cfg.join_retry_min_ms;
    s->next_join = now;
    return 0;
}

bool shoal_swim_joining(const struct shoal_swim *s)
{
    return s->joining;
}

void shoal_swim_leave(struct shoal_swim *s, int64_t now)
{
    struct shoal_member *me = self_member(s);
    if (s->leaving)
        return;
    s->leaving = true;
    s->joining = false;
    s->probe.active = false;
    set_status(s, me, SHOAL_LEFT, now);
    enqueue(s, me, s->self);
    s->next_gossip = now;
}

bool shoal_swim_leave_done(const struct shoal_swim *s)
{
    /* Done once our left update has been sent enough times, or there is
     * nobody to tell. */
    if (!s->leaving)
        return false;
    if (shoal_dissem_transmits(&s->dq, s->self) < 0)
        return true;
    for (size_t i = 0; i < s->members.n; i++) {
        const struct shoal_member *m = &s->members.v[i];
        if (strcmp(m->info.name, s->self) != 0 && is_live(m->info.status))
            return false;
    }
    return true;
}

/* ------------------------------------------------------ lifecycle etc. */

struct shoal_swim *shoal_swim_new(const struct shoal_swim_config *c, int64_t now, int *err)
{
    if (!config_valid(c)) {
        if (err)
            *err = SHOAL_EINVAL;
        return NULL;
    }
    struct shoal_swim *s = calloc(1, sizeof(*s));
    if (!s || shoal_members_init(&s->members) != 0) {
        free(s);
        if (err)
            *err = SHOAL_ENOMEM;
        return NULL;
    }
    s->cfg = *c;
    shoal_rng_seed(&s->rng, c->seed);
    shoal_dissem_init(&s->dq);
    memcpy(s->self, c->name, SHOAL_NAME_MAX);
    s->self[SHOAL_NAME_MAX - 1] = 0;
    struct shoal_member *me = shoal_members_add(&s->members, s->self);
    me->info.addr = c->addr;
    me->info.generation = c->generation;
    me->info.status = SHOAL_ALIVE;
    me->info.since_ms = now;
    /* Spread probing of a cluster started all at once over one period. */
    s->next_probe = now + shoal_rng_below(&s->rng, c->probe_interval_ms);
    s->next_gossip = now;
    /* memberlist staggers the first push-pull over one interval, so nodes
     * started together do not push-pull (and reconnect) in lockstep. */
    s->next_pushpull = now + (c->pushpull_interval_ms
                                  ? shoal_rng_below(&s->rng, c->pushpull_interval_ms) + 1
                                  : 0);
    s->next_suspicion = NEVER;
    return s;
}

void shoal_swim_free(struct shoal_swim *s)
{
    if (!s)
        return;
    shoal_members_close(&s->members);
    shoal_dissem_close(&s->dq);
    free(s->order);
    free(s);
}

size_t shoal_swim_member_count(const struct shoal_swim *s)
{
    return s->members.n;
}

bool shoal_swim_member_at(const struct shoal_swim *s, size_t i, struct shoal_member_info *out)
{
    if (i >= s->members.n)
        return false;
    *out = s->members.v[i].info;
    return true;
}

bool shoal_swim_member_find(const struct shoal_swim *s, const char *name,
                            struct shoal_member_info *out)
{
    const struct shoal_member *m = shoal_members_find(&s->members, name);
    if (!m)
        return false;
    *out = m->info;
    return true;
}

size_t shoal_swim_random_members(struct shoal_swim *s, size_t k, struct shoal_addr *out)
{
    size_t idx[64];
    size_t n = pick_members(s, k < 64 ? k : 64, pred_alive, 0, NULL, idx);
    for (size_t i = 0; i < n; i++)
        out[i] = s->members.v[idx[i]].info.addr;
    return n;
}

void shoal_swim_count_by_status(const struct shoal_swim *s, size_t counts[])
{
    for (int i = 0; i < SHOAL_STATUS_COUNT; i++)
        counts[i] = 0;
    for (size_t i = 0; i < s->members.n; i++)
        counts[s->members.v[i].info.status]++;
}

uint32_t shoal_swim_health(const struct shoal_swim *s)
{
    return s->awareness;
}

const struct shoal_swim_stats *shoal_swim_stats(const struct shoal_swim *s)
{
    return &s->stats;
}

const struct shoal_swim_config *shoal_swim_config(const struct shoal_swim *s)
{
    return &s->cfg;
}

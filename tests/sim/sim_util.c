/* sim_util.c -- the deterministic simulator behind tests/sim (see sim_util.h).
 *
 * Scheduler: a binary min-heap of items keyed by (time, insertion number), so
 * ties pop in insertion order and a run depends only on the seed. A node has
 * at most one live deadline item: its tag is bumped whenever the core's
 * next deadline moves, and items with an old tag are skipped when popped.
 * Network: a message is encoded when sent (size checked, round trip
 * compared), and decoded from the stored bytes when delivered. Loss, blocks
 * and latency are drawn when sent from one network RNG.
 */
#include "sim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "shoal/error.h"
#include "wire/wire.h"

#define SIM_NEVER (INT64_MAX / 2) /* deadlines at or past this never fire */
#define SIM_UNSCHEDULED INT64_MIN /* the node has no live deadline item */
#define SIM_LEAVE_TIMEOUT_MS 3000 /* the agent's default --leave-timeout */
#define SIM_STUCK_TICKS 1000      /* ticks at one instant before we call it stuck */
#define SIM_SCRATCH 65536         /* encode buffer: larger than any datagram */

enum sim_kind { SIM_K_MSG, SIM_K_DEADLINE, SIM_K_START, SIM_K_LEAVE_STOP };

struct sim_item {
    int64_t at;
    uint64_t seq;
    uint64_t tag; /* DEADLINE: node tag; LEAVE_STOP: node life */
    uint8_t *buf; /* MSG: encoded payload, owned by the item */
    uint32_t len;
    int32_t node; /* destination / subject */
    int32_t src;  /* MSG: sender; START: seed node */
    uint8_t kind;
};

struct sim_node {
    struct sim *sim;
    struct shoal_swim *swim;
    enum sim_state state;
    uint32_t index;
    uint64_t generation;
    uint64_t life;    /* bumped at every start: stale LEAVE_STOP items */
    uint64_t tag;     /* live deadline item */
    int64_t sched_at; /* deadline the live item was pushed for */
    int64_t last_tick_at;
    uint32_t ticks_same_instant;
    bool stuck;
    uint32_t max_payload; /* max_datagram - SHOAL_ENVELOPE_BYTES */
    char name[SHOAL_NAME_MAX];
    struct shoal_addr addr;
};

struct sim {
    uint64_t seed;
    size_t n;
    int64_t now;
    struct shoal_swim_config base;
    struct sim_node *nodes;
    uint8_t *block; /* n*n: block[from*n + to] */
    struct shoal_rng net_rng;
    uint32_t lat_min, lat_max;
    double loss;

    struct sim_item *heap;
    size_t heap_len, heap_cap;
    uint64_t next_seq;

    struct sim_event_rec *events;
    size_t n_events, cap_events;

    uint64_t trace;
    struct sim_net_stats stats;
    uint8_t *scratch;
    /* Big (48 updates), so kept off the stack. Two of them: a core reads the
     * delivered message (rx) while it sends, and sends are checked in chk. */
    struct shoal_msg *rx, *chk;
};

/* ---- hashing and seeds ------------------------------------------------- */

static uint64_t sim_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void sim_trace_add(struct sim *s, uint64_t v)
{
    s->trace = sim_mix(s->trace ^ v) + 0x9e3779b97f4a7c15ULL;
}

static uint64_t sim_fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* Per-node seed: distinct for every (run seed, node, generation). */
static uint64_t sim_node_seed(const struct sim *s, size_t i, uint64_t generation)
{
    return sim_mix(s->seed ^ sim_mix(0x5eed0000ULL + i) ^ sim_mix(generation << 32));
}

/* ---- heap -------------------------------------------------------------- */

static bool sim_item_before(const struct sim_item *a, const struct sim_item *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void sim_push(struct sim *s, struct sim_item it)
{
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 1024;
        struct sim_item *h = realloc(s->heap, cap * sizeof(*h));
        if (!h) {
            fprintf(stderr, "sim: out of memory (heap)\n");
            abort();
        }
        s->heap = h;
        s->heap_cap = cap;
    }
    it.seq = s->next_seq++;
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!sim_item_before(&it, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = it;
}

static struct sim_item sim_pop(struct sim *s)
{
    struct sim_item top = s->heap[0];
    struct sim_item last = s->heap[--s->heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len && sim_item_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!sim_item_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_len > 0)
        s->heap[i] = last;
    return top;
}

/* ---- names and addresses ---------------------------------------------- */

int sim_name_index(const struct sim *s, const char *name)
{
    if (name[0] != 'n' || name[1] < '0' || name[1] > '9')
        return -1;
    if (name[1] == '0' && name[2] != 0)
        return -1; /* "n01" is not ours */
    size_t v = 0;
    for (const char *p = name + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > s->n)
            return -1;
        v = v * 10 + (size_t)(*p - '0');
    }
    return v < s->n ? (int)v : -1;
}

static int sim_addr_index(const struct sim *s, const struct shoal_addr *a)
{
    if (a->family != 4 || a->ip[0] != 127 || a->ip[1] != 0 || a->ip[2] != 0 || a->ip[3] != 1)
        return -1;
    if (a->port < SIM_BASE_PORT || (size_t)(a->port - SIM_BASE_PORT) >= s->n)
        return -1;
    return a->port - SIM_BASE_PORT;
}

static bool sim_running(const struct sim_node *nd)
{
    return nd->state == SIM_UP || nd->state == SIM_LEAVING;
}

/* ---- codec round trip ------------------------------------------------- */

static bool sim_update_eq(const struct shoal_update *a, const struct shoal_update *b)
{
    return strcmp(a->name, b->name) == 0 && shoal_addr_eq(&a->addr, &b->addr) &&
           a->generation == b->generation && a->incarnation == b->incarnation &&
           a->status == b->status && strcmp(a->from, b->from) == 0;
}

/* Does the decoded message say what the core meant? Fields a type does not
 * use (target of an ACK, ...) may legitimately be dropped by the codec. */
static bool sim_msg_eq(const struct shoal_msg *a, const struct shoal_msg *b)
{
    if (a->type != b->type || a->seq != b->seq || a->part != b->part ||
        strcmp(a->from, b->from) != 0 || a->n_updates != b->n_updates)
        return false;
    if ((a->type == SHOAL_MSG_PING || a->type == SHOAL_MSG_PING_REQ) &&
        strcmp(a->target, b->target) != 0)
        return false;
    if (a->type == SHOAL_MSG_PING_REQ && !shoal_addr_eq(&a->target_addr, &b->target_addr))
        return false;
    for (uint32_t i = 0; i < a->n_updates; i++)
        if (!sim_update_eq(&a->updates[i], &b->updates[i]))
            return false;
    return true;
}

/* ---- callbacks from the cores ----------------------------------------- */

static void sim_on_send(void *ud, const struct shoal_addr *to, const struct shoal_msg *m)
{
    struct sim_node *nd = ud;
    struct sim *s = nd->sim;
    uint32_t limit = nd->max_payload;

    s->stats.sent++;
    if (m->type <= SHOAL_MSG_TYPE_MAX)
        s->stats.by_type[m->type]++;
    int len = shoal_wire_encode(m, s->scratch, SIM_SCRATCH);
    if (len < 0) {
        if (len == SHOAL_ETOOBIG)
            s->stats.too_big++;
        else
            s->stats.encode_errors++;
        return;
    }
    if ((uint64_t)len > s->stats.max_payload)
        s->stats.max_payload = (uint64_t)len;
    if ((uint32_t)len > limit) {
        s->stats.too_big++; /* would not fit the signed datagram */
        return;
    }
    const char *bad = NULL;
    if (shoal_wire_decode(s->scratch, (size_t)len, s->chk, &bad) != 0)
        s->stats.decode_errors++;
    else if (!sim_msg_eq(m, s->chk))
        s->stats.codec_mismatch++;

    int dst = sim_addr_index(s, to);
    if (dst < 0) {
        s->stats.unroutable++;
        return;
    }
    if (s->block[(size_t)nd->index * s->n + (size_t)dst]) {
        s->stats.blocked++;
        return;
    }
    if (s->loss > 0 && shoal_rng_unit(&s->net_rng) < s->loss) {
        s->stats.lost++;
        return;
    }
    uint32_t lat = s->lat_min + shoal_rng_below(&s->net_rng, s->lat_max - s->lat_min + 1);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (!buf) {
        fprintf(stderr, "sim: out of memory (message)\n");
        abort();
    }
    memcpy(buf, s->scratch, (size_t)len);
    sim_push(s, (struct sim_item){.at = s->now + lat,
                                  .kind = SIM_K_MSG,
                                  .node = dst,
                                  .src = (int32_t)nd->index,
                                  .buf = buf,
                                  .len = (uint32_t)len});
}

static void sim_on_event(void *ud, const struct shoal_event *ev)
{
    struct sim_node *nd = ud;
    struct sim *s = nd->sim;
    struct sim_event_rec r = {.at_ms = s->now,
                              .observer = (int32_t)nd->index,
                              .subject = -1,
                              .type = (uint8_t)ev->type,
                              .old_status = ev->old_status};
    if (ev->member) {
        r.subject = sim_name_index(s, ev->member->name);
        r.generation = ev->member->generation;
        r.incarnation = ev->member->incarnation;
        r.status = ev->member->status;
        if (r.subject >= 0) {
            const struct sim_node *sub = &s->nodes[r.subject];
            r.subject_live = sub->state == SIM_UP && sub->generation == r.generation;
        }
    }
    if (s->n_events == s->cap_events) {
        size_t cap = s->cap_events ? s->cap_events * 2 : 4096;
        struct sim_event_rec *e = realloc(s->events, cap * sizeof(*e));
        if (!e) {
            fprintf(stderr, "sim: out of memory (events)\n");
            abort();
        }
        s->events = e;
        s->cap_events = cap;
    }
    s->events[s->n_events++] = r;
    sim_trace_add(s, 0xe0000000ULL ^ ((uint64_t)r.type << 8) ^ r.status);
    sim_trace_add(s, ((uint64_t)(uint32_t)r.observer << 32) ^ (uint32_t)r.subject);
    sim_trace_add(s, r.generation ^ ((uint64_t)r.incarnation << 40) ^ (uint64_t)r.at_ms);
}

/* ---- scheduling a node ------------------------------------------------ */

/* After any call into a core: stop a finished leave, re-arm the deadline. */
static void sim_after_call(struct sim *s, struct sim_node *nd)
{
    if (nd->state == SIM_LEAVING && shoal_swim_leave_done(nd->swim)) {
        shoal_swim_free(nd->swim);
        nd->swim = NULL;
        nd->state = SIM_LEFT;
        nd->tag++;
        return;
    }
    if (!sim_running(nd))
        return;
    int64_t d = shoal_swim_next_deadline(nd->swim);
    if (d == nd->sched_at)
        return;
    nd->sched_at = d;
    nd->tag++;
    if (d >= SIM_NEVER)
        return;
    if (d <= s->now) {
        d = s->now;
        /* A core whose deadline never moves past now would spin forever at
         * one instant: count it as a failure and let time advance. */
        if (nd->ticks_same_instant >= SIM_STUCK_TICKS) {
            if (!nd->stuck)
                s->stats.stuck_deadlines++;
            nd->stuck = true;
            d = s->now + 1;
        }
    }
    sim_push(s, (struct sim_item){
                    .at = d, .kind = SIM_K_DEADLINE, .node = (int32_t)nd->index, .tag = nd->tag});
}

static void sim_tick(struct sim *s, struct sim_node *nd)
{
    if (nd->last_tick_at == s->now) {
        nd->ticks_same_instant++;
    } else {
        nd->last_tick_at = s->now;
        nd->ticks_same_instant = 0;
    }
    nd->sched_at = SIM_UNSCHEDULED;
    shoal_swim_tick(nd->swim, s->now);
    /* As node.c warns: a tick must move the deadline past now ("deadline
     * did not advance past ... after a tick"). */
    if (shoal_swim_next_deadline(nd->swim) <= s->now)
        s->stats.stuck_deadlines++;
    sim_after_call(s, nd);
}

static void sim_deliver(struct sim *s, struct sim_item *it)
{
    struct sim_node *dst = &s->nodes[it->node];
    if (dst->state == SIM_PAUSED) {
        s->stats.to_paused++;
        return;
    }
    if (!sim_running(dst)) {
        s->stats.to_down++;
        return;
    }
    const char *bad = NULL;
    if (shoal_wire_decode(it->buf, it->len, s->rx, &bad) != 0) {
        s->stats.decode_errors++;
        return;
    }
    s->stats.delivered++;
    s->stats.bytes += it->len;
    sim_trace_add(s, ((uint64_t)it->at << 24) ^ ((uint64_t)(uint32_t)it->src << 12) ^
                         (uint32_t)it->node);
    sim_trace_add(s, sim_fnv(it->buf, it->len));
    shoal_swim_recv(dst->swim, s->now, &s->nodes[it->src].addr, s->rx);
    sim_after_call(s, dst);
}

static int sim_boot(struct sim *s, struct sim_node *nd, int seed_node)
{
    struct shoal_swim_config c = s->base;
    memcpy(c.name, nd->name, sizeof(c.name));
    c.addr = nd->addr;
    c.generation = nd->generation;
    c.seed = sim_node_seed(s, nd->index, nd->generation);
    c.ud = nd;
    c.send = sim_on_send;
    c.event = sim_on_event;
    nd->max_payload =
        c.max_datagram > SHOAL_ENVELOPE_BYTES ? c.max_datagram - SHOAL_ENVELOPE_BYTES : 0;
    int err = 0;
    nd->swim = shoal_swim_new(&c, s->now, &err);
    if (!nd->swim)
        return err ? err : SHOAL_ENOMEM;
    nd->state = SIM_UP;
    nd->life++;
    nd->tag++;
    nd->sched_at = SIM_UNSCHEDULED;
    nd->ticks_same_instant = 0;
    nd->last_tick_at = INT64_MIN;
    sim_trace_add(s, 0x57a27000ULL ^ ((uint64_t)nd->index << 16) ^ nd->generation);
    if (seed_node >= 0) {
        struct shoal_addr seed_addr = s->nodes[seed_node].addr;
        int rc = shoal_swim_join(nd->swim, s->now, &seed_addr, 1);
        if (rc != 0) {
            sim_after_call(s, nd);
            return rc;
        }
    }
    sim_after_call(s, nd);
    return 0;
}

/* ---- public: setup ---------------------------------------------------- */

struct sim *sim_new(uint64_t seed, size_t n)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->seed = seed;
    s->n = n;
    s->nodes = calloc(n, sizeof(*s->nodes));
    s->block = calloc(n ? n * n : 1, 1);
    s->scratch = malloc(SIM_SCRATCH);
    s->rx = malloc(sizeof(*s->rx));
    s->chk = malloc(sizeof(*s->chk));
    if (!s->nodes || !s->block || !s->scratch || !s->rx || !s->chk) {
        sim_free(s);
        return NULL;
    }
    shoal_swim_config_defaults(&s->base);
    shoal_rng_seed(&s->net_rng, sim_mix(seed ^ 0x6e657477ULL));
    s->lat_min = 1;
    s->lat_max = 10;
    s->trace = sim_mix(seed);
    for (size_t i = 0; i < n; i++) {
        struct sim_node *nd = &s->nodes[i];
        nd->sim = s;
        nd->index = (uint32_t)i;
        nd->state = SIM_OFF;
        nd->generation = 1;
        nd->sched_at = SIM_UNSCHEDULED;
        snprintf(nd->name, sizeof(nd->name), "n%zu", i);
        nd->addr.family = 4;
        nd->addr.ip[0] = 127;
        nd->addr.ip[3] = 1;
        nd->addr.port = (uint16_t)(SIM_BASE_PORT + i);
    }
    return s;
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->nodes && i < s->n; i++)
        if (s->nodes[i].swim)
            shoal_swim_free(s->nodes[i].swim);
    for (size_t i = 0; i < s->heap_len; i++)
        free(s->heap[i].buf);
    free(s->heap);
    free(s->events);
    free(s->nodes);
    free(s->block);
    free(s->scratch);
    free(s->rx);
    free(s->chk);
    free(s);
}

struct shoal_swim_config *sim_base_config(struct sim *s) { return &s->base; }

size_t sim_size(const struct sim *s) { return s->n; }

uint64_t sim_seed(const struct sim *s) { return s->seed; }

int64_t sim_now(const struct sim *s) { return s->now; }

void sim_set_latency(struct sim *s, uint32_t min_ms, uint32_t max_ms)
{
    s->lat_min = min_ms;
    s->lat_max = max_ms < min_ms ? min_ms : max_ms;
}

void sim_set_loss(struct sim *s, double p) { s->loss = p; }

void sim_block(struct sim *s, size_t from, size_t to, bool blocked)
{
    s->block[from * s->n + to] = blocked;
}

void sim_partition(struct sim *s, const int *group)
{
    for (size_t a = 0; a < s->n; a++)
        for (size_t b = 0; b < s->n; b++)
            s->block[a * s->n + b] = group[a] != group[b];
}

void sim_heal(struct sim *s) { memset(s->block, 0, s->n * s->n); }

/* ---- public: lifecycle ------------------------------------------------ */

int sim_start(struct sim *s, size_t i, int seed_node)
{
    if (i >= s->n || s->nodes[i].state != SIM_OFF || (seed_node >= 0 && (size_t)seed_node >= s->n))
        return SHOAL_ESTATE;
    return sim_boot(s, &s->nodes[i], seed_node);
}

int sim_start_at(struct sim *s, size_t i, int64_t at_ms, int seed_node)
{
    if (i >= s->n || s->nodes[i].state != SIM_OFF || at_ms < s->now ||
        (seed_node >= 0 && (size_t)seed_node >= s->n))
        return SHOAL_ESTATE;
    sim_push(s, (struct sim_item){
                    .at = at_ms, .kind = SIM_K_START, .node = (int32_t)i, .src = seed_node});
    return 0;
}

int sim_pause(struct sim *s, size_t i)
{
    struct sim_node *nd = &s->nodes[i];
    if (nd->state != SIM_UP)
        return SHOAL_ESTATE;
    nd->state = SIM_PAUSED;
    nd->tag++; /* its deadline item dies; resume arms a new one */
    sim_trace_add(s, 0x9a05e000ULL ^ i);
    return 0;
}

int sim_resume(struct sim *s, size_t i)
{
    struct sim_node *nd = &s->nodes[i];
    if (nd->state != SIM_PAUSED)
        return SHOAL_ESTATE;
    nd->state = SIM_UP;
    nd->sched_at = SIM_UNSCHEDULED;
    sim_trace_add(s, 0x2e5e0000ULL ^ i);
    sim_after_call(s, nd); /* overdue deadlines fire at once */
    return 0;
}

int sim_crash(struct sim *s, size_t i)
{
    struct sim_node *nd = &s->nodes[i];
    if (nd->state != SIM_UP && nd->state != SIM_PAUSED && nd->state != SIM_LEAVING)
        return SHOAL_ESTATE;
    shoal_swim_free(nd->swim);
    nd->swim = NULL;
    nd->state = SIM_CRASHED;
    nd->tag++;
    sim_trace_add(s, 0xc2a54000ULL ^ i);
    return 0;
}

int sim_restart(struct sim *s, size_t i, int seed_node)
{
    struct sim_node *nd = &s->nodes[i];
    if (nd->state != SIM_CRASHED && nd->state != SIM_LEFT)
        return SHOAL_ESTATE;
    nd->generation++;
    return sim_boot(s, nd, seed_node);
}

int sim_leave(struct sim *s, size_t i)
{
    struct sim_node *nd = &s->nodes[i];
    if (nd->state != SIM_UP)
        return SHOAL_ESTATE;
    nd->state = SIM_LEAVING;
    shoal_swim_leave(nd->swim, s->now);
    sim_push(s, (struct sim_item){.at = s->now + SIM_LEAVE_TIMEOUT_MS,
                                  .kind = SIM_K_LEAVE_STOP,
                                  .node = (int32_t)i,
                                  .tag = nd->life});
    sim_after_call(s, nd);
    return 0;
}

/* ---- public: running -------------------------------------------------- */

static void sim_dispatch(struct sim *s, struct sim_item *it)
{
    struct sim_node *nd = &s->nodes[it->node];
    switch (it->kind) {
    case SIM_K_MSG:
        sim_deliver(s, it);
        free(it->buf);
        break;
    case SIM_K_DEADLINE:
        if (sim_running(nd) && it->tag == nd->tag)
            sim_tick(s, nd);
        break;
    case SIM_K_START:
        if (nd->state == SIM_OFF && sim_boot(s, nd, it->src) != 0)
            s->stats.start_errors++;
        break;
    case SIM_K_LEAVE_STOP:
        if (nd->state == SIM_LEAVING && it->tag == nd->life) {
            shoal_swim_free(nd->swim);
            nd->swim = NULL;
            nd->state = SIM_LEFT;
            nd->tag++;
        }
        break;
    }
}

void sim_run_until(struct sim *s, int64_t t_ms)
{
    while (s->heap_len > 0 && s->heap[0].at <= t_ms) {
        struct sim_item it = sim_pop(s);
        s->now = it.at;
        sim_dispatch(s, &it);
    }
    if (t_ms > s->now)
        s->now = t_ms;
}

void sim_run_for(struct sim *s, int64_t dt_ms) { sim_run_until(s, s->now + dt_ms); }

int64_t sim_run_until_true(struct sim *s, int64_t deadline_ms, int64_t step_ms,
                           bool (*pred)(struct sim *s, void *ud), void *ud)
{
    for (;;) {
        if (pred(s, ud))
            return s->now;
        if (s->now >= deadline_ms)
            return -1;
        int64_t next = s->now + step_ms;
        sim_run_until(s, next < deadline_ms ? next : deadline_ms);
    }
}

/* ---- public: views ---------------------------------------------------- */

enum sim_state sim_node_state(const struct sim *s, size_t i) { return s->nodes[i].state; }

struct shoal_swim *sim_swim(struct sim *s, size_t i) { return s->nodes[i].swim; }

uint64_t sim_generation(const struct sim *s, size_t i) { return s->nodes[i].generation; }

int sim_view(const struct sim *s, size_t y, size_t x, struct shoal_member_info *out)
{
    struct shoal_member_info tmp;
    if (!s->nodes[y].swim)
        return -1;
    if (!shoal_swim_member_find(s->nodes[y].swim, s->nodes[x].name, out ? out : &tmp))
        return -1;
    return out ? out->status : tmp.status;
}

bool sim_all_see(const struct sim *s, size_t x, unsigned mask, char *why, size_t len)
{
    for (size_t y = 0; y < s->n; y++) {
        if (y == x || s->nodes[y].state != SIM_UP)
            continue;
        struct shoal_member_info mi;
        int st = sim_view(s, y, x, &mi);
        unsigned bit = st < 0 ? SIM_ABSENT : SIM_MASK(st);
        if (!(bit & mask)) {
            if (why)
                snprintf(why, len, "n%zu sees n%zu %s (gen %llu inc %u) at t=%lld ms", y, x,
                         st < 0 ? "absent" : shoal_status_name(st),
                         st < 0 ? 0ULL : (unsigned long long)mi.generation,
                         st < 0 ? 0U : mi.incarnation, (long long)s->now);
            return false;
        }
    }
    return true;
}

/* One observer's table against what the sim knows to be true. Counts the
 * wrong (observer, member) pairs, stopping at the first unless all; why
 * describes the first. */
static size_t sim_view_errors(const struct sim *s, size_t y, const struct shoal_member_info *self,
                              int *seen, struct shoal_member_info *rows, bool all, char *why,
                              size_t len)
{
    struct shoal_swim *sw = s->nodes[y].swim;
    size_t count = shoal_swim_member_count(sw), errors = 0;
    for (size_t x = 0; x < s->n; x++)
        seen[x] = -1;
    for (size_t k = 0; k < count; k++) {
        struct shoal_member_info mi;
        if (!shoal_swim_member_at(sw, k, &mi))
            continue;
        int x = sim_name_index(s, mi.name);
        if (x < 0 || seen[x] >= 0) {
            if (errors++ == 0)
                snprintf(why, len, "n%zu holds '%s' %s", y, mi.name,
                         x < 0 ? "which is no node" : "twice");
            if (!all)
                return errors;
            continue;
        }
        seen[x] = mi.status;
        rows[x] = mi;
    }
    for (size_t x = 0; x < s->n; x++) {
        const struct sim_node *nx = &s->nodes[x];
        int st = seen[x];
        bool ok = true;
        const char *want = "";
        switch (nx->state) {
        case SIM_UP:
            want = "alive with its generation and incarnation";
            ok = st == SHOAL_ALIVE && rows[x].generation == nx->generation &&
                 rows[x].incarnation == self[x].incarnation;
            break;
        case SIM_CRASHED:
            want = "dead or absent";
            ok = st < 0 || st == SHOAL_DEAD;
            break;
        case SIM_LEFT:
            want = "left or absent";
            ok = st < 0 || st == SHOAL_LEFT;
            break;
        case SIM_OFF:
            want = "absent";
            ok = st < 0;
            break;
        case SIM_PAUSED:
        case SIM_LEAVING:
            break;
        }
        if (ok)
            continue;
        if (errors++ == 0)
            snprintf(why, len,
                     "n%zu sees n%zu %s gen %llu inc %u, want %s (gen %llu inc %u) at t=%lld ms", y,
                     x, st < 0 ? "absent" : shoal_status_name(st),
                     st < 0 ? 0ULL : (unsigned long long)rows[x].generation,
                     st < 0 ? 0U : rows[x].incarnation, want, (unsigned long long)nx->generation,
                     self[x].incarnation, (long long)s->now);
        if (!all)
            return errors;
    }
    return errors;
}

static size_t sim_errors(const struct sim *s, bool all, char *why, size_t len)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        len = sizeof(dummy);
    }
    struct shoal_member_info *self = calloc(s->n, sizeof(*self));
    struct shoal_member_info *rows = calloc(s->n, sizeof(*rows));
    int *seen = calloc(s->n, sizeof(*seen));
    size_t errors = 0;
    if (!self || !rows || !seen) {
        snprintf(why, len, "out of memory");
        errors = 1;
    }
    /* Each live node's own record is the truth about its incarnation. */
    for (size_t x = 0; !errors && x < s->n; x++) {
        if (s->nodes[x].state != SIM_UP)
            continue;
        if (!shoal_swim_member_find(s->nodes[x].swim, s->nodes[x].name, &self[x])) {
            snprintf(why, len, "n%zu does not hold itself", x);
            errors = 1;
        }
    }
    for (size_t y = 0; y < s->n && (all || !errors); y++) {
        if (s->nodes[y].state != SIM_UP)
            continue;
        size_t e = sim_view_errors(s, y, self, seen, rows, all, errors ? dummy : why,
                                   errors ? sizeof(dummy) : len);
        errors += e;
    }
    free(self);
    free(rows);
    free(seen);
    return errors;
}

bool sim_converged(const struct sim *s, char *why, size_t len)
{
    return sim_errors(s, false, why, len) == 0;
}

size_t sim_divergence(const struct sim *s, char *why, size_t len)
{
    return sim_errors(s, true, why, len);
}

void sim_core_stats(const struct sim *s, struct shoal_swim_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (size_t i = 0; i < s->n; i++) {
        if (!s->nodes[i].swim)
            continue;
        const struct shoal_swim_stats *t = shoal_swim_stats(s->nodes[i].swim);
        sum->probes_sent += t->probes_sent;
        sum->probes_failed += t->probes_failed;
        sum->ping_reqs_sent += t->ping_reqs_sent;
        sum->acks_relayed += t->acks_relayed;
        sum->nacks_sent += t->nacks_sent;
        sum->suspicions += t->suspicions;
        sum->refutes += t->refutes;
        sum->deaths += t->deaths;
        sum->conflicts += t->conflicts;
        sum->updates_applied += t->updates_applied;
        sum->updates_stale += t->updates_stale;
        sum->gossip_sent += t->gossip_sent;
        sum->pushpulls += t->pushpulls;
        sum->msgs_in += t->msgs_in;
        sum->msgs_out += t->msgs_out;
        sum->msgs_ignored += t->msgs_ignored;
    }
}

size_t sim_count_events(const struct sim *s, const struct sim_filter *f)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_events; i++) {
        const struct sim_event_rec *r = &s->events[i];
        if ((f->observer >= 0 && r->observer != f->observer) ||
            (f->subject >= 0 && r->subject != f->subject) || (f->type >= 0 && r->type != f->type) ||
            (f->status >= 0 && r->status != f->status) || r->at_ms < f->since_ms ||
            (f->until_ms > 0 && r->at_ms > f->until_ms))
            continue;
        n++;
    }
    return n;
}

const struct sim_event_rec *sim_events(const struct sim *s, size_t *n)
{
    *n = s->n_events;
    return s->events;
}

/* Refutations beyond one per suspected (or declared dead) incarnation, over
 * every running node: a refutation answers a claim at an incarnation >= the
 * node's own and moves past it, so each claimed incarnation is refuted at
 * most once (DESIGN.md precedence). why names the worst node. */
uint64_t sim_refutation_excess(struct sim *s, char *why, size_t len)
{
    size_t nev;
    const struct sim_event_rec *ev = sim_events(s, &nev);
    uint64_t excess = 0;
    for (size_t x = 0; x < sim_size(s); x++) {
        struct shoal_swim *sw = sim_swim(s, x);
        if (!sw)
            continue;
        uint64_t gen = sim_generation(s, x);
        /* Distinct claimed incarnations (claims are few: a small set). */
        uint32_t seen[256];
        size_t n_seen = 0;
        for (size_t i = 0; i < nev; i++) {
            if (ev[i].subject != (int32_t)x || ev[i].generation != gen ||
                ev[i].type != SHOAL_EV_MEMBER_STATUS ||
                (ev[i].status != SHOAL_SUSPECT && ev[i].status != SHOAL_DEAD))
                continue;
            bool dup = false;
            for (size_t k = 0; k < n_seen && !dup; k++)
                dup = seen[k] == ev[i].incarnation;
            if (!dup && n_seen < 256)
                seen[n_seen++] = ev[i].incarnation;
        }
        uint64_t refutes = shoal_swim_stats(sw)->refutes;
        if (refutes > n_seen) {
            if (why && excess == 0)
                snprintf(why, len, "n%zu refuted %llu times for %zu suspected incarnations", x,
                         (unsigned long long)refutes, n_seen);
            excess += refutes - n_seen;
        }
    }
    return excess;
}

size_t sim_false_deaths(const struct sim *s, char *why, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_events; i++) {
        const struct sim_event_rec *r = &s->events[i];
        if (r->status != SHOAL_DEAD || !r->subject_live ||
            (r->type != SHOAL_EV_MEMBER_STATUS && r->type != SHOAL_EV_MEMBER_JOIN))
            continue;
        if (n++ == 0 && why)
            snprintf(why, len, "n%d declared live n%d dead (gen %llu inc %u) at t=%lld ms",
                     r->observer, r->subject, (unsigned long long)r->generation, r->incarnation,
                     (long long)r->at_ms);
    }
    return n;
}

uint64_t sim_trace_hash(const struct sim *s) { return s->trace; }

const struct sim_net_stats *sim_net_stats(const struct sim *s) { return &s->stats; }

bool sim_clean(const struct sim *s, char *why, size_t len)
{
    const struct sim_net_stats *t = &s->stats;
    if (t->too_big || t->encode_errors || t->decode_errors || t->codec_mismatch || t->unroutable ||
        t->stuck_deadlines || t->start_errors) {
        snprintf(why, len,
                 "too_big=%llu (max payload %llu) encode_errors=%llu decode_errors=%llu "
                 "codec_mismatch=%llu unroutable=%llu stuck_deadlines=%llu start_errors=%llu",
                 (unsigned long long)t->too_big, (unsigned long long)t->max_payload,
                 (unsigned long long)t->encode_errors, (unsigned long long)t->decode_errors,
                 (unsigned long long)t->codec_mismatch, (unsigned long long)t->unroutable,
                 (unsigned long long)t->stuck_deadlines, (unsigned long long)t->start_errors);
        return false;
    }
    return true;
}

void sim_print_stats(const struct sim *s, const char *label)
{
    const struct sim_net_stats *t = &s->stats;
    fprintf(stderr,
            "  [%s] t=%.1fs sent=%llu delivered=%llu lost=%llu blocked=%llu to_paused=%llu "
            "to_down=%llu max_payload=%llu B events=%zu "
            "(ping=%llu ack=%llu nack=%llu ping_req=%llu gossip=%llu pp_req=%llu pp_resp=%llu)\n",
            label, (double)s->now / 1000.0, (unsigned long long)t->sent,
            (unsigned long long)t->delivered, (unsigned long long)t->lost,
            (unsigned long long)t->blocked, (unsigned long long)t->to_paused,
            (unsigned long long)t->to_down, (unsigned long long)t->max_payload, s->n_events,
            (unsigned long long)t->by_type[SHOAL_MSG_PING],
            (unsigned long long)t->by_type[SHOAL_MSG_ACK],
            (unsigned long long)t->by_type[SHOAL_MSG_NACK],
            (unsigned long long)t->by_type[SHOAL_MSG_PING_REQ],
            (unsigned long long)t->by_type[SHOAL_MSG_GOSSIP],
            (unsigned long long)t->by_type[SHOAL_MSG_PUSHPULL_REQ],
            (unsigned long long)t->by_type[SHOAL_MSG_PUSHPULL_RESP]);
}

/* regsim_util.c -- registry cores on the deterministic simulator (see
 * regsim_util.h).
 *
 * Clock: sim_util owns the virtual clock and the swim cores; regsim steps it
 * 1 ms at a time (sim_run_until(t)), then feeds the swim events recorded at t
 * to the registries (node.c's glue), then delivers the registry messages due
 * at t (a min-heap keyed by (time, insertion number)), then ticks the
 * registries whose deadline is due. Every step depends only on the seed.
 * Streams: a connection joins two lives of two nodes; a crash, a restart or
 * a partition between them breaks it for good. Deliveries on one direction
 * are FIFO: each leaves at max(now + latency, previous delivery) plus its
 * bytes over the bandwidth; the first waits a connect round trip.
 * Oracle: the changed callback of every registry keeps a per-(node,
 * instance) mirror: visible or not, the (generation, version) last seen, and
 * a bar: after a permanent removal (a tombstone, a wipe by a newer
 * generation or a leave; not a reap, which a live owner's anti-entropy may
 * undo) nothing at or below the bar may come back.
 */
#include "regsim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/principal.h"
#include "core/rng.h"
#include "shoal/error.h"
#include "wire/statement.h"
#include "wire/wire.h"

#define RS_NEVER INT64_MAX
#define RS_DEFAULT_BANDWIDTH 125000u /* bytes per ms: 1 Gbit/s */
#define RS_SCRATCH (SHOAL_STREAM_FRAME_MAX)

enum rs_ctx { RS_CTX_NONE, RS_CTX_LOCAL, RS_CTX_RECV, RS_CTX_TICK, RS_CTX_STATUS };

struct rs_item {
    int64_t at;
    uint64_t seq;
    uint8_t *buf;
    uint32_t len;
    int32_t src, dst;
    uint64_t conn; /* 0 for a datagram */
};

struct rs_conn {
    uint32_t a, b; /* initiator, acceptor */
    uint64_t a_life, b_life;
    int64_t free_at[2]; /* last delivery a->b, b->a */
    bool broken;
};

/* One (node, instance) pair as the node's notifications tell it. */
struct rs_seen {
    uint64_t gen, ver;         /* last ADDED/UPDATED */
    uint64_t bar_gen, bar_ver; /* dropped for good at or below this */
    bool visible;
};

/* A start, crash or restart, for regsim_explain. */
struct rs_life {
    int64_t at;
    uint32_t node;
    uint64_t generation;
    char what; /* 's'tart, 'c'rash, 'r'estart */
};

struct rs_key {
    int32_t owner;
    char *id;
    bool dereg;
    uint64_t dereg_gen, dereg_ver; /* the owner's tombstone */
};

struct rs_node {
    struct regsim *rs;
    uint32_t index;
    struct shoal_registry *reg;
    uint64_t generation;
    uint64_t life; /* bumped at every start and crash: stale connections */
    int64_t deadline;
    int32_t seed_node; /* JOINED -> sync_with(seed) */
    uint32_t max_dgram_payload;
    int64_t stuck_at;
    uint64_t last_open_conn; /* node.c: later parts follow the stream they opened */
    int32_t last_open_dst;
    /* Persisted at the crash. */
    struct shoal_instance *saved;
    size_t n_saved;
    uint64_t saved_version;
    /* Oracle mirror. */
    struct rs_seen *seen;
    size_t seen_cap, visible;
    char name[SHOAL_NAME_MAX];
    struct shoal_addr addr;
};

struct regsim {
    struct sim *sim;
    size_t n;
    int64_t now;
    struct shoal_registry_config base;
    struct rs_node *nodes;
    uint8_t *block;
    struct shoal_rng net_rng;
    uint32_t lat_min, lat_max, bandwidth, dup_max_ms;
    double loss, dup;

    struct rs_item *heap;
    size_t heap_len, heap_cap;
    uint64_t next_seq;
    int64_t min_deadline;

    struct rs_conn *conns;
    size_t n_conns, cap_conns;

    struct rs_key *keys;
    size_t n_keys, cap_keys;
    uint32_t *kidx; /* open addressing: key index + 1, 0 = empty */
    size_t kcap;

    struct rs_life *lives;
    size_t n_lives, cap_lives;

    size_t ev_seen;
    int32_t bad_node, bad_owner; /* the pair of the last failed check */
    enum rs_ctx ctx;
    struct regsim_net_stats stats;
    struct regsim_oracle_stats ostats;
    struct shoal_registry_stats dead_stats; /* of cores that crashed */
    char first_violation[256];
    uint64_t trace;
    regsim_observer_fn observer;
    void *observer_ud;

    uint8_t *scratch;
    const struct shoal_instance **qbuf;
    size_t qcap;

    /* Authority (regsim_enable_authority): one key per node, one table. */
    struct shoal_identity *ids;
    struct shoal_principals principals;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rs_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void rs_trace_add(struct regsim *rs, uint64_t v)
{
    rs->trace = rs_mix(rs->trace ^ v) + 0x9e3779b97f4a7c15ULL;
}

static uint64_t rs_fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void *rs_xrealloc(void *p, size_t size, const char *what)
{
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        fprintf(stderr, "regsim: out of memory (%s)\n", what);
        abort();
    }
    return q;
}

/* (g1, v1) <= (g2, v2), ordered by generation then version. */
static bool rs_le(uint64_t g1, uint64_t v1, uint64_t g2, uint64_t v2)
{
    return g1 < g2 || (g1 == g2 && v1 <= v2);
}

static void rs_violation(struct regsim *rs, const char *fmt, const char *node, const char *owner,
                         const char *id, uint64_t g, uint64_t v, uint64_t bg, uint64_t bv)
{
    if (rs->first_violation[0])
        return;
    snprintf(rs->first_violation, sizeof(rs->first_violation),
             "%s: %s holds %s/%s at (gen %llu, v%llu), bar (gen %llu, v%llu), t=%lld ms", fmt, node,
             owner, id ? id : "-", (unsigned long long)g, (unsigned long long)v,
             (unsigned long long)bg, (unsigned long long)bv, (long long)rs->now);
}

static int rs_addr_index(const struct regsim *rs, const struct shoal_addr *a)
{
    if (a->family != 4 || a->ip[0] != 127 || a->ip[1] != 0 || a->ip[2] != 0 || a->ip[3] != 1)
        return -1;
    if (a->port < SIM_BASE_PORT || (size_t)(a->port - SIM_BASE_PORT) >= rs->n)
        return -1;
    return a->port - SIM_BASE_PORT;
}

static bool rs_blocked(const struct regsim *rs, size_t from, size_t to)
{
    return rs->block[from * rs->n + to] != 0;
}

static uint32_t rs_latency(struct regsim *rs)
{
    return rs->lat_min + shoal_rng_below(&rs->net_rng, rs->lat_max - rs->lat_min + 1);
}

/* ---- heap ---------------------------------------------------------------- */

static bool rs_before(const struct rs_item *a, const struct rs_item *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void rs_push(struct regsim *rs, struct rs_item it)
{
    if (rs->heap_len == rs->heap_cap) {
        rs->heap_cap = rs->heap_cap ? rs->heap_cap * 2 : 1024;
        rs->heap = rs_xrealloc(rs->heap, rs->heap_cap * sizeof(*rs->heap), "heap");
    }
    it.seq = rs->next_seq++;
    size_t i = rs->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!rs_before(&it, &rs->heap[parent]))
            break;
        rs->heap[i] = rs->heap[parent];
        i = parent;
    }
    rs->heap[i] = it;
}

static struct rs_item rs_pop(struct regsim *rs)
{
    struct rs_item top = rs->heap[0];
    struct rs_item last = rs->heap[--rs->heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= rs->heap_len)
            break;
        if (c + 1 < rs->heap_len && rs_before(&rs->heap[c + 1], &rs->heap[c]))
            c++;
        if (!rs_before(&rs->heap[c], &last))
            break;
        rs->heap[i] = rs->heap[c];
        i = c;
    }
    if (rs->heap_len > 0)
        rs->heap[i] = last;
    return top;
}

/* ---- instance keys (owner, id) ------------------------------------------- */

static uint64_t rs_key_hash(int32_t owner, const char *id)
{
    return rs_mix(rs_fnv(id, strlen(id)) ^ ((uint64_t)(uint32_t)owner << 20));
}

static int32_t rs_key_find(const struct regsim *rs, int32_t owner, const char *id)
{
    if (!rs->kcap)
        return -1;
    for (size_t i = rs_key_hash(owner, id) & (rs->kcap - 1);; i = (i + 1) & (rs->kcap - 1)) {
        uint32_t k = rs->kidx[i];
        if (!k)
            return -1;
        const struct rs_key *key = &rs->keys[k - 1];
        if (key->owner == owner && strcmp(key->id, id) == 0)
            return (int32_t)(k - 1);
    }
}

static void rs_key_slot(struct regsim *rs, uint32_t k)
{
    const struct rs_key *key = &rs->keys[k];
    size_t i = rs_key_hash(key->owner, key->id) & (rs->kcap - 1);
    while (rs->kidx[i])
        i = (i + 1) & (rs->kcap - 1);
    rs->kidx[i] = k + 1;
}

static int32_t rs_key_get(struct regsim *rs, int32_t owner, const char *id)
{
    int32_t k = rs_key_find(rs, owner, id);
    if (k >= 0)
        return k;
    if ((rs->n_keys + 1) * 2 > rs->kcap) {
        free(rs->kidx);
        rs->kcap = rs->kcap ? rs->kcap * 2 : 4096;
        rs->kidx = calloc(rs->kcap, sizeof(*rs->kidx));
        if (!rs->kidx) {
            fprintf(stderr, "regsim: out of memory (keys)\n");
            abort();
        }
        for (uint32_t i = 0; i < rs->n_keys; i++)
            rs_key_slot(rs, i);
    }
    if (rs->n_keys == rs->cap_keys) {
        rs->cap_keys = rs->cap_keys ? rs->cap_keys * 2 : 4096;
        rs->keys = rs_xrealloc(rs->keys, rs->cap_keys * sizeof(*rs->keys), "keys");
    }
    struct rs_key *key = &rs->keys[rs->n_keys];
    memset(key, 0, sizeof(*key));
    key->owner = owner;
    key->id = strdup(id);
    if (!key->id) {
        fprintf(stderr, "regsim: out of memory (key id)\n");
        abort();
    }
    rs_key_slot(rs, (uint32_t)rs->n_keys);
    return (int32_t)rs->n_keys++;
}

static struct rs_seen *rs_seen_of(struct rs_node *nd, int32_t k)
{
    if ((size_t)k >= nd->seen_cap) {
        size_t cap = nd->seen_cap ? nd->seen_cap : 1024;
        while (cap <= (size_t)k)
            cap *= 2;
        nd->seen = rs_xrealloc(nd->seen, cap * sizeof(*nd->seen), "mirror");
        memset(nd->seen + nd->seen_cap, 0, (cap - nd->seen_cap) * sizeof(*nd->seen));
        nd->seen_cap = cap;
    }
    return &nd->seen[k];
}

/* The instance (owner, id) as reg serves it (any health, any owner
 * status), or NULL. */
static const struct shoal_instance *rs_lookup(struct regsim *rs, const struct shoal_registry *reg,
                                              const char *service, const char *owner,
                                              const char *id)
{
    struct shoal_query q = {.service = service, .all = true};
    size_t n;
    while ((n = shoal_registry_query(reg, &q, rs->qbuf, rs->qcap)) > rs->qcap) {
        rs->qcap = n * 2;
        rs->qbuf = rs_xrealloc(rs->qbuf, rs->qcap * sizeof(*rs->qbuf), "query");
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(rs->qbuf[i]->owner, owner) == 0 && strcmp(rs->qbuf[i]->id, id) == 0)
            return rs->qbuf[i];
    return NULL;
}

/* ---- callbacks from the registry cores ----------------------------------- */

static void rs_on_changed(void *ud, const struct shoal_reg_change *c)
{
    struct rs_node *nd = ud;
    struct regsim *rs = nd->rs;
    uint64_t gen = 0, ver = 0;

    rs->ostats.changes++;
    rs_trace_add(rs, 0xc4a9e000ULL ^ ((uint64_t)c->kind << 8) ^ nd->index);
    if (c->kind != SHOAL_REG_OWNER) {
        int32_t owner = sim_name_index(rs->sim, c->owner);
        int32_t k = owner < 0 ? -1 : rs_key_find(rs, owner, c->id);
        rs_trace_add(rs, rs_fnv(c->id, strlen(c->id)) ^ (uint64_t)(uint32_t)owner);
        if (k < 0) {
            rs->ostats.phantoms++;
            rs_violation(rs, "phantom (never registered)", nd->name, c->owner, c->id, 0, 0, 0, 0);
        } else {
            struct rs_key *key = &rs->keys[k];
            struct rs_seen *s = rs_seen_of(nd, k);
            if (c->kind == SHOAL_REG_ADDED || c->kind == SHOAL_REG_UPDATED) {
                const struct shoal_instance *in =
                    rs_lookup(rs, nd->reg, c->service, c->owner, c->id);
                if (!in) {
                    rs->ostats.lookup_misses++;
                    rs_violation(rs, "notified but not served", nd->name, c->owner, c->id, 0, 0, 0,
                                 0);
                } else {
                    gen = in->generation;
                    ver = in->version;
                    if (s->bar_gen && rs_le(gen, ver, s->bar_gen, s->bar_ver)) {
                        rs->ostats.comebacks++;
                        rs_violation(rs, "came back after it was dropped for good", nd->name,
                                     c->owner, c->id, gen, ver, s->bar_gen, s->bar_ver);
                    }
                    if (s->visible && rs_le(gen, ver, s->gen, s->ver)) {
                        rs->ostats.backwards++;
                        rs_violation(rs, "updated to an older version", nd->name, c->owner, c->id,
                                     gen, ver, s->gen, s->ver);
                    }
                    s->gen = gen;
                    s->ver = ver;
                    if (!s->visible) {
                        s->visible = true;
                        nd->visible++;
                    }
                    rs_trace_add(rs, gen ^ (ver << 16));
                }
            } else if (c->kind == SHOAL_REG_REMOVED) {
                if (s->visible) {
                    s->visible = false;
                    nd->visible--;
                }
                if (c->own) {
                    /* Our own instance removed: a deregistration (API,
                     * TTL or leave); its tombstone carries our version. */
                    key->dereg = true;
                    key->dereg_gen = nd->generation;
                    key->dereg_ver = shoal_registry_own_version(nd->reg);
                    rs->ostats.deregistrations++;
                }
                /* Final: a deregistration (the owner's tombstone), and
                 * an older generation (the owner restarted). A reap, a
                 * sweep or a membership wipe of a live owner's instance in
                 * its current generation is undone by anti-entropy when the
                 * owner is alive again (re-convergence is unconditional). */
                if (c->own || owner < 0 || s->gen < rs->nodes[owner].generation) {
                    if (!rs_le(s->gen, s->ver, s->bar_gen, s->bar_ver)) {
                        s->bar_gen = s->gen;
                        s->bar_ver = s->ver;
                    }
                    if (key->dereg && s->gen == key->dereg_gen &&
                        !rs_le(key->dereg_gen, key->dereg_ver, s->bar_gen, s->bar_ver)) {
                        s->bar_gen = key->dereg_gen;
                        s->bar_ver = key->dereg_ver;
                    }
                }
            }
        }
    }
    if (rs->observer)
        rs->observer(rs->observer_ud, nd->index, c, gen, ver, rs->now);
}

static size_t rs_on_peers(void *ud, size_t k, struct shoal_addr *out)
{
    struct rs_node *nd = ud;
    struct shoal_swim *sw = sim_swim(nd->rs->sim, nd->index);
    return sw ? shoal_swim_random_members(sw, k, out) : 0;
}

static bool rs_on_member_addr(void *ud, const char *name, struct shoal_addr *out)
{
    struct rs_node *nd = ud;
    struct shoal_swim *sw = sim_swim(nd->rs->sim, nd->index);
    struct shoal_member_info m;
    if (!sw || !shoal_swim_member_find(sw, name, &m) ||
        (m.status != SHOAL_ALIVE && m.status != SHOAL_SUSPECT))
        return false;
    *out = m.addr;
    return true;
}

static bool rs_conn_alive(const struct regsim *rs, const struct rs_conn *c)
{
    const struct rs_node *a = &rs->nodes[c->a], *b = &rs->nodes[c->b];
    return !c->broken && a->reg && b->reg && a->life == c->a_life && b->life == c->b_life;
}

static void rs_send_stream(struct regsim *rs, struct rs_node *nd, const struct shoal_reg_peer *to,
                           const struct shoal_reg_msg *m, uint32_t len)
{
    uint64_t id = to->conn;
    int dst = rs_addr_index(rs, &to->addr);
    /* node.c: later parts of a message that opened a stream follow it. */
    if (id == 0 && m->part > 0 && nd->last_open_conn && nd->last_open_dst == dst &&
        rs_conn_alive(rs, &rs->conns[nd->last_open_conn - 1]))
        id = nd->last_open_conn;
    struct rs_conn *c;
    int64_t earliest = rs->now;
    if (id == 0) {
        if (dst < 0) {
            rs->stats.unroutable++;
            return;
        }
        if (!rs->nodes[dst].reg || rs_blocked(rs, nd->index, (size_t)dst) ||
            rs_blocked(rs, (size_t)dst, nd->index)) {
            rs->stats.connect_failed++;
            return;
        }
        if (rs->n_conns == rs->cap_conns) {
            rs->cap_conns = rs->cap_conns ? rs->cap_conns * 2 : 256;
            rs->conns = rs_xrealloc(rs->conns, rs->cap_conns * sizeof(*rs->conns), "conns");
        }
        c = &rs->conns[rs->n_conns++];
        *c = (struct rs_conn){
            .a = nd->index, .b = (uint32_t)dst, .a_life = nd->life, .b_life = rs->nodes[dst].life};
        id = rs->n_conns;
        nd->last_open_conn = id;
        nd->last_open_dst = dst;
        rs->stats.streams_opened++;
        /* SYN, SYN-ACK: the data leaves with the handshake's last ACK. */
        earliest = rs->now + rs_latency(rs) + rs_latency(rs);
    } else {
        if (id > rs->n_conns) {
            rs->stats.bad_conn++;
            return;
        }
        c = &rs->conns[id - 1];
        if (c->a != nd->index && c->b != nd->index) {
            rs->stats.bad_conn++;
            return;
        }
        if (!rs_conn_alive(rs, c)) {
            rs->stats.stream_msgs_lost++;
            return;
        }
    }
    int dir = c->a == nd->index ? 0 : 1;
    uint32_t peer = dir == 0 ? c->b : c->a;
    if (rs_blocked(rs, nd->index, peer) || rs_blocked(rs, peer, nd->index)) {
        c->broken = true;
        rs->stats.stream_msgs_lost++;
        return;
    }
    int64_t at = rs->now + rs_latency(rs);
    if (at < earliest)
        at = earliest;
    if (at < c->free_at[dir])
        at = c->free_at[dir];
    at += len / rs->bandwidth;
    c->free_at[dir] = at;
    uint8_t *buf = rs_xrealloc(NULL, len, "message");
    memcpy(buf, rs->scratch, len);
    rs->stats.stream_msgs_sent++;
    rs->stats.stream_bytes += len;
    if (len > rs->stats.max_frame)
        rs->stats.max_frame = len;
    rs_push(rs, (struct rs_item){.at = at,
                                 .buf = buf,
                                 .len = len,
                                 .src = (int32_t)nd->index,
                                 .dst = (int32_t)peer,
                                 .conn = id});
}

static void rs_on_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    struct rs_node *nd = ud;
    struct regsim *rs = nd->rs;
    /* node.c: gossip only by datagram, anti-entropy only on streams. */
    if (to->stream != (m->type != SHOAL_REG_GOSSIP)) {
        rs->stats.wrong_transport++;
        return;
    }
    size_t cap = to->stream ? SHOAL_STREAM_FRAME_MAX - SHOAL_ENVELOPE_BYTES : nd->max_dgram_payload;
    int len = shoal_wire_encode_reg(m, rs->scratch, cap);
    if (len < 0) {
        if (len == SHOAL_ETOOBIG)
            rs->stats.too_big++;
        else
            rs->stats.encode_errors++;
        return;
    }
    if (to->stream) {
        rs_send_stream(rs, nd, to, m, (uint32_t)len);
        return;
    }
    rs->stats.dgrams_sent++;
    if ((uint64_t)len > rs->stats.max_dgram)
        rs->stats.max_dgram = (uint64_t)len;
    int dst = rs_addr_index(rs, &to->addr);
    if (dst < 0) {
        rs->stats.unroutable++;
        return;
    }
    if (rs_blocked(rs, nd->index, (size_t)dst)) {
        rs->stats.dgrams_blocked++;
        return;
    }
    if (rs->loss > 0 && shoal_rng_unit(&rs->net_rng) < rs->loss) {
        rs->stats.dgrams_lost++;
        return;
    }
    uint8_t *buf = rs_xrealloc(NULL, (size_t)len, "message");
    memcpy(buf, rs->scratch, (size_t)len);
    rs_push(rs, (struct rs_item){.at = rs->now + rs_latency(rs),
                                 .buf = buf,
                                 .len = (uint32_t)len,
                                 .src = (int32_t)nd->index,
                                 .dst = dst});
    if (rs->dup > 0 && shoal_rng_unit(&rs->net_rng) < rs->dup) {
        /* A copy that turns up much later (UDP may duplicate and reorder):
         * by then its events may be old news, even deregistered. */
        uint8_t *copy = rs_xrealloc(NULL, (size_t)len, "message");
        memcpy(copy, rs->scratch, (size_t)len);
        rs->stats.dgrams_duplicated++;
        rs_push(rs, (struct rs_item){.at = rs->now + rs_latency(rs) +
                                           shoal_rng_below(&rs->net_rng, rs->dup_max_ms + 1),
                                     .buf = copy,
                                     .len = (uint32_t)len,
                                     .src = (int32_t)nd->index,
                                     .dst = dst});
    }
}

/* ---- scheduling ---------------------------------------------------------- */

static void rs_rearm(struct regsim *rs, struct rs_node *nd)
{
    nd->deadline = nd->reg ? shoal_registry_next_deadline(nd->reg) : RS_NEVER;
    if (nd->deadline < rs->min_deadline)
        rs->min_deadline = nd->deadline;
}

static void rs_tick_due(struct regsim *rs)
{
    int64_t min = RS_NEVER;
    for (size_t i = 0; i < rs->n; i++) {
        struct rs_node *nd = &rs->nodes[i];
        if (nd->reg && nd->deadline <= rs->now) {
            rs->ctx = RS_CTX_TICK;
            shoal_registry_tick(nd->reg, rs->now);
            rs->ctx = RS_CTX_NONE;
            nd->deadline = shoal_registry_next_deadline(nd->reg);
            /* node.c counts a tick that leaves the deadline at or before
             * now as stuck and retries a millisecond later. */
            if (nd->deadline <= rs->now && nd->stuck_at != rs->now) {
                nd->stuck_at = rs->now;
                rs->stats.stuck_deadlines++;
            }
        }
        if (nd->deadline < min)
            min = nd->deadline;
    }
    rs->min_deadline = min;
}

static void rs_deliver(struct regsim *rs, const struct rs_item *it)
{
    struct rs_node *dst = &rs->nodes[it->dst];
    struct shoal_reg_peer src = {.addr = rs->nodes[it->src].addr};
    if (it->conn) {
        struct rs_conn *c = &rs->conns[it->conn - 1];
        if (!rs_conn_alive(rs, c) || rs_blocked(rs, c->a, c->b) || rs_blocked(rs, c->b, c->a)) {
            c->broken = true;
            rs->stats.stream_msgs_lost++;
            return;
        }
        src.conn = it->conn;
        src.stream = true;
    } else if (!dst->reg) {
        rs->stats.dgrams_to_down++;
        return;
    }
    struct shoal_reg_msg m;
    const char *bad = NULL;
    if (shoal_wire_decode_reg(it->buf, it->len, &m, &bad) != 0) {
        rs->stats.decode_errors++;
        return;
    }
    if (src.stream != (m.type != SHOAL_REG_GOSSIP)) {
        rs->stats.wrong_transport++;
        shoal_reg_msg_free(&m);
        return;
    }
    if (src.stream) {
        rs->stats.stream_msgs_delivered++;
    } else {
        rs->stats.dgrams_delivered++;
        rs->stats.dgram_bytes += it->len;
    }
    rs_trace_add(rs, ((uint64_t)it->at << 24) ^ ((uint64_t)(uint32_t)it->src << 12) ^
                         (uint32_t)it->dst);
    rs_trace_add(rs, rs_fnv(it->buf, it->len));
    rs->ctx = RS_CTX_RECV;
    shoal_registry_recv(dst->reg, rs->now, &src, &m);
    rs->ctx = RS_CTX_NONE;
    shoal_reg_msg_free(&m);
    rs_rearm(rs, dst);
}

/* Feeds every swim event recorded since the last call to its observer's
 * registry, as node.c's node_event_registry() does. */
static void rs_drain_events(struct regsim *rs)
{
    size_t n;
    const struct sim_event_rec *ev = sim_events(rs->sim, &n);
    for (; rs->ev_seen < n; rs->ev_seen++) {
        const struct sim_event_rec *r = &ev[rs->ev_seen];
        struct rs_node *nd = &rs->nodes[r->observer];
        if (!nd->reg)
            continue;
        if (r->type != SHOAL_EV_JOINED && r->type != SHOAL_EV_CONFLICT && r->subject < 0) {
            rs->stats.unroutable++; /* a member sim_util cannot name */
            continue;
        }
        const char *owner = r->subject >= 0 ? rs->nodes[r->subject].name : "";
        switch (r->type) {
        case SHOAL_EV_MEMBER_JOIN:
        case SHOAL_EV_MEMBER_STATUS:
            rs->ctx = RS_CTX_STATUS;
            shoal_registry_owner_status(nd->reg, r->at_ms, owner, r->status, r->generation);
            break;
        case SHOAL_EV_MEMBER_REAPED:
            rs->ctx = RS_CTX_STATUS;
            shoal_registry_owner_status(nd->reg, r->at_ms, owner, SHOAL_LEFT, r->generation);
            break;
        case SHOAL_EV_JOINED:
            rs->ctx = RS_CTX_LOCAL;
            if (nd->seed_node >= 0)
                shoal_registry_sync_with(nd->reg, r->at_ms, &rs->nodes[nd->seed_node].addr);
            break;
        default:
            break;
        }
        rs->ctx = RS_CTX_NONE;
        rs_rearm(rs, nd);
    }
}

/* One millisecond: swim, its events, registry deliveries, registry ticks. */
static void rs_step(struct regsim *rs, int64_t t)
{
    sim_run_until(rs->sim, t);
    rs->now = t;
    rs_drain_events(rs);
    while (rs->heap_len > 0 && rs->heap[0].at <= t) {
        struct rs_item it = rs_pop(rs);
        rs_deliver(rs, &it);
        free(it.buf);
    }
    if (rs->min_deadline <= t)
        rs_tick_due(rs);
}

/* ---- setup --------------------------------------------------------------- */

struct regsim *regsim_new(uint64_t seed, size_t n)
{
    struct regsim *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    rs->n = n;
    rs->sim = sim_new(seed, n);
    rs->nodes = calloc(n ? n : 1, sizeof(*rs->nodes));
    rs->block = calloc(n ? n * n : 1, 1);
    rs->scratch = malloc(RS_SCRATCH);
    if (!rs->sim || !rs->nodes || !rs->block || !rs->scratch) {
        regsim_free(rs);
        return NULL;
    }
    shoal_registry_config_defaults(&rs->base);
    shoal_rng_seed(&rs->net_rng, rs_mix(seed ^ 0x72656773696dULL));
    rs->lat_min = 1;
    rs->lat_max = 10;
    sim_set_latency(rs->sim, rs->lat_min, rs->lat_max);
    rs->bandwidth = RS_DEFAULT_BANDWIDTH;
    rs->min_deadline = RS_NEVER;
    rs->bad_node = rs->bad_owner = -1;
    rs->trace = rs_mix(seed ^ 0x5e9);
    for (size_t i = 0; i < n; i++) {
        struct rs_node *nd = &rs->nodes[i];
        nd->rs = rs;
        nd->index = (uint32_t)i;
        nd->deadline = RS_NEVER;
        nd->seed_node = -1;
        nd->last_open_dst = -1;
        nd->stuck_at = INT64_MIN;
        snprintf(nd->name, sizeof(nd->name), "n%zu", i);
        nd->addr.family = 4;
        nd->addr.ip[0] = 127;
        nd->addr.ip[3] = 1;
        nd->addr.port = (uint16_t)(SIM_BASE_PORT + i);
    }
    return rs;
}

static void rs_free_saved(struct rs_node *nd)
{
    for (size_t k = 0; k < nd->n_saved; k++)
        shoal_instance_clear(&nd->saved[k]);
    free(nd->saved);
    nd->saved = NULL;
    nd->n_saved = 0;
}

void regsim_free(struct regsim *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; rs->nodes && i < rs->n; i++) {
        shoal_registry_free(rs->nodes[i].reg);
        rs_free_saved(&rs->nodes[i]);
        free(rs->nodes[i].seen);
    }
    for (size_t i = 0; i < rs->heap_len; i++)
        free(rs->heap[i].buf);
    for (size_t i = 0; i < rs->n_keys; i++)
        free(rs->keys[i].id);
    if (rs->sim)
        sim_free(rs->sim);
    free(rs->heap);
    free(rs->lives);
    free(rs->conns);
    free(rs->keys);
    free(rs->kidx);
    free(rs->nodes);
    free(rs->block);
    free(rs->scratch);
    if (rs->ids) {
        explicit_bzero(rs->ids, rs->n * sizeof(*rs->ids));
        free(rs->ids);
        shoal_principals_close(&rs->principals);
    }
    free(rs->qbuf);
    free(rs);
}

struct sim *regsim_sim(struct regsim *rs) { return rs->sim; }

struct shoal_registry_config *regsim_base_config(struct regsim *rs) { return &rs->base; }

size_t regsim_size(const struct regsim *rs) { return rs->n; }

uint64_t regsim_seed(const struct regsim *rs) { return sim_seed(rs->sim); }

int64_t regsim_now(const struct regsim *rs) { return rs->now; }

void regsim_set_observer(struct regsim *rs, regsim_observer_fn fn, void *ud)
{
    rs->observer = fn;
    rs->observer_ud = ud;
}

void regsim_set_latency(struct regsim *rs, uint32_t min_ms, uint32_t max_ms)
{
    rs->lat_min = min_ms;
    rs->lat_max = max_ms < min_ms ? min_ms : max_ms;
    sim_set_latency(rs->sim, rs->lat_min, rs->lat_max);
}

void regsim_set_loss(struct regsim *rs, double p)
{
    rs->loss = p;
    sim_set_loss(rs->sim, p);
}

void regsim_set_duplication(struct regsim *rs, double p, uint32_t max_delay_ms)
{
    rs->dup = p;
    rs->dup_max_ms = max_delay_ms;
}

void regsim_set_bandwidth(struct regsim *rs, uint32_t bytes_per_ms)
{
    rs->bandwidth = bytes_per_ms ? bytes_per_ms : 1;
}

void regsim_partition(struct regsim *rs, const int *group)
{
    sim_partition(rs->sim, group);
    for (size_t a = 0; a < rs->n; a++)
        for (size_t b = 0; b < rs->n; b++)
            rs->block[a * rs->n + b] = group[a] != group[b];
}

void regsim_heal(struct regsim *rs)
{
    sim_heal(rs->sim);
    memset(rs->block, 0, rs->n * rs->n);
}

/* ---- authority ----------------------------------------------------------- */

static int rs_sign(void *ud, const struct shoal_instance *ev, uint8_t sig[SHOAL_REG_SIG_BYTES])
{
    struct rs_node *nd = ud;
    return shoal_statement_sign_event(ev, nd->rs->ids[nd->index].sk, sig);
}

static bool rs_verify(void *ud, const struct shoal_instance *ev, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_event(ev, pk);
}

static void rs_hash(void *ud, const struct shoal_instance *ev, uint8_t out[32])
{
    (void)ud;
    if (shoal_statement_event_hash(ev, out) != 0)
        memset(out, 0, 32);
}

static void rs_root(void *ud, const uint8_t (*h)[32], size_t n, uint8_t root[32])
{
    (void)ud;
    shoal_statement_set_root(h, n, root);
}

static int rs_sign_proof(void *ud, struct shoal_reg_proof *p)
{
    struct rs_node *nd = ud;
    shoal_statement_sign_proof(p, nd->rs->ids[nd->index].sk);
    return 0;
}

static bool rs_verify_proof(void *ud, const struct shoal_reg_proof *p, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_proof(p, pk);
}

int regsim_enable_authority(struct regsim *rs)
{
    if (rs->ids)
        return SHOAL_ESTATE;
    rs->ids = rs_xrealloc(NULL, rs->n * sizeof(*rs->ids), "identities");
    shoal_principals_init(&rs->principals, 0);
    for (size_t i = 0; i < rs->n; i++) {
        struct shoal_principal p;
        shoal_identity_generate(&rs->ids[i]);
        memset(&p, 0, sizeof(p));
        memcpy(p.name, rs->nodes[i].name, sizeof(p.name));
        memcpy(p.pk, rs->ids[i].pk, sizeof(p.pk));
        p.not_after = UINT64_MAX;
        if (shoal_principals_put(&rs->principals, &p, false) != 0)
            return SHOAL_ENOMEM;
    }
    rs->base.principals = &rs->principals;
    rs->base.sign = rs_sign;
    rs->base.verify = rs_verify;
    rs->base.event_hash = rs_hash;
    rs->base.set_root = rs_root;
    rs->base.sign_proof = rs_sign_proof;
    rs->base.verify_proof = rs_verify_proof;
    return 0;
}

int regsim_set_scope(struct regsim *rs, size_t i, const char *pattern)
{
    const struct shoal_principal *old = shoal_principals_get(&rs->principals, rs->nodes[i].name);
    if (!old)
        return SHOAL_ENOENT;
    struct shoal_principal p = *old;
    snprintf(p.scopes[0], sizeof(p.scopes[0]), "%s", pattern);
    p.n_scopes = 1;
    if (shoal_scope_check(p.scopes[0]) != 0)
        return SHOAL_EINVAL;
    return shoal_principals_put(&rs->principals, &p, false);
}

int regsim_sign_as(struct regsim *rs, size_t i, struct shoal_instance *ev)
{
    if (!rs->ids)
        return SHOAL_ESTATE;
    int rc = shoal_statement_sign_event(ev, rs->ids[i].sk, ev->sig);
    ev->has_sig = rc == 0;
    return rc;
}

const char *regsim_name(const struct regsim *rs, size_t i)
{
    return rs->nodes[i].name;
}

int regsim_inject(struct regsim *rs, size_t from, size_t to, const struct shoal_instance *evs,
                  uint32_t n)
{
    struct shoal_reg_msg m;
    memset(&m, 0, sizeof(m));
    m.type = SHOAL_REG_GOSSIP;
    memcpy(m.from, rs->nodes[from].name, sizeof(m.from));
    m.events = (struct shoal_instance *)(uintptr_t)evs;
    m.n_events = n;
    int len = shoal_wire_encode_reg(&m, rs->scratch, rs->nodes[from].max_dgram_payload
                                                         ? rs->nodes[from].max_dgram_payload
                                                         : 1228);
    if (len < 0)
        return len;
    uint8_t *buf = rs_xrealloc(NULL, (size_t)len, "message");
    memcpy(buf, rs->scratch, (size_t)len);
    rs->stats.dgrams_sent++;
    rs_push(rs, (struct rs_item){.at = rs->now + rs_latency(rs),
                                 .buf = buf,
                                 .len = (uint32_t)len,
                                 .src = (int32_t)from,
                                 .dst = (int32_t)to});
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

/* A registry for node nd at generation gen, configured as node.c does. */
static int rs_new_registry(struct regsim *rs, struct rs_node *nd, uint64_t gen)
{
    const struct shoal_swim_config *sc = sim_base_config(rs->sim);
    struct shoal_registry_config c = rs->base;
    memcpy(c.self, nd->name, sizeof(c.self));
    c.generation = gen;
    c.gossip_interval_ms = sc->gossip_interval_ms;
    c.gossip_fanout = sc->gossip_fanout;
    c.retransmit_mult = sc->retransmit_mult;
    c.max_datagram = sc->max_datagram;
    c.ud = nd;
    c.send = rs_on_send;
    c.peers = rs_on_peers;
    c.changed = rs_on_changed;
    c.member_addr = rs_on_member_addr;
    int err = 0;
    nd->reg = shoal_registry_new(&c, &err);
    if (!nd->reg)
        return err ? err : SHOAL_ENOMEM;
    nd->generation = gen;
    nd->max_dgram_payload =
        c.max_datagram > SHOAL_ENVELOPE_BYTES ? c.max_datagram - SHOAL_ENVELOPE_BYTES : 0;
    nd->visible = 0;
    if (nd->seen)
        memset(nd->seen, 0, nd->seen_cap * sizeof(*nd->seen));
    nd->life++;
    nd->last_open_conn = 0;
    nd->last_open_dst = -1;
    return 0;
}

static void rs_life_log(struct regsim *rs, size_t i, char what)
{
    if (rs->n_lives == rs->cap_lives) {
        rs->cap_lives = rs->cap_lives ? rs->cap_lives * 2 : 256;
        rs->lives = rs_xrealloc(rs->lives, rs->cap_lives * sizeof(*rs->lives), "lives");
    }
    rs->lives[rs->n_lives++] =
        (struct rs_life){rs->now, (uint32_t)i, rs->nodes[i].generation, what};
}

static void rs_stats_add(struct shoal_registry_stats *sum, const struct shoal_registry_stats *t)
{
    sum->events_applied += t->events_applied;
    sum->events_stale += t->events_stale;
    sum->events_sent += t->events_sent;
    sum->notices_sent += t->notices_sent;
    sum->syncs_started += t->syncs_started;
    sum->syncs_served += t->syncs_served;
    sum->sync_events_sent += t->sync_events_sent;
    sum->sync_events_received += t->sync_events_received;
    sum->tombstones_collected += t->tombstones_collected;
    sum->reaped += t->reaped;
    sum->generation_wipes += t->generation_wipes;
    for (int k = 0; k < SHOAL_REG_REFUSE_COUNT; k++)
        sum->refused[k] += t->refused[k];
    sum->sig_verified += t->sig_verified;
    sum->proofs_sent += t->proofs_sent;
    sum->proofs_verified += t->proofs_verified;
    sum->proofs_failed += t->proofs_failed;
    sum->events_by_proof += t->events_by_proof;
    sum->floor_refusals += t->floor_refusals;
    sum->owner_syncs += t->owner_syncs;
    sum->verified += t->verified;
    sum->verify_timeouts += t->verify_timeouts;
    sum->swept += t->swept;
    sum->regossiped += t->regossiped;
}

static void rs_drop_registry(struct regsim *rs, struct rs_node *nd)
{
    rs_stats_add(&rs->dead_stats, shoal_registry_stats(nd->reg));
    shoal_registry_free(nd->reg);
    nd->reg = NULL;
    nd->life++;
    nd->deadline = RS_NEVER;
    nd->visible = 0;
}

int regsim_start(struct regsim *rs, size_t i, int seed_node)
{
    if (i >= rs->n || rs->nodes[i].reg || sim_node_state(rs->sim, i) != SIM_OFF ||
        (seed_node >= 0 && (size_t)seed_node >= rs->n))
        return SHOAL_ESTATE;
    struct rs_node *nd = &rs->nodes[i];
    rs_drain_events(rs);
    /* node.c: the registry first, so swim's first events reach it. */
    int rc = rs_new_registry(rs, nd, sim_generation(rs->sim, i));
    if (rc)
        return rc;
    nd->seed_node = seed_node;
    rc = sim_start(rs->sim, i, seed_node);
    if (rc) {
        rs_drop_registry(rs, nd);
        rs->stats.start_errors++;
        return rc;
    }
    rs_drain_events(rs);
    rs_rearm(rs, nd);
    rs_life_log(rs, i, 's');
    return 0;
}

int regsim_crash(struct regsim *rs, size_t i)
{
    if (i >= rs->n || !rs->nodes[i].reg)
        return SHOAL_ESTATE;
    struct rs_node *nd = &rs->nodes[i];
    rs_drain_events(rs);
    /* The data dir: our live instances and version counter, as of now. */
    rs_free_saved(nd);
    size_t n = shoal_registry_own(nd->reg, NULL, 0);
    const struct shoal_instance **own = rs_xrealloc(NULL, (n ? n : 1) * sizeof(*own), "own");
    n = shoal_registry_own(nd->reg, own, n);
    nd->saved = calloc(n ? n : 1, sizeof(*nd->saved));
    if (!nd->saved) {
        fprintf(stderr, "regsim: out of memory (saved)\n");
        abort();
    }
    for (size_t k = 0; k < n; k++) {
        if (shoal_instance_copy(&nd->saved[k], own[k]) != 0) {
            fprintf(stderr, "regsim: out of memory (saved instance)\n");
            abort();
        }
    }
    free(own);
    nd->n_saved = n;
    nd->saved_version = shoal_registry_own_version(nd->reg);
    int rc = sim_crash(rs->sim, i);
    if (rc)
        return rc;
    rs_drop_registry(rs, nd);
    rs_life_log(rs, i, 'c');
    rs_trace_add(rs, 0xc2a5ULL ^ ((uint64_t)i << 16));
    return 0;
}

int regsim_restart(struct regsim *rs, size_t i, int seed_node)
{
    if (i >= rs->n || rs->nodes[i].reg || sim_node_state(rs->sim, i) != SIM_CRASHED ||
        (seed_node >= 0 && (size_t)seed_node >= rs->n))
        return SHOAL_ESTATE;
    struct rs_node *nd = &rs->nodes[i];
    rs_drain_events(rs);
    uint64_t gen = sim_generation(rs->sim, i) + 1; /* what sim_restart will use */
    int rc = rs_new_registry(rs, nd, gen);
    if (rc)
        return rc;
    nd->seed_node = seed_node;
    rc = sim_restart(rs->sim, i, seed_node);
    if (rc || sim_generation(rs->sim, i) != gen) {
        rs_drop_registry(rs, nd);
        rs->stats.start_errors++;
        return rc ? rc : SHOAL_ESTATE;
    }
    rs_drain_events(rs);
    rs->ctx = RS_CTX_LOCAL;
    rc = shoal_registry_restore(nd->reg, rs->now, nd->saved, nd->n_saved, nd->saved_version);
    rs->ctx = RS_CTX_NONE;
    rs_free_saved(nd);
    rs_rearm(rs, nd);
    rs_life_log(rs, i, 'r');
    rs_trace_add(rs, 0x2e57ULL ^ ((uint64_t)i << 16) ^ gen);
    return rc;
}

/* ---- the owner's API ----------------------------------------------------- */

static struct rs_node *rs_live(struct regsim *rs, size_t i)
{
    return i < rs->n && rs->nodes[i].reg ? &rs->nodes[i] : NULL;
}

int regsim_register(struct regsim *rs, size_t i, const struct shoal_instance *spec,
                    const char **why)
{
    struct rs_node *nd = rs_live(rs, i);
    if (!nd)
        return SHOAL_ESTATE;
    if (spec->id)
        rs_key_get(rs, (int32_t)i, spec->id);
    rs->ctx = RS_CTX_LOCAL;
    int rc = shoal_registry_register(nd->reg, rs->now, REGSIM_EPOCH_MS + rs->now, spec, why);
    rs->ctx = RS_CTX_NONE;
    rs_rearm(rs, nd);
    return rc;
}

int regsim_deregister(struct regsim *rs, size_t i, const char *id)
{
    struct rs_node *nd = rs_live(rs, i);
    if (!nd)
        return SHOAL_ESTATE;
    rs->ctx = RS_CTX_LOCAL;
    int rc = shoal_registry_deregister(nd->reg, rs->now, id);
    rs->ctx = RS_CTX_NONE;
    rs_rearm(rs, nd);
    return rc;
}

int regsim_heartbeat(struct regsim *rs, size_t i, const char *id)
{
    struct rs_node *nd = rs_live(rs, i);
    if (!nd)
        return SHOAL_ESTATE;
    rs->ctx = RS_CTX_LOCAL;
    int rc = shoal_registry_heartbeat(nd->reg, rs->now, REGSIM_EPOCH_MS + rs->now, id);
    rs->ctx = RS_CTX_NONE;
    rs_rearm(rs, nd);
    return rc;
}

int regsim_set_health(struct regsim *rs, size_t i, const char *id, uint8_t health)
{
    struct rs_node *nd = rs_live(rs, i);
    if (!nd)
        return SHOAL_ESTATE;
    rs->ctx = RS_CTX_LOCAL;
    int rc = shoal_registry_set_health(nd->reg, rs->now, id, health);
    rs->ctx = RS_CTX_NONE;
    rs_rearm(rs, nd);
    return rc;
}

/* ---- running ------------------------------------------------------------- */

void regsim_run_until(struct regsim *rs, int64_t t_ms)
{
    for (int64_t t = rs->now + 1; t <= t_ms; t++)
        rs_step(rs, t);
}

void regsim_run_for(struct regsim *rs, int64_t dt_ms) { regsim_run_until(rs, rs->now + dt_ms); }

int64_t regsim_run_until_true(struct regsim *rs, int64_t deadline_ms, int64_t step_ms,
                              bool (*pred)(struct regsim *rs, void *ud), void *ud)
{
    for (;;) {
        if (pred(rs, ud))
            return rs->now;
        if (rs->now >= deadline_ms)
            return -1;
        int64_t next = rs->now + step_ms;
        regsim_run_until(rs, next < deadline_ms ? next : deadline_ms);
    }
}

/* ---- views --------------------------------------------------------------- */

struct shoal_registry *regsim_registry(struct regsim *rs, size_t i)
{
    return i < rs->n ? rs->nodes[i].reg : NULL;
}

bool regsim_running(const struct regsim *rs, size_t i)
{
    return i < rs->n && rs->nodes[i].reg != NULL;
}

size_t regsim_visible(const struct regsim *rs, size_t i) { return rs->nodes[i].visible; }

void regsim_registry_stats(const struct regsim *rs, struct shoal_registry_stats *sum)
{
    *sum = rs->dead_stats;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->nodes[i].reg)
            rs_stats_add(sum, shoal_registry_stats(rs->nodes[i].reg));
}

const struct regsim_net_stats *regsim_net_stats(const struct regsim *rs) { return &rs->stats; }

const struct regsim_oracle_stats *regsim_oracle_stats(const struct regsim *rs)
{
    return &rs->ostats;
}

/* Every live instance reg holds (any health, any owner status), sorted by
 * (owner, id). Returns the count; *out is malloc'ed (free it). */
static size_t rs_list(const struct shoal_registry *reg, const struct shoal_instance ***out)
{
    size_t ns = shoal_registry_services(reg, NULL, 0);
    struct shoal_service_summary *sv = rs_xrealloc(NULL, (ns ? ns : 1) * sizeof(*sv), "services");
    ns = shoal_registry_services(reg, sv, ns);
    size_t total = 0;
    for (size_t k = 0; k < ns; k++)
        total += sv[k].total;
    const struct shoal_instance **v = rs_xrealloc(NULL, (total ? total : 1) * sizeof(*v), "list");
    size_t n = 0;
    for (size_t k = 0; k < ns; k++) {
        struct shoal_query q = {.service = sv[k].name, .all = true};
        n += shoal_registry_query(reg, &q, v + n, total - n);
    }
    free(sv);
    *out = v;
    return n;
}

static int rs_by_owner_id(const void *a, const void *b)
{
    const struct shoal_instance *x = *(const struct shoal_instance *const *)a;
    const struct shoal_instance *y = *(const struct shoal_instance *const *)b;
    int c = strcmp(x->owner, y->owner);
    return c ? c : strcmp(x->id, y->id);
}

size_t regsim_stale_held(const struct regsim *rs, char *why, size_t len)
{
    size_t stale = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const struct rs_node *nd = &rs->nodes[i];
        if (!nd->reg)
            continue;
        const struct shoal_instance **v;
        size_t n = rs_list(nd->reg, &v);
        for (size_t k = 0; k < n; k++) {
            int32_t owner = sim_name_index(rs->sim, v[k]->owner);
            int32_t key = owner < 0 ? -1 : rs_key_find(rs, owner, v[k]->id);
            if (key < 0 || !rs->keys[key].dereg)
                continue;
            const struct rs_key *kk = &rs->keys[key];
            if (!rs_le(v[k]->generation, v[k]->version, kk->dereg_gen, kk->dereg_ver))
                continue;
            if (stale++ == 0 && why)
                snprintf(why, len,
                         "%s holds %s/%s live at (gen %llu, v%llu), deregistered at (gen %llu, "
                         "v%llu), t=%lld ms",
                         nd->name, v[k]->owner, v[k]->id, (unsigned long long)v[k]->generation,
                         (unsigned long long)v[k]->version, (unsigned long long)kk->dereg_gen,
                         (unsigned long long)kk->dereg_ver, (long long)rs->now);
        }
        free(v);
    }
    return stale;
}

/* ---- convergence --------------------------------------------------------- */

/* What every replica must hold: each running owner's own live instances. */
static int rs_by_service(const void *a, const void *b)
{
    const struct shoal_instance *x = *(const struct shoal_instance *const *)a;
    const struct shoal_instance *y = *(const struct shoal_instance *const *)b;
    return strcmp(x->service, y->service);
}

static size_t rs_expected(struct regsim *rs, const struct shoal_instance ***out)
{
    size_t total = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->nodes[i].reg)
            total += shoal_registry_own(rs->nodes[i].reg, NULL, 0);
    const struct shoal_instance **v = rs_xrealloc(NULL, (total ? total : 1) * sizeof(*v), "own");
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->nodes[i].reg)
            n += shoal_registry_own(rs->nodes[i].reg, v + n, total - n);
    qsort(v, n, sizeof(*v), rs_by_owner_id);
    *out = v;
    return n;
}

static const char *rs_diff(const struct shoal_instance *a, const struct shoal_instance *b)
{
    if (a->generation != b->generation)
        return "generation";
    if (a->version != b->version)
        return "version";
    if (a->health != b->health)
        return "health";
    if (a->registered_ms != b->registered_ms)
        return "registered_ms";
    if (!shoal_instance_same_spec(a, b))
        return "spec (service, address, port, tags, meta or ttl)";
    return NULL;
}

static bool rs_replica_vs(struct regsim *rs, size_t i, const struct shoal_instance **exp,
                          size_t n_exp, char *why, size_t len)
{
    struct rs_node *nd = &rs->nodes[i];
    const struct shoal_instance **v;
    size_t n = rs_list(nd->reg, &v);
    bool ok = true;
    qsort(v, n, sizeof(*v), rs_by_owner_id);
    size_t a = 0, b = 0;
    while (ok && (a < n || b < n_exp)) {
        int c = a == n ? 1 : b == n_exp ? -1 : rs_by_owner_id(&v[a], &exp[b]);
        if ((c != 0 || rs_diff(v[a], exp[b])) && rs->bad_node < 0) {
            rs->bad_node = (int32_t)i;
            rs->bad_owner = sim_name_index(rs->sim, (c < 0 ? v[a] : exp[b])->owner);
        }
        if (c < 0) {
            snprintf(why, len, "%s holds %s/%s (gen %llu, v%llu) that no running owner has",
                     nd->name, v[a]->owner, v[a]->id, (unsigned long long)v[a]->generation,
                     (unsigned long long)v[a]->version);
            ok = false;
        } else if (c > 0) {
            snprintf(why, len, "%s lacks %s/%s (gen %llu, v%llu)", nd->name, exp[b]->owner,
                     exp[b]->id, (unsigned long long)exp[b]->generation,
                     (unsigned long long)exp[b]->version);
            ok = false;
        } else {
            const char *d = rs_diff(v[a], exp[b]);
            if (d) {
                snprintf(why, len,
                         "%s holds %s/%s with another %s (gen %llu v%llu, owner has "
                         "gen %llu v%llu)",
                         nd->name, v[a]->owner, v[a]->id, d, (unsigned long long)v[a]->generation,
                         (unsigned long long)v[a]->version, (unsigned long long)exp[b]->generation,
                         (unsigned long long)exp[b]->version);
                ok = false;
            }
            a++;
            b++;
        }
    }
    /* The mirror built from notifications says the same. */
    for (size_t k = 0; ok && k < n; k++) {
        int32_t owner = sim_name_index(rs->sim, v[k]->owner);
        int32_t key = owner < 0 ? -1 : rs_key_find(rs, owner, v[k]->id);
        const struct rs_seen *s = key >= 0 && (size_t)key < nd->seen_cap ? &nd->seen[key] : NULL;
        if (!s || !s->visible || s->gen != v[k]->generation || s->ver != v[k]->version) {
            snprintf(why, len, "%s serves %s/%s (gen %llu v%llu) but its notifications said %s",
                     nd->name, v[k]->owner, v[k]->id, (unsigned long long)v[k]->generation,
                     (unsigned long long)v[k]->version,
                     !s || !s->visible ? "it is gone" : "another version");
            ok = false;
        }
    }
    if (ok && nd->visible != n) {
        snprintf(why, len, "%s's notifications count %zu instances, it holds %zu", nd->name,
                 nd->visible, n);
        ok = false;
    }
    /* Every owner is running, so every passing instance must be served. */
    if (ok) {
        size_t ns = shoal_registry_services(nd->reg, NULL, 0);
        struct shoal_service_summary *sv =
            rs_xrealloc(NULL, (ns ? ns : 1) * sizeof(*sv), "services");
        ns = shoal_registry_services(nd->reg, sv, ns); /* sorted by name */
        qsort(v, n, sizeof(*v), rs_by_service);
        size_t j = 0;
        for (size_t k = 0; ok && k < ns; k++) {
            size_t passing = 0;
            while (j < n && strcmp(v[j]->service, sv[k].name) < 0)
                j++;
            for (; j < n && strcmp(v[j]->service, sv[k].name) == 0; j++)
                passing += v[j]->health == SHOAL_PASSING;
            struct shoal_query q = {.service = sv[k].name};
            size_t served = shoal_registry_query(nd->reg, &q, NULL, 0);
            if (sv[k].passing != passing || served != passing) {
                snprintf(why, len, "%s serves %zu (summary %zu) of %zu passing instances of %s",
                         nd->name, served, sv[k].passing, passing, sv[k].name);
                ok = false;
            }
        }
        free(sv);
    }
    free(v);
    return ok;
}

bool regsim_replica_ok(struct regsim *rs, size_t i, char *why, size_t len)
{
    rs->bad_node = rs->bad_owner = -1;
    char dummy[8];
    if (!why) {
        why = dummy;
        len = sizeof(dummy);
    }
    if (!rs->nodes[i].reg) {
        snprintf(why, len, "n%zu is not running", i);
        return false;
    }
    const struct shoal_instance **exp;
    size_t n_exp = rs_expected(rs, &exp);
    bool ok = rs_replica_vs(rs, i, exp, n_exp, why, len);
    free(exp);
    return ok;
}

size_t regsim_divergent(struct regsim *rs, char *why, size_t len)
{
    rs->bad_node = rs->bad_owner = -1;
    char dummy[8];
    const struct shoal_instance **exp;
    size_t n_exp = rs_expected(rs, &exp), bad = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (!rs->nodes[i].reg)
            continue;
        bool first = bad == 0 && why;
        if (!rs_replica_vs(rs, i, exp, n_exp, first ? why : dummy, first ? len : sizeof(dummy)))
            bad++;
    }
    free(exp);
    return bad;
}

/* Digests reg holds of running owners. What is left of a dead owner
 * (tombstones, or after a reap only its generation and highest version)
 * is bookkeeping that differs with when each node reaped it; that nothing
 * of it is held live is regsim_replica_ok's job. */
static size_t rs_digests(const struct regsim *rs, const struct shoal_registry *reg,
                         struct shoal_reg_digest **out)
{
    size_t n = shoal_registry_digests(reg, NULL, 0);
    struct shoal_reg_digest *d = rs_xrealloc(NULL, (n ? n : 1) * sizeof(*d), "digests");
    n = shoal_registry_digests(reg, d, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int x = sim_name_index(rs->sim, d[i].owner);
        if (x >= 0 && rs->nodes[x].reg)
            d[k++] = d[i];
    }
    *out = d;
    return k;
}

static int rs_by_digest_owner(const void *a, const void *b)
{
    return strcmp(((const struct shoal_reg_digest *)a)->owner,
                  ((const struct shoal_reg_digest *)b)->owner);
}

static bool rs_digest_eq(const struct shoal_reg_digest *a, const struct shoal_reg_digest *b)
{
    return strcmp(a->owner, b->owner) == 0 && a->generation == b->generation &&
           a->version == b->version && a->hash == b->hash && a->count == b->count;
}

bool regsim_digests_agree(struct regsim *rs, char *why, size_t len)
{
    rs->bad_node = rs->bad_owner = -1;
    char dummy[8];
    if (!why) {
        why = dummy;
        len = sizeof(dummy);
    }
    /* The reference: each running owner's digest of itself. */
    struct shoal_reg_digest *ref = rs_xrealloc(NULL, (rs->n ? rs->n : 1) * sizeof(*ref), "ref");
    size_t n_ref = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (!rs->nodes[i].reg)
            continue;
        struct shoal_reg_digest *d;
        size_t n = rs_digests(rs, rs->nodes[i].reg, &d);
        for (size_t k = 0; k < n; k++)
            if (strcmp(d[k].owner, rs->nodes[i].name) == 0)
                ref[n_ref++] = d[k];
        free(d);
    }
    qsort(ref, n_ref, sizeof(*ref), rs_by_digest_owner);
    bool ok = true;
    for (size_t i = 0; ok && i < rs->n; i++) {
        if (!rs->nodes[i].reg)
            continue;
        struct shoal_reg_digest *d;
        size_t n = rs_digests(rs, rs->nodes[i].reg, &d);
        size_t a = 0, b = 0;
        while (ok && (a < n || b < n_ref)) {
            int c = a == n ? 1 : b == n_ref ? -1 : rs_by_digest_owner(&d[a], &ref[b]);
            if ((c != 0 || !rs_digest_eq(&d[a], &ref[b])) && rs->bad_node < 0) {
                rs->bad_node = (int32_t)i;
                rs->bad_owner = sim_name_index(rs->sim, (c < 0 ? &d[a] : &ref[b])->owner);
            }
            if (c < 0) {
                snprintf(why, len,
                         "%s holds a digest of %s (gen %llu, v%llu, %u entries), the owner none "
                         "of itself",
                         rs->nodes[i].name, d[a].owner, (unsigned long long)d[a].generation,
                         (unsigned long long)d[a].version, d[a].count);
                ok = false;
            } else if (c > 0) {
                snprintf(why, len, "%s holds nothing of %s (gen %llu, v%llu, %u entries)",
                         rs->nodes[i].name, ref[b].owner, (unsigned long long)ref[b].generation,
                         (unsigned long long)ref[b].version, ref[b].count);
                ok = false;
            } else if (!rs_digest_eq(&d[a], &ref[b])) {
                snprintf(why, len,
                         "%s's digest of %s is (gen %llu, v%llu, %u entries, hash %016llx), the "
                         "owner's (gen %llu, v%llu, %u entries, hash %016llx)",
                         rs->nodes[i].name, d[a].owner, (unsigned long long)d[a].generation,
                         (unsigned long long)d[a].version, d[a].count,
                         (unsigned long long)d[a].hash, (unsigned long long)ref[b].generation,
                         (unsigned long long)ref[b].version, ref[b].count,
                         (unsigned long long)ref[b].hash);
                ok = false;
            } else {
                a++;
                b++;
            }
        }
        free(d);
    }
    free(ref);
    return ok;
}

bool regsim_members_ok(const struct regsim *rs, char *why, size_t len)
{
    for (size_t y = 0; y < rs->n; y++) {
        if (!rs->nodes[y].reg)
            continue;
        for (size_t x = 0; x < rs->n; x++) {
            if (x == y)
                continue;
            struct shoal_member_info mi;
            int st = sim_view(rs->sim, y, x, &mi);
            enum sim_state xs = sim_node_state(rs->sim, x);
            bool ok;
            const char *want;
            if (rs->nodes[x].reg) {
                want = "alive or suspect";
                ok = (st == SHOAL_ALIVE || st == SHOAL_SUSPECT) &&
                     mi.generation == rs->nodes[x].generation;
            } else if (xs == SIM_OFF) {
                want = "absent";
                ok = st < 0;
            } else {
                want = "dead, left or absent";
                ok = st < 0 || st == SHOAL_DEAD || st == SHOAL_LEFT;
            }
            if (!ok) {
                if (why)
                    snprintf(why, len,
                             "n%zu sees n%zu %s (gen %llu), want %s (gen %llu) at t=%lld ms", y, x,
                             st < 0 ? "absent" : shoal_status_name(st),
                             st < 0 ? 0ULL : (unsigned long long)mi.generation, want,
                             (unsigned long long)rs->nodes[x].generation, (long long)rs->now);
                return false;
            }
        }
    }
    return true;
}

bool regsim_converged(struct regsim *rs, char *why, size_t len)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        len = sizeof(dummy);
    }
    if (!regsim_members_ok(rs, why, len))
        return false;
    if (!regsim_digests_agree(rs, why, len))
        return false;
    return regsim_divergent(rs, why, len) == 0;
}

bool regsim_clean(const struct regsim *rs, char *why, size_t len)
{
    const struct regsim_net_stats *t = &rs->stats;
    const struct regsim_oracle_stats *o = &rs->ostats;
    if (!sim_clean(rs->sim, why, len))
        return false;
    if (t->too_big || t->encode_errors || t->decode_errors || t->wrong_transport || t->unroutable ||
        t->bad_conn || t->stuck_deadlines || t->start_errors) {
        snprintf(why, len,
                 "registry network: too_big=%llu (max datagram payload %llu) encode_errors=%llu "
                 "decode_errors=%llu wrong_transport=%llu unroutable=%llu bad_conn=%llu "
                 "stuck_deadlines=%llu start_errors=%llu",
                 (unsigned long long)t->too_big, (unsigned long long)t->max_dgram,
                 (unsigned long long)t->encode_errors, (unsigned long long)t->decode_errors,
                 (unsigned long long)t->wrong_transport, (unsigned long long)t->unroutable,
                 (unsigned long long)t->bad_conn, (unsigned long long)t->stuck_deadlines,
                 (unsigned long long)t->start_errors);
        return false;
    }
    if (o->comebacks || o->backwards || o->phantoms || o->lookup_misses) {
        snprintf(why, len, "oracle: comebacks=%llu backwards=%llu phantoms=%llu misses=%llu: %s",
                 (unsigned long long)o->comebacks, (unsigned long long)o->backwards,
                 (unsigned long long)o->phantoms, (unsigned long long)o->lookup_misses,
                 rs->first_violation);
        return false;
    }
    return true;
}

static const char *rs_life_name(char what)
{
    switch (what) {
    case 's':
        return "started";
    case 'c':
        return "crashed";
    default:
        return "restarted";
    }
}

void regsim_explain(const struct regsim *rs)
{
    int32_t y = rs->bad_node, x = rs->bad_owner;
    if (y < 0 || x < 0)
        return;
    fprintf(stderr, "  how n%d saw n%d:\n", y, x);
    for (size_t i = 0; i < rs->n_lives; i++) {
        const struct rs_life *l = &rs->lives[i];
        if (l->node == (uint32_t)x || l->node == (uint32_t)y)
            fprintf(stderr, "    t=%.3f s n%u %s (generation %llu)\n", (double)l->at / 1000.0,
                    l->node, rs_life_name(l->what), (unsigned long long)l->generation);
    }
    size_t n;
    const struct sim_event_rec *ev = sim_events(rs->sim, &n);
    static const char *const types[] = {"join", "status", "reaped", "conflict", "joined"};
    for (size_t i = 0; i < n; i++) {
        const struct sim_event_rec *r = &ev[i];
        if (r->observer != y || r->subject != x || r->type > SHOAL_EV_JOINED)
            continue;
        fprintf(stderr, "    t=%.3f s n%d's swim: %s %s gen %llu inc %u\n",
                (double)r->at_ms / 1000.0, y, types[r->type], shoal_status_name(r->status),
                (unsigned long long)r->generation, r->incarnation);
    }
    const struct shoal_registry *reg = rs->nodes[y].reg;
    int st = sim_view(rs->sim, (size_t)y, (size_t)x, NULL);
    if (reg)
        fprintf(stderr,
                "    now (t=%.3f s): n%d's membership says n%d is %s, its registry serves n%d: "
                "%s; n%d has reaped %llu owners\n",
                (double)rs->now / 1000.0, y, x, st < 0 ? "absent" : shoal_status_name(st), x,
                shoal_registry_owner_live(reg, rs->nodes[x].name) ? "yes" : "no", y,
                (unsigned long long)shoal_registry_stats(reg)->reaped);
}

uint64_t regsim_trace_hash(const struct regsim *rs)
{
    return rs_mix(rs->trace ^ sim_trace_hash(rs->sim));
}

void regsim_print_stats(const struct regsim *rs, const char *label)
{
    const struct regsim_net_stats *t = &rs->stats;
    struct shoal_registry_stats c;
    regsim_registry_stats(rs, &c);
    fprintf(stderr,
            "  [%s] t=%.1fs registry datagrams sent=%llu delivered=%llu lost=%llu blocked=%llu "
            "to_down=%llu duplicated=%llu max=%llu B; streams opened=%llu connect_failed=%llu "
            "msgs=%llu "
            "delivered=%llu lost=%llu bytes=%llu max=%llu B; events applied=%llu stale=%llu "
            "syncs=%llu sync_events=%llu reaped=%llu wipes=%llu notices=%llu; changes=%llu "
            "deregistrations=%llu\n",
            label, (double)rs->now / 1000.0, (unsigned long long)t->dgrams_sent,
            (unsigned long long)t->dgrams_delivered, (unsigned long long)t->dgrams_lost,
            (unsigned long long)t->dgrams_blocked, (unsigned long long)t->dgrams_to_down,
            (unsigned long long)t->dgrams_duplicated, (unsigned long long)t->max_dgram,
            (unsigned long long)t->streams_opened, (unsigned long long)t->connect_failed,
            (unsigned long long)t->stream_msgs_sent, (unsigned long long)t->stream_msgs_delivered,
            (unsigned long long)t->stream_msgs_lost, (unsigned long long)t->stream_bytes,
            (unsigned long long)t->max_frame, (unsigned long long)c.events_applied,
            (unsigned long long)c.events_stale, (unsigned long long)c.syncs_started,
            (unsigned long long)c.sync_events_received, (unsigned long long)c.reaped,
            (unsigned long long)c.generation_wipes, (unsigned long long)c.notices_sent,
            (unsigned long long)rs->ostats.changes, (unsigned long long)rs->ostats.deregistrations);
    sim_print_stats(rs->sim, label);
}

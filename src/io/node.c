/* node.c -- drives the sans-IO SWIM and registry cores from libev: UDP and
 * TCP in and out, one timer, persistence of our own instances.
 *
 * Inputs: a datagram (wire-verified, then dispatched on the payload type:
 * 1..7 to shoal_swim_recv, 8 to shoal_registry_recv), a stream frame
 * (verified, 9..11 to shoal_registry_recv with its connection), the timer
 * (both cores tick), a local call (join, leave, register, ...). After each
 * input batch DATA_DIR/registry is rewritten if our instances changed, the
 * reg_changed observer runs, and the single ev_timer is re-armed to the
 * earlier of both cores' deadlines. Every datagram or frame that wire
 * refuses is counted by reason and changes nothing. SWIM events are logged
 * at info ("swim" module), told to the registry (owner liveness, the join's
 * anti-entropy) and then passed to the optional observer.
 */
#include "io/node.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/strmap.h"
#include "core/principal.h"
#include "io/datadir.h"
#include "io/fallback.h"
#include "io/log.h"
#include "io/reglog.h"
#include "io/regstore.h"
#include "io/stream.h"
#include "io/udp.h"
#include "wire/statement.h"

/* A deadline farther than this is re-checked anyway; ticking early is a
 * no-op for core, and it bounds the damage of a clock surprise. */
#define NODE_MAX_SLEEP_S 60.0
#define NODE_STUCK_BACKOFF_S 0.001
/* Binding port 0 picks a free UDP port; the TCP listener must take the same
 * number, which another process may hold: then both are tried again. */
#define NODE_BIND_TRIES 32
/* Most principals (names bound to keys) a node holds: the member cap's order. */
#define NODE_PRINCIPALS_MAX 65536
/* Room for a message's fields besides its events in a frame estimate. */
#define NODE_FRAME_BASE 1024

struct shoal_node {
    struct ev_loop *loop;
    struct shoal_udp *udp;
    struct shoal_stream *stream;
    struct shoal_wire *wire;
    struct shoal_swim *swim;
    struct shoal_registry *reg;
    ev_timer timer;
    char *data_dir;          /* NULL: nothing persisted */
    bool dirty;              /* our instances changed since the last write */
    int persist_err;         /* the last write's error, 0 if it succeeded */
    /* Group commit (io/reglog.h): the ids of ours changed since the last
     * write (keys and values are the same strdup'd string), appended to
     * DATA_DIR/registry.log with one fdatasync once the loop has handled
     * every ready input (the ev_prepare watcher), or at once by
     * shoal_node_persist(). compact: write the snapshot instead (at start,
     * when the log has grown, or when the ids could not be kept). */
    struct shoal_strmap pending;
    struct shoal_reglog log;
    bool compact;
    bool flush_wanted; /* a change or a waiter since the last attempt */
    ev_prepare prepare;
    ev_idle again; /* one more loop pass without blocking: see node_prepare */
    uint64_t snapshot_bytes; /* of the last snapshot written */
    uint8_t *logbuf; /* record encoding scratch */
    size_t logbuf_cap;
    struct shoal_instance *logev;
    size_t logev_cap;
    void (*persisted)(void *ud, int rc);
    uint64_t index_lease;    /* DATA_DIR/index: the change index may grow up to this */
    bool view_changed;       /* queries may answer differently: tell reg_changed */
    uint64_t last_open_conn; /* a stream we opened, for later parts of its message */
    struct shoal_addr last_open_addr;
    uint8_t *frame; /* encode + seal scratch for stream frames */
    size_t frame_cap;
    struct shoal_addr addr;  /* advertised */
    struct shoal_addr bound; /* socket */
    size_t max_datagram;
    bool has_cluster_key;
    bool leaving, left_reported;
    struct shoal_identity identity; /* wire may keep a pointer: it lives here */
    struct shoal_principals principals; /* who speaks for which name (regauth) */
    char **peer_scopes; /* INTERIM: "NAME=PATTERN,..." for learned principals */
    size_t n_peer_scopes;
    uint8_t cluster_pk[SHOAL_PK_BYTES];
    void (*event)(void *ud, const struct shoal_event *ev);
    void (*left)(void *ud);
    void (*reg_changed)(void *ud);
    void *ud;
    struct shoal_node_counters counters;
    struct shoal_msg msg; /* decode target: too big for the stack (~7 KiB) */
    uint8_t out[];        /* max_datagram bytes, seal target */
};

static int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t shoal_node_clock_ms(void) { return clock_us() / 1000; }

int64_t shoal_node_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Logs only the 1st, 2nd, 4th, ... and then every 1024th occurrence: a
 * persistent fault stays visible without flooding the log. */
static bool log_sampled(uint64_t count) { return (count & (count - 1)) == 0 || count % 1024 == 0; }

/* Fills p's scope from comma-separated patterns (NULL or "": any name).
 * Returns 0 or SHOAL_EINVAL. */
static int node_parse_scope(struct shoal_principal *p, const char *scope)
{
    for (const char *s = scope; s && *s;) {
        size_t len = strcspn(s, ",");
        if (p->n_scopes == SHOAL_SCOPES_MAX || len == 0 || len >= SHOAL_SCOPE_MAX)
            return SHOAL_EINVAL;
        memcpy(p->scopes[p->n_scopes], s, len);
        if (shoal_scope_check(p->scopes[p->n_scopes++]) != 0)
            return SHOAL_EINVAL;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* INTERIM, until certificates (issue 8, item 1) fill n->principals: the
 * first verified envelope that names a member binds that name to the
 * envelope's sender key, with the scope --test-peer-scope gives that name
 * (else none); a later envelope naming it with another key changes
 * nothing. This is trust on first use: it holds only against a node that
 * speaks after the victim is known. The certificate path replaces this
 * function, its three calls and peer_scopes. */
static void node_interim_principal(struct shoal_node *n, const char *name, const uint8_t *env,
                                   size_t len)
{
    struct shoal_principal p;
    if (shoal_principals_get(&n->principals, name))
        return;
    memset(&p, 0, sizeof(p));
    memcpy(p.name, name, strnlen(name, SHOAL_NAME_MAX - 1));
    p.not_after = UINT64_MAX;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < n->n_peer_scopes; i++)
        if (strncmp(n->peer_scopes[i], name, nlen) == 0 && n->peer_scopes[i][nlen] == '=' &&
            node_parse_scope(&p, n->peer_scopes[i] + nlen + 1) != 0)
            return; /* checked at start */
    if (shoal_statement_envelope_sender(env, len, p.pk) == 0 &&
        shoal_principals_put(&n->principals, &p, false) == 0) {
        shoal_log_debug("registry", "interim principal %s learned from its envelope", name);
        shoal_registry_principals_changed(n->reg);
    }
}

static int64_t node_deadline(const struct shoal_node *n)
{
    int64_t s = shoal_swim_next_deadline(n->swim), r = shoal_registry_next_deadline(n->reg);
    return s < r ? s : r;
}

/* Arms the one timer for the cores' next deadline, at least min_s from now. */
static void node_rearm(struct shoal_node *n, double min_s)
{
    int64_t deadline_ms = node_deadline(n);
    /* Refresh libev's cached monotonic time first: ev_timer counts from it,
     * and a stale value would fire the timer before our own clock reached
     * the deadline. */
    ev_now_update(n->loop);
    int64_t now_us = clock_us(), now_ms = now_us / 1000;
    double delay;
    if (deadline_ms <= now_ms)
        delay = 0; /* due now: core ticks at now_ms >= deadline */
    else if (deadline_ms - now_ms > (int64_t)(NODE_MAX_SLEEP_S * 1000))
        delay = NODE_MAX_SLEEP_S;
    else
        delay = (double)(deadline_ms * 1000 - now_us) / 1e6;
    if (delay < min_s)
        delay = min_s;
    ev_timer_stop(n->loop, &n->timer);
    ev_timer_set(&n->timer, delay, 0.);
    ev_timer_start(n->loop, &n->timer);
}

/* DATA_DIR/index holds a lease on the registry's change index: the agent
 * starts its index at the saved value and writes value + NODE_INDEX_LEASE
 * before the index can pass it, so a restarted agent never answers an
 * index below one it gave out before (Consul clients treat a lower index
 * as a reset), at the cost of one small durable write per lease. */
#define NODE_INDEX_FILE "index"
#define NODE_INDEX_LEASE 65536u

static int index_lease_write(struct shoal_node *n, uint64_t upto)
{
    char text[32];
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", upto);
    int rc = shoal_datadir_write_file(n->data_dir, NODE_INDEX_FILE, text, (size_t)len);
    if (rc == 0) {
        n->index_lease = upto;
        return 0;
    }
    n->counters.persist_errors++;
    shoal_log_error("registry", "cannot write %s/%s: %s", n->data_dir, NODE_INDEX_FILE,
                    shoal_datadir_strerror(rc));
    return rc;
}

/* At start: the saved lease becomes the index floor, and a new lease is
 * taken. A file that is not one decimal number stops the start. */
static int index_lease_start(struct shoal_node *n)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t saved = 1;
    int rc = shoal_datadir_read_file(n->data_dir, NODE_INDEX_FILE, 64, &data, &len);
    if (rc == 0) {
        char text[65];
        memcpy(text, data, len);
        text[len] = 0;
        free(data);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (end == text || errno || (*end && strcmp(end, "\n") != 0) || v > UINT64_MAX / 2) {
            shoal_log_error("registry", "%s/%s is not one decimal number; move it away to start",
                            n->data_dir, NODE_INDEX_FILE);
            return SHOAL_EINVAL;
        }
        saved = v;
    } else if (rc != -ENOENT) {
        shoal_log_error("registry", "cannot read %s/%s: %s", n->data_dir, NODE_INDEX_FILE,
                        shoal_datadir_strerror(rc));
        return rc;
    }
    shoal_registry_index_floor(n->reg, saved);
    return index_lease_write(n, saved + NODE_INDEX_LEASE);
}

/* ------------------------------------------------------ persistence */

/* A record holds at most this much (upper-bound cost) of events; a batch
 * larger than that becomes several records in the same write. */
#define NODE_RECORD_COST (1u << 20)

static void pending_clear(struct shoal_node *n)
{
    for (size_t i = 0; i < n->pending.cap; i++)
        if (n->pending.slots[i].key)
            free(n->pending.slots[i].value);
    shoal_strmap_close(&n->pending);
}

/* Notes one of ours as changed; a failure to keep it falls back to a
 * snapshot, which needs no list. */
static void pending_add(struct shoal_node *n, const char *id)
{
    if (n->compact || shoal_strmap_get(&n->pending, id))
        return;
    char *k = strdup(id);
    if (!k || shoal_strmap_put(&n->pending, k, k) != 0) {
        free(k);
        n->compact = true;
        pending_clear(n);
    }
}

static uint64_t compact_threshold(const struct shoal_node *n)
{
    uint64_t t = 2 * n->snapshot_bytes;
    return t < SHOAL_REGLOG_COMPACT_MIN ? SHOAL_REGLOG_COMPACT_MIN : t;
}

/* Writes the snapshot (temp, fsync, rename, fsync dir) and then empties
 * the log: a crash between the two leaves log records the snapshot
 * already covers, which replay skips by version (reglog.h). */
static int node_compact(struct shoal_node *n)
{
    uint8_t *buf;
    size_t len;
    int rc = shoal_regstore_encode(shoal_swim_config(n->swim)->name, n->reg, &buf, &len);
    if (rc != 0)
        return rc;
    rc = shoal_datadir_write_file(n->data_dir, SHOAL_REGSTORE_FILE, buf, len);
    free(buf);
    if (rc != 0)
        return rc;
    n->snapshot_bytes = len;
    rc = n->log.fd >= 0 ? shoal_reglog_reset(&n->log) : shoal_reglog_open(&n->log, n->data_dir, 0);
    if (rc != 0) {
        shoal_reglog_close(&n->log); /* its size is unknown: the next write compacts */
        return rc;
    }
    n->counters.persist_compactions++;
    return 0;
}

/* Appends the changed ids' current state (a tombstone for one that is no
 * longer ours) as records, with one write and one fdatasync. */
static int node_append(struct shoal_node *n)
{
    const struct shoal_swim_config *sc = shoal_swim_config(n->swim);
    uint64_t counter = shoal_registry_own_version(n->reg);
    size_t count = n->pending.n, k = 0, len = 0, cost = 0, first = 0;
    int rc;

    if (count > n->logev_cap) {
        struct shoal_instance *v = realloc(n->logev, count * sizeof(*v));
        if (!v)
            return SHOAL_ENOMEM;
        n->logev = v;
        n->logev_cap = count;
    }
    for (size_t i = 0; i < n->pending.cap; i++) {
        const char *id = n->pending.slots[i].key;
        if (!id)
            continue;
        const struct shoal_instance *in = shoal_registry_own_get(n->reg, id);
        struct shoal_instance *ev = &n->logev[k++];
        if (in) {
            *ev = *in; /* shallow */
        } else {
            /* Any version above the snapshot and below every later
             * change of this id would do; the counter is both. */
            memset(ev, 0, sizeof(*ev));
            ev->id = (char *)id;
            memcpy(ev->owner, sc->name, SHOAL_NAME_MAX);
            ev->generation = sc->generation;
            ev->version = counter;
            ev->deleted = true;
        }
        uint32_t c = shoal_instance_cost(ev);
        if (k - 1 > first && cost + c > NODE_RECORD_COST) {
            rc = shoal_reglog_record(sc->name, counter, n->logev + first, k - 1 - first,
                                     &n->logbuf, &n->logbuf_cap, &len);
            if (rc != 0)
                return rc;
            first = k - 1;
            cost = 0;
        }
        cost += c;
    }
    if (k > first &&
        (rc = shoal_reglog_record(sc->name, counter, n->logev + first, k - first, &n->logbuf,
                                  &n->logbuf_cap, &len)) != 0)
        return rc;
    rc = shoal_reglog_append(&n->log, n->logbuf, len);
    if (rc == SHOAL_ESTATE)
        shoal_reglog_close(&n->log); /* cut back failed: compact next time */
    if (rc == 0)
        n->counters.persist_appends++;
    return rc;
}

bool shoal_node_durable(const struct shoal_node *n)
{
    return !n->data_dir || n->leaving || !n->dirty;
}

void shoal_node_persist_soon(struct shoal_node *n) { n->flush_wanted = true; }

int shoal_node_persist(struct shoal_node *n)
{
    int rc;
    n->flush_wanted = false;
    /* A leave deregisters everything, but the file keeps what was
     * registered: a restarted node announces it again (docs/interfaces.md). */
    if (!n->data_dir || !n->dirty || n->leaving) {
        rc = n->leaving ? 0 : n->persist_err;
        goto told;
    }
    bool compact = n->compact || n->log.fd < 0;
    rc = compact ? 0 : node_append(n);
    if (rc == SHOAL_ETOOBIG || rc == SHOAL_ESTATE)
        compact = true; /* the log is full, or in doubt: a snapshot replaces it */
    if (compact)
        rc = node_compact(n);
    if (rc != 0) {
        n->persist_err = rc;
        n->counters.persist_errors++;
        if (log_sampled(n->counters.persist_errors))
            shoal_log_error("registry", "cannot write %s/%s: %s (%" PRIu64 " failures so far)",
                            n->data_dir, compact ? SHOAL_REGSTORE_FILE : SHOAL_REGLOG_FILE,
                            shoal_datadir_strerror(rc), n->counters.persist_errors);
        goto told;
    }
    n->dirty = false;
    n->compact = false;
    n->persist_err = 0;
    n->counters.persist_writes++;
    pending_clear(n);
    if (n->persisted)
        n->persisted(n->ud, 0); /* acknowledge first, then compact */
    if (n->log.fd >= 0 && n->log.size > compact_threshold(n)) {
        int crc = node_compact(n);
        if (crc != 0) { /* the log still holds everything: only noted */
            n->counters.persist_errors++;
            if (log_sampled(n->counters.persist_errors))
                shoal_log_warn("registry", "cannot compact %s/%s: %s", n->data_dir,
                               SHOAL_REGLOG_FILE, shoal_datadir_strerror(crc));
        }
    }
    return 0;
told:
    if (n->persisted)
        n->persisted(n->ud, rc);
    return rc;
}

/* The loop has handled every ready input: one write for all their
 * changes (group commit). */
static void node_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct shoal_node *n = w->data;
    (void)loop;
    (void)revents;
    if (n->flush_wanted)
        (void)shoal_node_persist(n); /* logs its own failure; retried after the next input */
    /* Answering the acknowledgements may have run pipelined requests that
     * changed more: the loop must not block before writing those. One
     * non-blocking pass first lets other ready requests join that write. */
    if (n->flush_wanted && !ev_is_active(&n->again))
        ev_idle_start(n->loop, &n->again);
}

static void node_again(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w); /* its only job was to keep this pass from blocking */
}

/* Called after every input: tells the observer about a changed registry,
 * reports a finished leave, re-arms the timer. Our changes are written
 * once the loop has handled every ready input (node_prepare). */
static void node_after_input(struct shoal_node *n, double min_s)
{
    if (n->data_dir && n->index_lease &&
        shoal_registry_index(n->reg, NULL) + NODE_INDEX_LEASE / 2 > n->index_lease)
        (void)index_lease_write(n, shoal_registry_index(n->reg, NULL) + NODE_INDEX_LEASE);
    if (n->view_changed) {
        n->view_changed = false;
        if (n->reg_changed)
            n->reg_changed(n->ud);
    }
    if (n->leaving && !n->left_reported && shoal_swim_leave_done(n->swim)) {
        n->left_reported = true;
        shoal_log_info("swim", "leave done");
        if (n->left)
            n->left(n->ud);
    }
    node_rearm(n, min_s);
}

static void node_send(void *ud, const struct shoal_addr *to, const struct shoal_msg *m)
{
    struct shoal_node *n = ud;
    char a[SHOAL_ADDR_STRLEN];
    int len = shoal_wire_seal(n->wire, m, n->out, n->max_datagram);
    if (len < 0) {
        n->counters.seal_errors++;
        if (log_sampled(n->counters.seal_errors))
            shoal_log_warn("swim", "cannot seal a type %u message to %s: %s (%" PRIu64 " so far)",
                           m->type, shoal_addr_format(to, a, sizeof(a)), shoal_strerror(len),
                           n->counters.seal_errors);
        return;
    }
    int rc = shoal_udp_send(n->udp, to, n->out, (size_t)len);
    if (rc != 0) {
        n->counters.send_errors++;
        if (log_sampled(n->counters.send_errors))
            shoal_log_warn("udp", "sendto %s: %s (%" PRIu64 " so far)",
                           shoal_addr_format(to, a, sizeof(a)), shoal_udp_strerror(rc),
                           n->counters.send_errors);
        return;
    }
    n->counters.packets_out++;
    n->counters.bytes_out += (uint64_t)len;
}

/* What membership tells the registry: an owner's liveness and generation
 * (its instances are served, dropped or wiped accordingly), and, once a
 * join is answered, a full anti-entropy exchange with the seed that
 * answered, so a new node gets the whole registry at once. */
static void node_event_registry(struct shoal_node *n, const struct shoal_event *ev)
{
    const struct shoal_member_info *m = ev->member;
    int64_t now = shoal_node_clock_ms();

    switch (ev->type) {
    case SHOAL_EV_MEMBER_JOIN:
    case SHOAL_EV_MEMBER_STATUS:
        shoal_registry_owner_status(n->reg, now, m->name, m->status, m->generation);
        break;
    case SHOAL_EV_MEMBER_REAPED:
        shoal_registry_owner_status(n->reg, now, m->name, SHOAL_LEFT, m->generation);
        break;
    case SHOAL_EV_JOINED:
        shoal_registry_sync_with(n->reg, now, &ev->other_addr);
        break;
    case SHOAL_EV_CONFLICT:
        break;
    }
}

static void node_event(void *ud, const struct shoal_event *ev)
{
    struct shoal_node *n = ud;
    const struct shoal_member_info *m = ev->member;
    char a[SHOAL_ADDR_STRLEN], b[SHOAL_ADDR_STRLEN];

    switch (ev->type) {
    case SHOAL_EV_MEMBER_JOIN:
        shoal_log_info("swim", "member %s %s joined (%s, generation %" PRIu64 ")", m->name,
                       shoal_addr_format(&m->addr, a, sizeof(a)), shoal_status_name(m->status),
                       m->generation);
        break;
    case SHOAL_EV_MEMBER_STATUS:
        if (ev->old_status != m->status)
            shoal_log_info("swim", "member %s %s %s -> %s", m->name,
                           shoal_addr_format(&m->addr, a, sizeof(a)),
                           shoal_status_name(ev->old_status), shoal_status_name(m->status));
        else
            shoal_log_info("swim",
                           "member %s %s %s (generation %" PRIu64 ", incarnation %" PRIu32 ")",
                           m->name, shoal_addr_format(&m->addr, a, sizeof(a)),
                           shoal_status_name(m->status), m->generation, m->incarnation);
        break;
    case SHOAL_EV_MEMBER_REAPED:
        shoal_log_info("swim", "member %s %s reaped", m->name,
                       shoal_addr_format(&m->addr, a, sizeof(a)));
        break;
    case SHOAL_EV_CONFLICT:
        shoal_log_warn("swim", "name conflict: %s claimed by %s and %s", m->name,
                       shoal_addr_format(&m->addr, a, sizeof(a)),
                       shoal_addr_format(&ev->other_addr, b, sizeof(b)));
        break;
    case SHOAL_EV_JOINED:
        shoal_log_info("swim", "joined the cluster (%zu members known)",
                       shoal_swim_member_count(n->swim));
        break;
    }
    node_event_registry(n, ev);
    if (n->event)
        n->event(n->ud, ev);
}

/* Maps a decoder's error to the drop reason it is counted under. */
static int decode_drop(int rc)
{
    return rc == SHOAL_EDECODE ? SHOAL_DROP_DECODE : SHOAL_DROP_INVALID;
}

static void node_drop(struct shoal_node *n, uint64_t *drops, int drop, const char *what, size_t len,
                      const struct shoal_addr *src, const char *detail)
{
    char a[SHOAL_ADDR_STRLEN];
    if (drop < 0 || drop >= SHOAL_DROP_COUNT)
        drop = SHOAL_DROP_INVALID;
    drops[drop]++;
    if (shoal_log_enabled(SHOAL_LOG_DEBUG))
        shoal_log_debug("wire", "dropped a %zu%s byte %s from %s: %s%s%s", len,
                        len > n->max_datagram && drops == n->counters.drops ? "+" : "", what,
                        shoal_addr_format(src, a, sizeof(a)), shoal_drop_name(drop),
                        detail ? ": " : "", detail ? detail : "");
}

static void node_datagram(void *ud, const uint8_t *buf, size_t len, const struct shoal_addr *src)
{
    struct shoal_node *n = ud;
    const uint8_t *payload;
    const char *bad = NULL;
    size_t plen;
    int drop = SHOAL_DROP_INVALID, rc;

    n->counters.packets_in++;
    n->counters.bytes_in += len;
    if (len > n->max_datagram) {
        node_drop(n, n->counters.drops, SHOAL_DROP_TOO_LARGE, "datagram", len, src, NULL);
        return;
    }
    if (shoal_wire_verify(n->wire, buf, len, &payload, &plen, &drop) != 0) {
        node_drop(n, n->counters.drops, drop, "datagram", len, src, NULL);
        return;
    }
    int type = shoal_wire_payload_type(payload, plen);
    if (type >= 1 && type <= SHOAL_MSG_TYPE_MAX) {
        if ((rc = shoal_wire_decode(payload, plen, &n->msg, &bad)) != 0) {
            node_drop(n, n->counters.drops, decode_drop(rc), "datagram", len, src, bad);
            return;
        }
        node_interim_principal(n, n->msg.from, buf, len);
        shoal_swim_recv(n->swim, shoal_node_clock_ms(), src, &n->msg);
        return;
    }
    if (type != SHOAL_REG_GOSSIP) {
        /* Anti-entropy travels on streams only: a sync answered by datagram
         * would be an amplifier. */
        node_drop(n, n->counters.drops, type < 0 ? SHOAL_DROP_DECODE : SHOAL_DROP_INVALID,
                  "datagram", len, src, type < 0 ? NULL : "not a datagram message type");
        return;
    }
    struct shoal_reg_msg m;
    if ((rc = shoal_wire_decode_reg(payload, plen, &m, &bad)) != 0) {
        node_drop(n, n->counters.drops, decode_drop(rc), "datagram", len, src, bad);
        return;
    }
    struct shoal_reg_peer peer = {.addr = *src};
    node_interim_principal(n, m.from, buf, len);
    n->counters.reg_in++;
    shoal_registry_recv(n->reg, shoal_node_clock_ms(), &peer, &m);
    shoal_reg_msg_free(&m);
}

/* One whole stream frame from connection conn. */
/* The TCP fallback probe (io/fallback.c): swim asks for a ping over a
 * stream when a direct probe got no ack. */
static void node_fallback_ping(void *ud, const struct shoal_addr *to, const char *target,
                               uint32_t seq)
{
    struct shoal_node *n = ud;
    char a[SHOAL_ADDR_STRLEN];
    int rc = shoal_fallback_send(n->wire, n->stream, 0, to, SHOAL_MSG_PING,
                                 shoal_swim_config(n->swim)->name, target, seq);
    if (rc != 0) {
        n->counters.stream_errors++;
        if (log_sampled(n->counters.stream_errors))
            shoal_log_warn("stream", "cannot send a fallback ping to %s %s: %s (%" PRIu64
                           " so far)",
                           target, shoal_addr_format(to, a, sizeof(a)), shoal_strerror(rc),
                           n->counters.stream_errors);
    }
}

/* A fallback PING is answered with an ACK on the same connection; an ACK
 * goes to swim, which takes it only for the probe it is waiting on. */
static void node_fallback_frame(struct shoal_node *n, uint64_t conn, const struct shoal_addr *src,
                                const uint8_t *payload, size_t plen, size_t len)
{
    uint8_t type = 0;
    uint32_t seq = 0;
    char target[SHOAL_NAME_MAX];
    const char *bad = NULL;
    int rc = shoal_fallback_parse(payload, plen, &type, &seq, target, &bad);
    if (rc != 0) {
        node_drop(n, n->counters.frame_drops, decode_drop(rc), "frame", len, src, bad);
        return;
    }
    const char *self = shoal_swim_config(n->swim)->name;
    if (type == SHOAL_MSG_ACK) {
        shoal_swim_fallback_ack(n->swim, shoal_node_clock_ms(), seq);
        return;
    }
    if (strcmp(target, self) != 0 || n->leaving) {
        node_drop(n, n->counters.frame_drops, SHOAL_DROP_INVALID, "frame", len, src,
                  "fallback ping for another member");
        return;
    }
    rc = shoal_fallback_send(n->wire, n->stream, conn, src, SHOAL_MSG_ACK, self, NULL, seq);
    if (rc != 0)
        n->counters.stream_errors++;
}

static void node_frame(void *ud, uint64_t conn, const struct shoal_addr *src, const uint8_t *frame,
                       size_t len)
{
    struct shoal_node *n = ud;
    const uint8_t *payload;
    const char *bad = NULL;
    size_t plen;
    int drop = SHOAL_DROP_INVALID, rc;

    if (shoal_wire_verify_frame(n->wire, frame, len, &payload, &plen, &drop) != 0) {
        node_drop(n, n->counters.frame_drops, drop, "frame", len, src, NULL);
        return;
    }
    int type = shoal_wire_payload_type(payload, plen);
    if (type == SHOAL_MSG_PING || type == SHOAL_MSG_ACK) {
        node_fallback_frame(n, conn, src, payload, plen, len);
        return;
    }
    if (type != SHOAL_REG_SYNC_REQ && type != SHOAL_REG_SYNC_RESP && type != SHOAL_REG_SYNC_DATA) {
        node_drop(n, n->counters.frame_drops, type < 0 ? SHOAL_DROP_DECODE : SHOAL_DROP_INVALID,
                  "frame", len, src, type < 0 ? NULL : "not a stream message type");
        return;
    }
    struct shoal_reg_msg m;
    if ((rc = shoal_wire_decode_reg(payload, plen, &m, &bad)) != 0) {
        node_drop(n, n->counters.frame_drops, decode_drop(rc), "frame", len, src, bad);
        return;
    }
    struct shoal_reg_peer peer = {.addr = *src, .conn = conn, .stream = true};
    node_interim_principal(n, m.from, frame + SHOAL_FRAME_PREFIX_BYTES,
                           len - SHOAL_FRAME_PREFIX_BYTES);
    n->counters.reg_in++;
    shoal_registry_recv(n->reg, shoal_node_clock_ms(), &peer, &m);
    shoal_reg_msg_free(&m);
}

/* ------------------------------------------------- the registry's output */

/* Conservative payload size of a registry message, for the frame buffer. */
static size_t reg_msg_cost(const struct shoal_reg_msg *m)
{
    size_t n = NODE_FRAME_BASE;
    for (uint32_t i = 0; i < m->n_events; i++)
        n += shoal_instance_cost(&m->events[i]);
    n += (size_t)m->n_digests * (48 + SHOAL_NAME_MAX);
    n += (size_t)m->n_wants * (3 + SHOAL_NAME_MAX);
    n += (size_t)m->n_proofs * (128 + SHOAL_NAME_MAX);
    return n;
}

static void node_reg_send_datagram(struct shoal_node *n, const struct shoal_reg_peer *to,
                                   const struct shoal_reg_msg *m)
{
    char a[SHOAL_ADDR_STRLEN];
    uint8_t *payload = n->out + SHOAL_ENVELOPE_BYTES;
    int len = shoal_wire_encode_reg(m, payload, n->max_datagram - SHOAL_ENVELOPE_BYTES);
    if (len >= 0)
        len = shoal_wire_seal_payload(n->wire, payload, (size_t)len, n->out, n->max_datagram);
    if (len < 0) {
        n->counters.seal_errors++;
        if (log_sampled(n->counters.seal_errors))
            shoal_log_warn("registry",
                           "cannot seal a type %u message (%u events) to %s: %s (%" PRIu64
                           " so far)",
                           m->type, m->n_events, shoal_addr_format(&to->addr, a, sizeof(a)),
                           shoal_strerror(len), n->counters.seal_errors);
        return;
    }
    int rc = shoal_udp_send(n->udp, &to->addr, n->out, (size_t)len);
    if (rc != 0) {
        n->counters.send_errors++;
        if (log_sampled(n->counters.send_errors))
            shoal_log_warn("udp", "sendto %s: %s (%" PRIu64 " so far)",
                           shoal_addr_format(&to->addr, a, sizeof(a)), shoal_udp_strerror(rc),
                           n->counters.send_errors);
        return;
    }
    n->counters.reg_out++;
    n->counters.packets_out++;
    n->counters.bytes_out += (uint64_t)len;
}

/* Encodes and seals m as one frame in n->frame; returns its length or a
 * negative error. */
static int node_seal_frame(struct shoal_node *n, const struct shoal_reg_msg *m)
{
    size_t want = reg_msg_cost(m);
    if (want > SHOAL_STREAM_FRAME_MAX)
        want = SHOAL_STREAM_FRAME_MAX;
    for (;;) {
        size_t cap = want + SHOAL_FRAME_OVERHEAD;
        if (cap > n->frame_cap) {
            uint8_t *p = realloc(n->frame, cap);
            if (!p)
                return SHOAL_ENOMEM;
            n->frame = p;
            n->frame_cap = cap;
        }
        uint8_t *payload = n->frame + SHOAL_FRAME_OVERHEAD;
        int len = shoal_wire_encode_reg(m, payload, n->frame_cap - SHOAL_FRAME_OVERHEAD);
        if (len >= 0)
            return shoal_wire_seal_frame(n->wire, payload, (size_t)len, n->frame, n->frame_cap);
        /* The cost is an upper bound; growing is only a guard. */
        if (len != SHOAL_ETOOBIG || want >= SHOAL_STREAM_FRAME_MAX)
            return len;
        want = want * 2 > SHOAL_STREAM_FRAME_MAX ? SHOAL_STREAM_FRAME_MAX : want * 2;
    }
}

static void node_reg_send_stream(struct shoal_node *n, const struct shoal_reg_peer *to,
                                 const struct shoal_reg_msg *m)
{
    char a[SHOAL_ADDR_STRLEN];
    uint64_t conn = to->conn, opened = 0;
    int len = node_seal_frame(n, m);

    if (len < 0) {
        n->counters.seal_errors++;
        if (log_sampled(n->counters.seal_errors))
            shoal_log_warn("registry",
                           "cannot seal a type %u frame (%u events, %u digests) to %s: %s (%" PRIu64
                           " so far)",
                           m->type, m->n_events, m->n_digests,
                           shoal_addr_format(&to->addr, a, sizeof(a)), shoal_strerror(len),
                           n->counters.seal_errors);
        return;
    }
    /* Later parts of a message that opened a stream follow it there. */
    if (conn == 0 && m->part > 0 && n->last_open_conn &&
        shoal_addr_eq(&n->last_open_addr, &to->addr) &&
        shoal_stream_conn_open(n->stream, n->last_open_conn))
        conn = n->last_open_conn;
    int rc = shoal_stream_send(n->stream, conn, &to->addr, n->frame, (size_t)len, &opened);
    if (rc != 0) {
        n->counters.stream_errors++;
        if (log_sampled(n->counters.stream_errors))
            shoal_log_warn("stream",
                           "cannot send a type %u frame to %s (connection %" PRIu64
                           "): %s (%" PRIu64 " so far)",
                           m->type, shoal_addr_format(&to->addr, a, sizeof(a)), conn,
                           shoal_udp_strerror(rc), n->counters.stream_errors);
        return;
    }
    if (conn == 0) {
        n->last_open_conn = opened;
        n->last_open_addr = to->addr;
    }
    n->counters.reg_out++;
}

static void node_reg_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    struct shoal_node *n = ud;
    if (to->stream)
        node_reg_send_stream(n, to, m);
    else
        node_reg_send_datagram(n, to, m);
}

static size_t node_reg_peers(void *ud, size_t k, struct shoal_addr *out)
{
    struct shoal_node *n = ud;
    return shoal_swim_random_members(n->swim, k, out);
}

/* The registry syncs with an owner itself when it comes back from dead:
 * its address, if membership holds it live. */
static bool node_reg_member_addr(void *ud, const char *name, struct shoal_addr *out)
{
    struct shoal_node *n = ud;
    struct shoal_member_info m;
    if (!shoal_swim_member_find(n->swim, name, &m) ||
        (m.status != SHOAL_ALIVE && m.status != SHOAL_SUSPECT))
        return false;
    *out = m.addr;
    return true;
}

static void node_reg_changed(void *ud, const struct shoal_reg_change *c)
{
    struct shoal_node *n = ud;
    /* Only noted here: the registry is mid-change. node_after_input()
     * persists and tells the observer once the input is done. */
    if (c->own) {
        n->dirty = true;
        n->flush_wanted = true;
        if (c->id)
            pending_add(n, c->id);
        else
            n->compact = true;
    }
    n->view_changed = true;
}

static void node_batch_done(void *ud) { node_after_input(ud, 0); }

static void node_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_node *n = w->data;
    int64_t now = shoal_node_clock_ms();
    double min_s = 0;
    n->counters.timer_fires++;
    shoal_swim_tick(n->swim, now);
    shoal_registry_tick(n->reg, now);
    if (node_deadline(n) <= now) {
        /* A tick must move the deadline past now; if core fails to, wait
         * a millisecond rather than spin the CPU, and say so. */
        n->counters.stuck_deadlines++;
        if (log_sampled(n->counters.stuck_deadlines))
            shoal_log_warn("node",
                           "deadline did not advance past %" PRId64 " after a tick (swim %" PRId64
                           ", registry %" PRId64 "; %" PRIu64 " so far)",
                           now, shoal_swim_next_deadline(n->swim),
                           shoal_registry_next_deadline(n->reg), n->counters.stuck_deadlines);
        min_s = NODE_STUCK_BACKOFF_S;
    }
    node_after_input(n, min_s);
}

static void node_stream_batch(void *ud) { node_after_input(ud, 0); }

/* Binds UDP and, at the same IP:PORT, the TCP stream listener. With port 0
 * the kernel picks the UDP port, which TCP may find taken: try again. */
static int node_bind(struct shoal_node *n, const struct shoal_addr *bind)
{
    struct shoal_stream_config sc = {
        .out_max = SHOAL_STREAM_OUT_MAX,
        .max_conns = SHOAL_STREAM_MAX_CONNS,
        .connect_timeout_s = SHOAL_STREAM_CONNECT_TIMEOUT_S,
        .idle_timeout_s = SHOAL_STREAM_IDLE_TIMEOUT_S,
        .frame = node_frame,
        .batch = node_stream_batch,
        .ud = n,
    };
    int rc = 0;

    for (int tries = 0; tries < NODE_BIND_TRIES; tries++) {
        n->udp =
            shoal_udp_new(n->loop, bind, n->max_datagram, node_datagram, node_batch_done, n, &rc);
        if (!n->udp)
            return rc;
        shoal_udp_local_addr(n->udp, &n->bound);
        sc.bind = n->bound;
        n->stream = shoal_stream_new(n->loop, &sc, &rc);
        if (n->stream)
            return 0;
        shoal_udp_free(n->udp);
        n->udp = NULL;
        if (rc != -EADDRINUSE || bind->port != 0)
            return rc;
    }
    return rc;
}

/* Sum of the encoded costs of our instances but `except`: what the data
 * dir snapshot will need, roughly (an upper bound). O(1): the registry
 * keeps the sum as instances change. */
static size_t own_cost(const struct shoal_node *n, const char *except)
{
    const struct shoal_instance *old = except ? shoal_registry_own_get(n->reg, except) : NULL;
    return NODE_FRAME_BASE + shoal_registry_own_cost(n->reg) -
           (old ? shoal_instance_cost(old) : 0);
}

/* The registry's owner signatures (core/regauth.h, wire/statement.h). */
static int node_reg_sign(void *ud, const struct shoal_instance *ev, uint8_t sig[SHOAL_REG_SIG_BYTES])
{
    struct shoal_node *n = ud;
    return shoal_statement_sign_event(ev, n->identity.sk, sig);
}

static bool node_reg_verify(void *ud, const struct shoal_instance *ev,
                            const uint8_t pk[SHOAL_REG_PK_BYTES])
{
    (void)ud;
    return shoal_statement_verify_event(ev, pk);
}

static void node_reg_hash(void *ud, const struct shoal_instance *ev,
                          uint8_t out[SHOAL_REG_HASH_BYTES])
{
    (void)ud;
    if (shoal_statement_event_hash(ev, out) != 0)
        memset(out, 0, SHOAL_REG_HASH_BYTES); /* out of memory: no proof will match */
}

static void node_reg_root(void *ud, const uint8_t (*sorted)[SHOAL_REG_HASH_BYTES], size_t n,
                          uint8_t root[SHOAL_REG_HASH_BYTES])
{
    (void)ud;
    shoal_statement_set_root(sorted, n, root);
}

static int node_reg_sign_proof(void *ud, struct shoal_reg_proof *p)
{
    struct shoal_node *n = ud;
    shoal_statement_sign_proof(p, n->identity.sk);
    return 0;
}

static bool node_reg_verify_proof(void *ud, const struct shoal_reg_proof *p,
                                  const uint8_t pk[SHOAL_REG_PK_BYTES])
{
    (void)ud;
    return shoal_statement_verify_proof(p, pk);
}

/* Our own principal: our name, our key and the scope we may register in.
 * Returns 0 or SHOAL_EINVAL (a bad scope pattern). */
static int node_own_principal(struct shoal_node *n, const char *name, const char *scope)
{
    struct shoal_principal p;
    memset(&p, 0, sizeof(p));
    memcpy(p.name, name, strnlen(name, SHOAL_NAME_MAX - 1));
    memcpy(p.pk, n->identity.pk, sizeof(p.pk));
    p.not_after = UINT64_MAX;
    if (node_parse_scope(&p, scope) != 0)
        return SHOAL_EINVAL;
    return shoal_principals_put(&n->principals, &p, true);
}

struct shoal_node *shoal_node_new(struct ev_loop *loop, const struct shoal_node_config *c, int *err)
{
    struct shoal_swim_config sc = c->swim;
    struct shoal_registry_config rc_cfg = c->registry;
    struct shoal_node *n;
    int rc = 0;

    if (sc.max_datagram < SHOAL_ENVELOPE_BYTES + SHOAL_MSG_BASE_BYTES || sc.max_datagram > 65507) {
        rc = SHOAL_EINVAL;
        goto fail_early;
    }
    n = calloc(1, sizeof(*n) + sc.max_datagram);
    if (!n) {
        rc = SHOAL_ENOMEM;
        goto fail_early;
    }
    n->loop = loop;
    n->max_datagram = sc.max_datagram;
    n->identity = c->identity;
    shoal_principals_init(&n->principals, NODE_PRINCIPALS_MAX);
    n->has_cluster_key = c->has_cluster_key;
    memcpy(n->cluster_pk, c->cluster_pk, sizeof(n->cluster_pk));
    n->event = c->event;
    n->left = c->left;
    n->reg_changed = c->reg_changed;
    n->persisted = c->persisted;
    n->ud = c->ud;
    n->log.fd = -1;
    ev_init(&n->timer, node_timer);
    n->timer.data = n;
    if (c->data_dir && !(n->data_dir = strdup(c->data_dir))) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }

    if ((rc = node_bind(n, &c->bind)) != 0)
        goto fail;
    n->addr = sc.addr.family ? sc.addr : n->bound;

    n->wire = shoal_wire_new(&n->identity, n->has_cluster_key ? n->cluster_pk : NULL, c->seq_start,
                             n->max_datagram);
    if (!n->wire) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }

    /* The registry first: swim's first events are told to it. */
    if (rc_cfg.max_stream_part == 0)
        shoal_registry_config_defaults(&rc_cfg);
    memcpy(rc_cfg.self, sc.name, sizeof(rc_cfg.self));
    rc_cfg.generation = sc.generation;
    rc_cfg.gossip_interval_ms = sc.gossip_interval_ms;
    rc_cfg.gossip_fanout = sc.gossip_fanout;
    rc_cfg.retransmit_mult = sc.retransmit_mult;
    rc_cfg.max_datagram = sc.max_datagram;
    rc_cfg.ud = n;
    rc_cfg.send = node_reg_send;
    rc_cfg.peers = node_reg_peers;
    rc_cfg.changed = node_reg_changed;
    rc_cfg.principals = &n->principals;
    rc_cfg.sign = node_reg_sign;
    rc_cfg.verify = node_reg_verify;
    rc_cfg.event_hash = node_reg_hash;
    rc_cfg.set_root = node_reg_root;
    rc_cfg.sign_proof = node_reg_sign_proof;
    rc_cfg.verify_proof = node_reg_verify_proof;
    if ((rc = node_own_principal(n, sc.name, c->own_scope)) != 0)
        goto fail;
    if (c->n_peer_scopes && !(n->peer_scopes = calloc(c->n_peer_scopes, sizeof(char *)))) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < c->n_peer_scopes; i++) {
        struct shoal_principal p = {.n_scopes = 0};
        const char *eq = strchr(c->peer_scopes[i], '=');
        if (!eq || node_parse_scope(&p, eq + 1) != 0) {
            rc = SHOAL_EINVAL;
            goto fail;
        }
        if (!(n->peer_scopes[n->n_peer_scopes++] = strdup(c->peer_scopes[i]))) {
            rc = SHOAL_ENOMEM;
            goto fail;
        }
    }
    rc_cfg.member_addr = node_reg_member_addr;
    n->reg = shoal_registry_new(&rc_cfg, &rc);
    if (!n->reg) {
        if (rc == 0)
            rc = SHOAL_EINVAL;
        goto fail;
    }
    if (n->data_dir && (rc = index_lease_start(n)) != 0)
        goto fail;

    sc.addr = n->addr;
    sc.ud = n;
    sc.send = node_send;
    sc.event = node_event;
    sc.fallback_ping = node_fallback_ping;
    n->swim = shoal_swim_new(&sc, shoal_node_clock_ms(), &rc);
    if (!n->swim) {
        if (rc == 0)
            rc = SHOAL_EINVAL;
        goto fail;
    }

    if (c->n_restore || c->restore_version) {
        rc = shoal_registry_restore(n->reg, shoal_node_clock_ms(), c->restore, c->n_restore,
                                    c->restore_version);
        if (rc != 0)
            goto fail;
        shoal_log_info("registry", "restored %zu instance%s (version %" PRIu64 ")", c->n_restore,
                       c->n_restore == 1 ? "" : "s", c->restore_version);
    }
    /* Restored instances are re-announced under the new generation: the
     * snapshot is rewritten with their new versions at once, and the log
     * starts empty (its records are in the snapshot now). */
    if (n->data_dir) {
        n->dirty = n->compact = true;
        ev_idle_init(&n->again, node_again);
        ev_prepare_init(&n->prepare, node_prepare);
        n->prepare.data = n;
        ev_prepare_start(loop, &n->prepare);
        ev_unref(loop); /* the prepare watcher alone does not keep the loop running */
        (void)shoal_node_persist(n);
    }
    node_after_input(n, 0);
    return n;

fail:
    shoal_node_free(n);
fail_early:
    if (err)
        *err = rc;
    return NULL;
}

void shoal_node_free(struct shoal_node *n)
{
    if (!n)
        return;
    ev_timer_stop(n->loop, &n->timer);
    if (ev_is_active(&n->prepare)) {
        ev_ref(n->loop);
        ev_prepare_stop(n->loop, &n->prepare);
    }
    if (ev_is_active(&n->again))
        ev_idle_stop(n->loop, &n->again);
    /* The stream first: closing connections calls nothing back. */
    shoal_stream_free(n->stream);
    shoal_swim_free(n->swim);
    shoal_registry_free(n->reg);
    if (n->wire)
        shoal_wire_free(n->wire);
    shoal_udp_free(n->udp);
    explicit_bzero(&n->identity, sizeof(n->identity)); /* the secret key */
    shoal_principals_close(&n->principals);
    for (size_t i = 0; i < n->n_peer_scopes; i++)
        free(n->peer_scopes[i]);
    free(n->peer_scopes);
    free(n->frame);
    free(n->data_dir);
    pending_clear(n);
    shoal_reglog_close(&n->log);
    free(n->logbuf);
    free(n->logev);
    free(n);
}

int shoal_node_join(struct shoal_node *n, const struct shoal_addr *seeds, size_t count)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc = shoal_swim_join(n->swim, shoal_node_clock_ms(), seeds, count);
    node_after_input(n, 0);
    return rc;
}

void shoal_node_leave(struct shoal_node *n)
{
    if (n->leaving)
        return;
    int64_t now = shoal_node_clock_ms();
    /* Write anything still pending first: the leave freezes the file. */
    (void)shoal_node_persist(n);
    n->leaving = true;
    /* Our deregistrations are queued for gossip before the member leaves;
     * others also drop a leaver's instances when they see it left. */
    shoal_registry_leave(n->reg, now);
    shoal_swim_leave(n->swim, now);
    node_after_input(n, 0);
}

bool shoal_node_leaving(const struct shoal_node *n) { return n->leaving; }

int shoal_node_register(struct shoal_node *n, const struct shoal_instance *spec, const char **why)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    /* Our instances must fit the data dir file, which is read back whole
     * (at most one frame's worth). Refused before anything changes. */
    size_t cost = own_cost(n, spec->id);
    if (cost == SIZE_MAX ||
        cost + shoal_instance_cost(spec) + SHOAL_NAME_MAX > SHOAL_STREAM_FRAME_MAX) {
        if (why)
            *why = "this node's own instances would exceed what its data dir holds (4 MiB "
                   "encoded); register it on another node";
        return SHOAL_ETOOBIG;
    }
    int rc =
        shoal_registry_register(n->reg, shoal_node_clock_ms(), shoal_node_wall_ms(), spec, why);
    node_after_input(n, 0);
    return rc;
}

int shoal_node_deregister(struct shoal_node *n, const char *id)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc = shoal_registry_deregister(n->reg, shoal_node_clock_ms(), id);
    node_after_input(n, 0);
    return rc;
}

int shoal_node_heartbeat(struct shoal_node *n, const char *id)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc = shoal_registry_heartbeat(n->reg, shoal_node_clock_ms(), shoal_node_wall_ms(), id);
    node_after_input(n, 0);
    return rc;
}

int shoal_node_ttl_set(struct shoal_node *n, const char *id, uint8_t health)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc =
        shoal_registry_ttl_set(n->reg, shoal_node_clock_ms(), shoal_node_wall_ms(), id, health);
    node_after_input(n, 0);
    return rc;
}

int shoal_node_set_health(struct shoal_node *n, const char *id, uint8_t health)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc = shoal_registry_set_health(n->reg, shoal_node_clock_ms(), id, health);
    node_after_input(n, 0);
    return rc;
}

int shoal_node_check_result(struct shoal_node *n, const char *id, uint32_t index,
                            uint8_t status, const char *output)
{
    if (n->leaving)
        return SHOAL_ESTATE;
    int rc = shoal_registry_check_result(n->reg, shoal_node_clock_ms(), id, index, status, output);
    node_after_input(n, 0);
    return rc;
}

struct shoal_swim *shoal_node_swim(const struct shoal_node *n) { return n->swim; }

struct shoal_registry *shoal_node_registry(const struct shoal_node *n) { return n->reg; }
struct shoal_principals *shoal_node_principals(struct shoal_node *n) { return &n->principals; }

const struct shoal_stream_counters *shoal_node_stream_counters(const struct shoal_node *n)
{
    return shoal_stream_counters(n->stream);
}

const struct shoal_node_counters *shoal_node_counters(const struct shoal_node *n)
{
    return &n->counters;
}

const struct shoal_addr *shoal_node_addr(const struct shoal_node *n) { return &n->addr; }

const struct shoal_addr *shoal_node_bound(const struct shoal_node *n) { return &n->bound; }

bool shoal_node_has_cluster_key(const struct shoal_node *n) { return n->has_cluster_key; }

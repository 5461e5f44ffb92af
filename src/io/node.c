/* node.c -- drives one sans-IO SWIM core from libev: UDP in, UDP out, one timer.
 *
 * Inputs: a datagram (wire-opened, then shoal_swim_recv), the timer
 * (shoal_swim_tick), a local join or leave. After each input batch the single
 * ev_timer is re-armed to shoal_swim_next_deadline(). Every datagram that
 * wire refuses is counted by reason and changes nothing. Events from core are
 * logged at info ("swim" module) and then passed to the optional observer.
 */
#include "io/node.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/log.h"
#include "io/udp.h"

/* A deadline farther than this is re-checked anyway; ticking early is a
 * no-op for core, and it bounds the damage of a clock surprise. */
#define NODE_MAX_SLEEP_S 60.0
#define NODE_STUCK_BACKOFF_S 0.001

struct shoal_node {
    struct ev_loop *loop;
    struct shoal_udp *udp;
    struct shoal_wire *wire;
    struct shoal_swim *swim;
    ev_timer timer;
    struct shoal_addr addr;  /* advertised */
    struct shoal_addr bound; /* socket */
    size_t max_datagram;
    bool has_cluster_key;
    bool leaving, left_reported;
    struct shoal_identity identity; /* wire may keep a pointer: it lives here */
    uint8_t cluster_pk[SHOAL_PK_BYTES];
    void (*event)(void *ud, const struct shoal_event *ev);
    void (*left)(void *ud);
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

/* Logs only the 1st, 2nd, 4th, ... and then every 1024th occurrence: a
 * persistent fault stays visible without flooding the log. */
static bool log_sampled(uint64_t count) { return (count & (count - 1)) == 0 || count % 1024 == 0; }

/* Arms the one timer for core's next deadline, at least min_s from now. */
static void node_rearm(struct shoal_node *n, double min_s)
{
    int64_t deadline_ms = shoal_swim_next_deadline(n->swim);
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

/* Called after every input: reports a finished leave, re-arms the timer. */
static void node_after_input(struct shoal_node *n, double min_s)
{
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
    if (n->event)
        n->event(n->ud, ev);
}

static void node_datagram(void *ud, const uint8_t *buf, size_t len, const struct shoal_addr *src)
{
    struct shoal_node *n = ud;
    char a[SHOAL_ADDR_STRLEN];
    int drop = SHOAL_DROP_INVALID;

    n->counters.packets_in++;
    n->counters.bytes_in += len;
    if (len > n->max_datagram) {
        drop = SHOAL_DROP_TOO_LARGE;
    } else if (shoal_wire_open(n->wire, buf, len, &n->msg, &drop) == 0) {
        shoal_swim_recv(n->swim, shoal_node_clock_ms(), src, &n->msg);
        return;
    }
    if (drop < 0 || drop >= SHOAL_DROP_COUNT)
        drop = SHOAL_DROP_INVALID;
    n->counters.drops[drop]++;
    if (shoal_log_enabled(SHOAL_LOG_DEBUG))
        shoal_log_debug("wire", "dropped %zu%s bytes from %s: %s", len,
                        len > n->max_datagram ? "+" : "", shoal_addr_format(src, a, sizeof(a)),
                        shoal_drop_name(drop));
}

static void node_batch_done(void *ud) { node_after_input(ud, 0); }

static void node_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_node *n = w->data;
    int64_t now = shoal_node_clock_ms();
    double min_s = 0;
    n->counters.timer_fires++;
    shoal_swim_tick(n->swim, now);
    if (shoal_swim_next_deadline(n->swim) <= now) {
        /* A tick must move the deadline past now; if core fails to, wait
         * a millisecond rather than spin the CPU, and say so. */
        n->counters.stuck_deadlines++;
        if (log_sampled(n->counters.stuck_deadlines))
            shoal_log_warn("swim",
                           "deadline did not advance past %" PRId64 " after a tick (%" PRIu64
                           " so far)",
                           now, n->counters.stuck_deadlines);
        min_s = NODE_STUCK_BACKOFF_S;
    }
    node_after_input(n, min_s);
}

struct shoal_node *shoal_node_new(struct ev_loop *loop, const struct shoal_node_config *c, int *err)
{
    struct shoal_swim_config sc = c->swim;
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
    n->has_cluster_key = c->has_cluster_key;
    memcpy(n->cluster_pk, c->cluster_pk, sizeof(n->cluster_pk));
    n->event = c->event;
    n->left = c->left;
    n->ud = c->ud;

    n->udp = shoal_udp_new(loop, &c->bind, n->max_datagram, node_datagram, node_batch_done, n, &rc);
    if (!n->udp)
        goto fail;
    shoal_udp_local_addr(n->udp, &n->bound);
    n->addr = sc.addr.family ? sc.addr : n->bound;

    n->wire = shoal_wire_new(&n->identity, n->has_cluster_key ? n->cluster_pk : NULL, c->seq_start,
                             n->max_datagram);
    if (!n->wire) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }

    sc.addr = n->addr;
    sc.ud = n;
    sc.send = node_send;
    sc.event = node_event;
    n->swim = shoal_swim_new(&sc, shoal_node_clock_ms(), &rc);
    if (!n->swim) {
        if (rc == 0)
            rc = SHOAL_EINVAL;
        goto fail;
    }
    ev_init(&n->timer, node_timer);
    n->timer.data = n;
    node_rearm(n, 0);
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
    if (n->swim) {
        ev_timer_stop(n->loop, &n->timer);
        shoal_swim_free(n->swim);
    }
    if (n->wire)
        shoal_wire_free(n->wire);
    shoal_udp_free(n->udp);
    explicit_bzero(&n->identity, sizeof(n->identity)); /* the secret key */
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
    n->leaving = true;
    shoal_swim_leave(n->swim, shoal_node_clock_ms());
    node_after_input(n, 0);
}

bool shoal_node_leaving(const struct shoal_node *n) { return n->leaving; }

struct shoal_swim *shoal_node_swim(const struct shoal_node *n) { return n->swim; }

const struct shoal_node_counters *shoal_node_counters(const struct shoal_node *n)
{
    return &n->counters;
}

const struct shoal_addr *shoal_node_addr(const struct shoal_node *n) { return &n->addr; }

const struct shoal_addr *shoal_node_bound(const struct shoal_node *n) { return &n->bound; }

bool shoal_node_has_cluster_key(const struct shoal_node *n) { return n->has_cluster_key; }

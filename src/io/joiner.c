/* joiner.c -- join through HOST:PORT seeds, resolved at every attempt, with
 * backoff and one log line per failed attempt (joiner.h).
 *
 * getaddrinfo() blocks, so each attempt's resolution runs in a short-lived
 * thread that only fills this joiner's result fields and wakes the loop
 * (ev_async); the loop joins the thread before reading them. Everything else
 * runs on the loop.
 */
#include "io/joiner.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/swim.h"
#include "io/log.h"
#include "io/node.h"
#include "shoal/error.h"

enum joiner_state { J_RESOLVING, J_WAITING, J_BACKOFF };

struct shoal_joiner {
    struct shoal_joinset *set;
    struct shoal_joiner *next;
    struct shoal_joiner_config cfg;
    char **seeds;
    enum joiner_state state;
    uint32_t attempt, backoff_ms;
    ev_timer timer;
    ev_async wake;
    pthread_t thread;
    bool thread_running;
    /* Written by the thread, read by the loop after pthread_join(). */
    struct shoal_addr addrs[SHOAL_JOIN_MAX_ADDRS];
    size_t n_addrs;
    char resolve_why[512];
};

static void *resolve_thread(void *arg)
{
    struct shoal_joiner *j = arg;
    size_t used = 0;
    j->n_addrs = 0;
    j->resolve_why[0] = '\0';
    for (size_t i = 0; i < j->cfg.n_seeds; i++) {
        char host[SHOAL_HOST_MAX], port[8];
        uint16_t p;
        (void)shoal_hostport_split(j->seeds[i], host, sizeof(host), &p); /* checked at start */
        snprintf(port, sizeof(port), "%u", p);
        struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *res = NULL, *ai;
        int rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0) {
            int n = snprintf(j->resolve_why + used, sizeof(j->resolve_why) - used,
                             "%scannot resolve %s: %s", used ? "; " : "", host,
                             rc == EAI_SYSTEM ? "system error" : gai_strerror(rc));
            if (n > 0 && (size_t)n < sizeof(j->resolve_why) - used)
                used += (size_t)n;
            continue;
        }
        for (ai = res; ai && j->n_addrs < SHOAL_JOIN_MAX_ADDRS; ai = ai->ai_next) {
            struct shoal_addr a = {0};
            if (ai->ai_family == AF_INET) {
                const struct sockaddr_in *sin = (const void *)ai->ai_addr;
                a.family = 4;
                memcpy(a.ip, &sin->sin_addr, 4);
                a.port = p;
            } else if (ai->ai_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const void *)ai->ai_addr;
                a.family = 6;
                memcpy(a.ip, &sin6->sin6_addr, 16);
                a.port = p;
            } else {
                continue;
            }
            bool dup = false;
            for (size_t k = 0; k < j->n_addrs; k++)
                dup |= shoal_addr_eq(&j->addrs[k], &a);
            if (!dup)
                j->addrs[j->n_addrs++] = a;
        }
        freeaddrinfo(res);
    }
    ev_async_send(j->set->loop, &j->wake);
    return NULL;
}

static void joiner_free(struct shoal_joiner *j)
{
    struct shoal_joinset *set = j->set;
    for (struct shoal_joiner **pp = &set->head; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            set->count--;
            break;
        }
    ev_timer_stop(set->loop, &j->timer);
    if (j->thread_running) /* it may still ev_async_send: let it finish first */
        pthread_join(j->thread, NULL);
    ev_async_stop(set->loop, &j->wake);
    for (size_t i = 0; i < j->cfg.n_seeds; i++)
        free(j->seeds[i]);
    free(j->seeds);
    free(j);
}

static void joiner_finish(struct shoal_joiner *j, bool ok, const char *text)
{
    void (*done)(void *, bool, const char *) = j->cfg.done;
    void *ud = j->cfg.ud;
    char copy[1200]; /* text may point into j (its resolve_why) */
    if (text)
        snprintf(copy, sizeof(copy), "%s", text);
    joiner_free(j);
    if (done)
        done(ud, ok, text ? copy : NULL);
}

static void attempt_start(struct shoal_joiner *j)
{
    j->attempt++;
    j->state = J_RESOLVING;
    if (pthread_create(&j->thread, NULL, resolve_thread, j) != 0) {
        /* No thread: resolve on the loop rather than not at all. */
        j->thread_running = false;
        resolve_thread(j);
        return;
    }
    j->thread_running = true;
}

/* The addresses of this attempt, as text for log lines. */
static void addrs_text(const struct shoal_joiner *j, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < j->n_addrs && used < len; i++) {
        char a[SHOAL_ADDR_STRLEN];
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                         shoal_addr_format(&j->addrs[i], a, sizeof(a)));
        if (n > 0)
            used += (size_t)n;
    }
}

static void attempt_failed(struct shoal_joiner *j, const char *why)
{
    char seeds[512];
    size_t used = 0;
    seeds[0] = '\0';
    for (size_t i = 0; i < j->cfg.n_seeds && used < sizeof(seeds); i++) {
        int n = snprintf(seeds + used, sizeof(seeds) - used, "%s%s", i ? " " : "", j->seeds[i]);
        if (n > 0)
            used += (size_t)n;
    }
    bool last = j->cfg.max_attempts && j->attempt >= j->cfg.max_attempts;
    if (last) {
        shoal_log_warn("join", "%s attempt %u of %u through %s failed: %s; giving up",
                       j->cfg.what, j->attempt, j->cfg.max_attempts, seeds, why);
        joiner_finish(j, false, why);
        return;
    }
    shoal_log_warn("join", "%s attempt %u through %s failed: %s; next attempt in %.1fs",
                   j->cfg.what, j->attempt, seeds, why, j->backoff_ms / 1000.0);
    j->state = J_BACKOFF;
    ev_timer_set(&j->timer, j->backoff_ms / 1000.0, 0.);
    ev_timer_start(j->set->loop, &j->timer);
    j->backoff_ms = j->backoff_ms >= j->cfg.retry_max_interval_ms / 2 ? j->cfg.retry_max_interval_ms
                                                                      : j->backoff_ms * 2;
}

static void on_resolved(struct ev_loop *loop, ev_async *w, int revents)
{
    struct shoal_joiner *j = w->data;
    char why[1024];
    if (j->state != J_RESOLVING)
        return;
    if (j->thread_running) {
        pthread_join(j->thread, NULL);
        j->thread_running = false;
    }
    if (j->n_addrs == 0) {
        attempt_failed(j, j->resolve_why[0] ? j->resolve_why : "no address found");
        return;
    }
    int rc = shoal_node_join(j->set->node, j->addrs, j->n_addrs);
    if (rc != 0) {
        char a[512];
        addrs_text(j, a, sizeof(a));
        snprintf(why, sizeof(why), "%s (%s)",
                 rc == SHOAL_EINVAL ? "no address other than this node's own"
                 : rc == SHOAL_ESTATE ? "the agent is leaving"
                                      : shoal_strerror(rc),
                 a);
        if (rc == SHOAL_ESTATE) {
            joiner_finish(j, false, why);
            return;
        }
        attempt_failed(j, why);
        return;
    }
    j->state = J_WAITING;
    ev_timer_set(&j->timer, j->cfg.window_ms / 1000.0, 0.);
    ev_timer_start(loop, &j->timer);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_joiner *j = w->data;
    if (j->state == J_BACKOFF) {
        attempt_start(j);
        if (!j->thread_running)
            on_resolved(loop, &j->wake, 0);
        return;
    }
    if (j->state != J_WAITING)
        return;
    char a[512], why[1200];
    addrs_text(j, a, sizeof(a));
    snprintf(why, sizeof(why), "no answer within %.1fs from %s%s%s", j->cfg.window_ms / 1000.0, a,
             j->resolve_why[0] ? "; " : "", j->resolve_why);
    attempt_failed(j, why);
}

struct shoal_joiner *shoal_joiner_start(struct shoal_joinset *set,
                                        const struct shoal_joiner_config *cfg, int *err)
{
    if (cfg->n_seeds == 0 || cfg->n_seeds > SHOAL_JOIN_MAX_SEEDS || cfg->window_ms == 0) {
        *err = SHOAL_EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_seeds; i++) {
        char host[SHOAL_HOST_MAX];
        uint16_t p;
        if (shoal_hostport_split(cfg->seeds[i], host, sizeof(host), &p) != 0) {
            *err = SHOAL_EINVAL;
            return NULL;
        }
    }
    /* Addresses only (the usual case): no resolver, so the first attempt
     * starts now and a seed set that is only this node is refused at once. */
    struct shoal_addr direct[SHOAL_JOIN_MAX_ADDRS];
    size_t n_direct = 0;
    bool numeric = cfg->n_seeds <= SHOAL_JOIN_MAX_ADDRS;
    for (size_t i = 0; numeric && i < cfg->n_seeds; i++)
        numeric = shoal_addr_parse(cfg->seeds[i], &direct[n_direct++]) == 0;
    if (numeric) {
        int rc = shoal_node_join(set->node, direct, n_direct);
        if (rc != 0) {
            *err = rc;
            return NULL;
        }
    }
    struct shoal_joiner *j = calloc(1, sizeof(*j));
    if (!j || !(j->seeds = calloc(cfg->n_seeds, sizeof(char *)))) {
        free(j);
        *err = SHOAL_ENOMEM;
        return NULL;
    }
    j->set = set;
    j->cfg = *cfg;
    for (size_t i = 0; i < cfg->n_seeds; i++) {
        if (!(j->seeds[i] = strdup(cfg->seeds[i]))) {
            j->cfg.n_seeds = i;
            j->next = NULL;
            for (size_t k = 0; k < i; k++)
                free(j->seeds[k]);
            free(j->seeds);
            free(j);
            *err = SHOAL_ENOMEM;
            return NULL;
        }
    }
    j->cfg.seeds = NULL;
    if (!j->cfg.retry_interval_ms)
        j->cfg.retry_interval_ms = 1000;
    if (j->cfg.retry_max_interval_ms < j->cfg.retry_interval_ms)
        j->cfg.retry_max_interval_ms = j->cfg.retry_interval_ms;
    if (!j->cfg.what)
        j->cfg.what = "join";
    j->backoff_ms = j->cfg.retry_interval_ms;
    ev_init(&j->timer, on_timer);
    j->timer.data = j;
    ev_async_init(&j->wake, on_resolved);
    j->wake.data = j;
    ev_async_start(set->loop, &j->wake);
    j->next = set->head;
    set->head = j;
    set->count++;
    if (numeric) {
        j->attempt = 1;
        memcpy(j->addrs, direct, n_direct * sizeof(direct[0]));
        j->n_addrs = n_direct;
        j->state = J_WAITING;
        ev_timer_set(&j->timer, j->cfg.window_ms / 1000.0, 0.);
        ev_timer_start(set->loop, &j->timer);
        return j;
    }
    attempt_start(j);
    return j;
}

void shoal_joinset_event(struct shoal_joinset *set, const struct shoal_event *ev)
{
    if (ev->type != SHOAL_EV_JOINED)
        return;
    struct shoal_joiner *j = set->head, *next;
    for (; j; j = next) {
        next = j->next;
        if (j->state == J_RESOLVING) /* addrs[] belongs to the thread now */
            continue;
        for (size_t i = 0; i < j->n_addrs; i++) {
            if (shoal_addr_eq(&j->addrs[i], &ev->other_addr)) {
                char a[SHOAL_ADDR_STRLEN];
                shoal_addr_format(&ev->other_addr, a, sizeof(a));
                shoal_log_info("join", "%s attempt %u: %s answered", j->cfg.what, j->attempt, a);
                joiner_finish(j, true, a);
                next = set->head; /* done() may have changed the list: start over */
                break;
            }
        }
    }
}

void shoal_joinset_close(struct shoal_joinset *set)
{
    while (set->head)
        joiner_finish(set->head, false, NULL);
}

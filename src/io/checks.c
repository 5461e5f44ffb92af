/* checks.c -- active HTTP and TCP health checks on the agent's libev loop.
 *
 * One `probe` per (instance, check spec), keyed by a string of its spec so
 * that a changed spec is a new probe. Each probe has a repeating ev_timer;
 * when it fires the probe starts if fewer than max_in_flight run, else it
 * waits in a FIFO. HTTP: libcurl multi-socket (CURLMOPT_SOCKETFUNCTION ->
 * ev_io, CURLMOPT_TIMERFUNCTION -> ev_timer, curl_multi_socket_action on
 * events); the threaded resolver keeps name lookups off the loop. TCP: a
 * non-blocking connect to a numeric IP, ev_io on writability, SO_ERROR.
 */
#include "io/checks.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/strmap.h"
#include "io/log.h"
#include "shoal/error.h"

const double shoal_checks_latency_bounds[SHOAL_CHECKS_LATENCY_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

#define BODY_KEEP 128 /* bytes of an HTTP body kept for the output */

struct probe {
    struct shoal_checks *cs;
    char *key; /* id \x1f index \x1f spec: the map key */
    char *id;
    uint32_t index;
    struct shoal_check spec; /* target owned; status/output unused */
    uint8_t reported;        /* the damped status last reported */
    struct shoal_check_damp damp;
    bool mark, running, queued;
    bool phased; /* the second run has been placed at a random phase */
    struct probe *qnext;
    ev_timer tick;
    int64_t started_us;
    /* TCP */
    int fd;
    ev_io io;
    ev_timer deadline;
    /* HTTP */
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
    char body[BODY_KEEP + 1];
    size_t body_len;
};

struct sockw { /* one curl socket */
    ev_io io;
    struct shoal_checks *cs;
};

struct shoal_checks {
    struct ev_loop *loop;
    struct shoal_checks_config cfg;
    struct shoal_strmap probes;
    uint64_t seen_version;
    bool synced;
    ev_timer poll;
    CURLM *multi;
    ev_timer curl_timer;
    struct probe *qhead, *qtail;
    uint64_t rng;
    struct shoal_checks_stats stats;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* xorshift64*: jitter only, seeded from the clock and the pointer. */
static uint64_t rnd(struct shoal_checks *cs)
{
    uint64_t x = cs->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    cs->rng = x;
    return x * 2685821657736338717ULL;
}

void shoal_checks_config_defaults(struct shoal_checks_config *c)
{
    memset(c, 0, sizeof(*c));
    c->rise = 1;
    c->fall = 1;
    c->max_in_flight = 256;
    c->poll_ms = 200;
    c->first_max_ms = 1000;
}

uint8_t shoal_check_damp_feed(struct shoal_check_damp *d, uint8_t reported, uint8_t result,
                              uint32_t rise, uint32_t fall)
{
    if (result == SHOAL_PASSING) {
        d->failures = 0;
        if (d->successes < UINT32_MAX)
            d->successes++;
        return d->successes >= rise ? SHOAL_PASSING : reported;
    }
    d->successes = 0;
    if (d->failures < UINT32_MAX)
        d->failures++;
    return d->failures >= fall ? result : reported;
}

/* ------------------------------------------------------------ results */

static void start_probe(struct probe *p);

static void queue_pop_start(struct shoal_checks *cs)
{
    while (cs->qhead && cs->stats.in_flight < cs->cfg.max_in_flight) {
        struct probe *p = cs->qhead;
        cs->qhead = p->qnext;
        if (!cs->qhead)
            cs->qtail = NULL;
        p->qnext = NULL;
        p->queued = false;
        cs->stats.queued--;
        start_probe(p);
    }
}

static void queue_remove(struct shoal_checks *cs, struct probe *p)
{
    struct probe **pp = &cs->qhead, *prev = NULL;
    while (*pp && *pp != p) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp)
        return;
    *pp = p->qnext;
    if (cs->qtail == p)
        cs->qtail = prev;
    p->qnext = NULL;
    p->queued = false;
    cs->stats.queued--;
}

/* Stops whatever the probe has running (no result). */
static void probe_cancel(struct probe *p)
{
    struct shoal_checks *cs = p->cs;
    if (p->queued)
        queue_remove(cs, p);
    if (!p->running)
        return;
    ev_timer_stop(cs->loop, &p->deadline);
    if (p->fd >= 0) {
        ev_io_stop(cs->loop, &p->io);
        close(p->fd);
        p->fd = -1;
    }
    if (p->easy) {
        curl_multi_remove_handle(cs->multi, p->easy);
        curl_easy_cleanup(p->easy);
        p->easy = NULL;
    }
    p->running = false;
    cs->stats.in_flight--;
}

/* A probe finished with a raw result: count, damp, report, start the next. */
static void probe_done(struct probe *p, uint8_t result, const char *text)
{
    struct shoal_checks *cs = p->cs;
    double secs = (double)(mono_us() - p->started_us) / 1e6;
    probe_cancel(p);
    cs->stats.run++;
    cs->stats.failed += result != SHOAL_PASSING;
    cs->stats.latency_count++;
    cs->stats.latency_sum_s += secs;
    for (int i = 0; i < SHOAL_CHECKS_LATENCY_BUCKETS; i++)
        cs->stats.latency_buckets[i] += secs <= shoal_checks_latency_bounds[i];

    uint32_t rise = p->spec.rise ? p->spec.rise : cs->cfg.rise;
    uint32_t fall = p->spec.fall ? p->spec.fall : cs->cfg.fall;
    uint8_t status = shoal_check_damp_feed(&p->damp, p->reported, result, rise, fall);
    char out[SHOAL_CHECK_OUTPUT_MAX];
    if (status != result)
        snprintf(out, sizeof(out), "%.200s (%s %u/%u before %s)", text,
                 result == SHOAL_PASSING ? "success" : "failure",
                 result == SHOAL_PASSING ? p->damp.successes : p->damp.failures,
                 result == SHOAL_PASSING ? rise : fall, shoal_health_name(result));
    else
        snprintf(out, sizeof(out), "%s", text);
    p->reported = status;
    if (cs->cfg.result)
        cs->cfg.result(cs->cfg.ud, p->id, p->index, status, out);
    queue_pop_start(cs);
}

/* --------------------------------------------------------------- TCP */

static void tcp_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct probe *p = w->data;
    char text[96];
    p->cs->stats.timeouts++;
    snprintf(text, sizeof(text), "TCP connect %.60s: timeout after %ums", p->spec.target,
             p->spec.timeout_ms);
    probe_done(p, SHOAL_CRITICAL, text);
}

static void tcp_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct probe *p = w->data;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    char text[SHOAL_CHECK_OUTPUT_MAX];
    snprintf(text, sizeof(text), "TCP connect %.100s: %.120s", p->spec.target,
             err ? strerror(err) : "success");
    probe_done(p, err ? SHOAL_CRITICAL : SHOAL_PASSING, text);
}

/* HOST:PORT with a numeric IPv4 or [IPv6] host. 0 or -1. */
static int tcp_target(const char *t, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[SHOAL_CHECK_TARGET_MAX];
    const char *colon = strrchr(t, ':');
    if (!colon || (size_t)(colon - t) >= sizeof(host))
        return -1;
    memcpy(host, t, (size_t)(colon - t));
    host[colon - t] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = 0;
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof(*a);
    return 0;
}

static void tcp_start(struct probe *p)
{
    struct shoal_checks *cs = p->cs;
    struct sockaddr_storage ss;
    socklen_t sl;
    char text[SHOAL_CHECK_OUTPUT_MAX];
    if (tcp_target(p->spec.target, &ss, &sl) != 0) {
        /* A name would need a blocking resolver: numeric hosts only. */
        snprintf(text, sizeof(text), "TCP %.100s: target must be IPv4:PORT or [IPv6]:PORT",
                 p->spec.target);
        probe_done(p, SHOAL_CRITICAL, text);
        return;
    }
    p->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        snprintf(text, sizeof(text), "TCP %.100s: socket: %.100s", p->spec.target, strerror(errno));
        probe_done(p, SHOAL_CRITICAL, text);
        return;
    }
    if (connect(p->fd, (struct sockaddr *)&ss, sl) == 0) {
        snprintf(text, sizeof(text), "TCP connect %.100s: success", p->spec.target);
        probe_done(p, SHOAL_PASSING, text);
        return;
    }
    if (errno != EINPROGRESS) {
        snprintf(text, sizeof(text), "TCP connect %.100s: %.120s", p->spec.target, strerror(errno));
        probe_done(p, SHOAL_CRITICAL, text);
        return;
    }
    ev_io_init(&p->io, tcp_writable, p->fd, EV_WRITE);
    p->io.data = p;
    ev_io_start(cs->loop, &p->io);
    ev_timer_init(&p->deadline, tcp_deadline, p->spec.timeout_ms / 1000.0, 0.);
    p->deadline.data = p;
    ev_timer_start(cs->loop, &p->deadline);
}

/* -------------------------------------------------------------- HTTP */

static size_t http_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct probe *p = ud;
    size_t n = size * nmemb, room = BODY_KEEP - p->body_len;
    memcpy(p->body + p->body_len, data, n < room ? n : room);
    p->body_len += n < room ? n : room;
    p->body[p->body_len] = 0;
    return n;
}

static void http_start(struct probe *p)
{
    struct shoal_checks *cs = p->cs;
    char text[SHOAL_CHECK_OUTPUT_MAX];
    p->easy = curl_easy_init();
    p->body_len = 0;
    p->body[0] = 0;
    p->errbuf[0] = 0;
    if (!p->easy) {
        snprintf(text, sizeof(text), "HTTP GET %.100s: out of memory", p->spec.target);
        probe_done(p, SHOAL_CRITICAL, text);
        return;
    }
    CURL *e = p->easy;
    curl_easy_setopt(e, CURLOPT_URL, p->spec.target);
    curl_easy_setopt(e, CURLOPT_PRIVATE, p);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->spec.timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* Each probe tests a fresh connection, as the service's clients see it. */
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "shoal-check/1");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, p);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (curl_multi_add_handle(cs->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        p->easy = NULL;
        snprintf(text, sizeof(text), "HTTP GET %.100s: cannot start", p->spec.target);
        probe_done(p, SHOAL_CRITICAL, text);
    }
}

static void http_finished(struct probe *p, CURLcode code)
{
    char text[SHOAL_CHECK_OUTPUT_MAX];
    long status = 0;
    uint8_t result;
    if (code != CURLE_OK) {
        if (code == CURLE_OPERATION_TIMEDOUT)
            p->cs->stats.timeouts++;
        snprintf(text, sizeof(text), "HTTP GET %.100s: %.120s", p->spec.target,
                 p->errbuf[0] ? (const char *)p->errbuf : curl_easy_strerror(code));
        result = SHOAL_CRITICAL;
    } else {
        curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
        result = status >= 200 && status < 300 ? SHOAL_PASSING
                 : status == 429               ? SHOAL_WARNING
                                               : SHOAL_CRITICAL;
        snprintf(text, sizeof(text), "HTTP GET %.100s: %ld%s%.128s", p->spec.target, status,
                 p->body_len ? " " : "", p->body);
    }
    probe_done(p, result, text);
}

static void curl_drain(struct shoal_checks *cs)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cs->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct probe *p = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&p);
        if (p)
            http_finished(p, m->data.result);
    }
}

static void curl_io(struct ev_loop *loop, ev_io *w, int revents)
{
    /* The action may remove this socket (curl_sock_cb frees w): copy first. */
    struct shoal_checks *cs = ((struct sockw *)w)->cs;
    int fd = w->fd;
    int action =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(cs->multi, fd, action, &running);
    curl_drain(cs);
}

static void curl_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_checks *cs = w->data;
    int running;
    curl_multi_socket_action(cs->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_drain(cs);
}

static int curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *ud, void *sockp)
{
    struct shoal_checks *cs = ud;
    struct sockw *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(cs->loop, &s->io);
            free(s);
            curl_multi_assign(cs->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1; /* curl fails this transfer */
        s->cs = cs;
        curl_multi_assign(cs->multi, fd, s);
    } else {
        ev_io_stop(cs->loop, &s->io);
    }
    int ev = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_init(&s->io, curl_io, fd, ev);
    ev_io_start(cs->loop, &s->io);
    return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *ud)
{
    struct shoal_checks *cs = ud;
    ev_timer_stop(cs->loop, &cs->curl_timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&cs->curl_timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(cs->loop, &cs->curl_timer);
    }
    return 0;
}

/* ------------------------------------------------------- scheduling */

static void start_probe(struct probe *p)
{
    p->running = true;
    p->fd = -1;
    p->started_us = mono_us();
    p->cs->stats.in_flight++;
    if (p->spec.kind == SHOAL_CHECK_HTTP)
        http_start(p);
    else
        tcp_start(p);
}

static void probe_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct probe *p = w->data;
    struct shoal_checks *cs = p->cs;
    if (!p->phased) {
        /* The first run comes soon after registration (a fresh status); the
         * second lands at a random point of [interval/2, 3*interval/2), so
         * checks registered together spread over their interval instead of
         * firing in the same second every interval. */
        uint32_t iv = p->spec.interval_ms;
        p->phased = true;
        w->repeat = (iv / 2 + (double)(rnd(cs) % (iv + 1))) / 1000.0;
        ev_timer_again(loop, w);
        w->repeat = iv / 1000.0;
    }
    if (p->running || p->queued)
        return; /* still busy from the last interval (queued that long) */
    if (cs->stats.in_flight < cs->cfg.max_in_flight) {
        start_probe(p);
        return;
    }
    p->queued = true;
    cs->stats.queued++;
    if (cs->qtail)
        cs->qtail->qnext = p;
    else
        cs->qhead = p;
    cs->qtail = p;
}

static void probe_free(struct probe *p)
{
    probe_cancel(p);
    ev_timer_stop(p->cs->loop, &p->tick);
    p->cs->stats.configured--;
    free(p->key);
    free(p->id);
    free(p->spec.target);
    free(p);
}

static char *probe_key(const char *id, uint32_t index, const struct shoal_check *c)
{
    size_t n = strlen(id) + strlen(c->target) + 80;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s\x1f%u\x1f%u\x1f%s\x1f%u\x1f%u\x1f%u\x1f%u", id, index, c->kind,
                 c->target, c->interval_ms, c->timeout_ms, c->rise, c->fall);
    return k;
}

static struct probe *probe_new(struct shoal_checks *cs, char *key, const char *id, uint32_t index,
                               const struct shoal_check *c)
{
    struct probe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cs = cs;
    p->key = key;
    p->id = strdup(id);
    p->index = index;
    p->spec = *c;
    p->spec.output = NULL;
    p->spec.target = strdup(c->target);
    p->reported = c->status; /* continue from what the registry holds */
    p->fd = -1;
    if (!p->id || !p->spec.target || shoal_strmap_put(&cs->probes, key, p) != 0) {
        free(p->id);
        free(p->spec.target);
        free(p);
        return NULL;
    }
    cs->stats.configured++;
    /* A new check first runs within min(first_max_ms, interval), jittered
     * so that checks registered together do not fire in one iteration;
     * probe_tick then spreads the later runs over the whole interval. */
    uint32_t first = c->interval_ms < cs->cfg.first_max_ms ? c->interval_ms : cs->cfg.first_max_ms;
    double after = first ? (double)(rnd(cs) % (first + 1)) / 1000.0 : 0.;
    ev_timer_init(&p->tick, probe_tick, after, c->interval_ms / 1000.0);
    p->tick.data = p;
    ev_timer_start(cs->loop, &p->tick);
    return p;
}

void shoal_checks_sync(struct shoal_checks *cs)
{
    uint64_t v = shoal_registry_own_version(cs->cfg.reg);
    if (cs->synced && v == cs->seen_version)
        return;
    size_t n = shoal_registry_own(cs->cfg.reg, NULL, 0);
    const struct shoal_instance **own = n ? malloc(n * sizeof(*own)) : NULL;
    if (n && !own)
        return; /* retried at the next poll */
    n = shoal_registry_own(cs->cfg.reg, own, n);
    for (size_t i = 0; i < cs->probes.cap; i++)
        if (cs->probes.slots[i].key)
            ((struct probe *)cs->probes.slots[i].value)->mark = false;
    bool complete = true;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < own[i]->n_checks; k++) {
            char *key = probe_key(own[i]->id, k, &own[i]->checks[k]);
            struct probe *p = key ? shoal_strmap_get(&cs->probes, key) : NULL;
            if (p)
                free(key);
            else if (key && !(p = probe_new(cs, key, own[i]->id, k, &own[i]->checks[k])))
                free(key);
            if (p)
                p->mark = true;
            else
                complete = false;
        }
    }
    free(own);
    /* Deleting while iterating a backward-shift map skips entries: collect
     * the stale probes first. */
    size_t n_stale = 0;
    for (size_t i = 0; i < cs->probes.cap; i++)
        n_stale += cs->probes.slots[i].key && !((struct probe *)cs->probes.slots[i].value)->mark;
    struct probe **stale = n_stale ? malloc(n_stale * sizeof(*stale)) : NULL;
    if (n_stale && !stale)
        return; /* seen_version unchanged: retried at the next poll */
    n_stale = 0;
    for (size_t i = 0; i < cs->probes.cap; i++) {
        struct probe *p = cs->probes.slots[i].value;
        if (cs->probes.slots[i].key && !p->mark)
            stale[n_stale++] = p;
    }
    for (size_t i = 0; i < n_stale; i++) {
        shoal_strmap_del(&cs->probes, stale[i]->key);
        probe_free(stale[i]);
    }
    free(stale);
    cs->synced = complete;
    cs->seen_version = v;
    queue_pop_start(cs);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents) { shoal_checks_sync(w->data); }

struct shoal_checks *shoal_checks_new(struct ev_loop *loop, const struct shoal_checks_config *c,
                                      int *err)
{
    static bool curl_ready;
    *err = SHOAL_EINVAL;
    if (!c->reg || !c->max_in_flight || !c->poll_ms || c->rise < 1 || c->fall < 1 ||
        c->rise > SHOAL_CHECK_DAMP_MAX || c->fall > SHOAL_CHECK_DAMP_MAX)
        return NULL;
    *err = SHOAL_ENOMEM;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = true;
    }
    struct shoal_checks *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->loop = loop;
    cs->cfg = *c;
    cs->rng = (uint64_t)mono_us() ^ (uint64_t)(uintptr_t)cs ^ 0x9e3779b97f4a7c15ULL;
    cs->multi = curl_multi_init();
    if (!cs->multi) {
        free(cs);
        return NULL;
    }
    curl_multi_setopt(cs->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
    curl_multi_setopt(cs->multi, CURLMOPT_SOCKETDATA, cs);
    curl_multi_setopt(cs->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(cs->multi, CURLMOPT_TIMERDATA, cs);
    ev_timer_init(&cs->curl_timer, curl_timeout, 0., 0.);
    cs->curl_timer.data = cs;
    ev_timer_init(&cs->poll, poll_cb, c->poll_ms / 1000.0, c->poll_ms / 1000.0);
    cs->poll.data = cs;
    ev_timer_start(loop, &cs->poll);
    shoal_checks_sync(cs);
    *err = 0;
    return cs;
}

void shoal_checks_free(struct shoal_checks *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->probes.cap; i++)
        if (cs->probes.slots[i].key)
            probe_free(cs->probes.slots[i].value);
    shoal_strmap_close(&cs->probes);
    ev_timer_stop(cs->loop, &cs->poll);
    ev_timer_stop(cs->loop, &cs->curl_timer);
    curl_multi_cleanup(cs->multi);
    free(cs);
}

const struct shoal_checks_stats *shoal_checks_stats(const struct shoal_checks *cs)
{
    return &cs->stats;
}

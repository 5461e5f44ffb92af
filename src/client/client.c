/* client.c -- the client library: per-service caches, watcher threads,
 * picks, and discovery with retry (see include/shoal/client.h).
 *
 * Each watched service is a struct svc holding the current set as parallel
 * arrays (endpoints, "owner/id" keys, balance candidates) under its own
 * mutex, held only to pick or to swap in a new set: a watcher thread builds
 * the new set outside the lock, so a pick never waits for the network. The
 * service list is under a rwlock (written only when a service is added).
 * Retry uses "full jitter" backoff (AWS architecture blog, "Exponential
 * Backoff And Jitter", 2015): sleep uniform in [0, min(max, base * 2^k)],
 * which spreads the retries of many clients after an agent restart.
 */
#define _GNU_SOURCE
#include "shoal/client.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "client/http.h"
#include "client/internal.h"
#include "client/retry.h"
#include "core/addr.h"
#include "core/balance.h"
#include "core/rng.h"

_Static_assert((int)SHOAL_CLIENT_ROUND_ROBIN == (int)SHOAL_LB_ROUND_ROBIN, "lb values match core");
_Static_assert((int)SHOAL_CLIENT_RANDOM == (int)SHOAL_LB_RANDOM, "lb values match core");
_Static_assert((int)SHOAL_CLIENT_LEAST_CONN == (int)SHOAL_LB_LEAST_CONN, "lb values match core");
_Static_assert((int)SHOAL_CLIENT_IP_HASH == (int)SHOAL_LB_IP_HASH, "lb values match core");

#define DEFAULT_AGENT "127.0.0.1:7947"
#define DEFAULT_WAIT_MS 60000
#define ERR_MAX 512

/* One cached set of passing instances. */
struct set {
    size_t n;
    struct shoal_endpoint *eps;
    char (*keys)[SHOAL_CLIENT_OWNER_MAX + SHOAL_CLIENT_ID_MAX]; /* "owner/id" */
    struct shoal_lb_candidate *cand;
};

struct svc {
    char name[SHOAL_CLIENT_SERVICE_MAX];
    char query[2048]; /* "/v1/instances/NAME?tag=..." */
    size_t ntags;
    char tags[SHOAL_CLIENT_TAGS_MAX][64];
    pthread_mutex_t mu; /* guards set, rr, rng */
    struct set set;
    uint64_t rr;
    struct shoal_rng rng;
    uint64_t index; /* the watcher's own */
    pthread_t thread;
    struct shoal_client *c;
};

struct shoal_client {
    struct shoal_addr agent;
    char agent_str[SHOAL_ADDR_STRLEN];
    struct shoal_client_retry retry;
    uint32_t wait_ms;
    uint64_t seed;
    shoal_client_clock_fn clock;
    shoal_client_sleep_fn sleep;
    void *time_ctx;

    pthread_rwlock_t list_lock; /* guards svcs, nsvcs */
    struct svc **svcs;
    size_t nsvcs, cap;
    pthread_mutex_t watch_mu; /* serializes first fetches */

    pthread_mutex_t rng_mu; /* the caller-side retry jitter */
    struct shoal_rng rng;

    pthread_mutex_t err_mu;
    char err[ERR_MAX];

    int wake_fd;      /* eventfd: readable once free() begins */
    atomic_bool stop;
    pthread_mutex_t stop_mu; /* with stop_cv: the watchers' backoff waits */
    pthread_cond_t stop_cv;

    atomic_uint_fast64_t n_requests, n_errors, n_updates, n_picks;

    pthread_mutex_t change_mu; /* guards change, change_ud */
    shoal_client_change_fn change;
    void *change_ud;
};

static uint64_t default_clock(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void default_sleep(void *ctx, uint64_t ms)
{
    (void)ctx;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void set_error(struct shoal_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(struct shoal_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&c->err_mu);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    pthread_mutex_unlock(&c->err_mu);
    va_end(ap);
}

static void set_free(struct set *s)
{
    free(s->eps);
    free(s->keys);
    free(s->cand);
    memset(s, 0, sizeof(*s));
}

static bool copy_str(char *dst, size_t cap, json_t *v)
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) >= cap)
        return false;
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

/* Decodes {"index":N,"instances":[...]} into *out (passing instances only).
 * Returns 0 or SHOAL_EDECODE / SHOAL_ENOMEM, with a message in why. */
static int decode_set(const char *body, size_t len, struct set *out, uint64_t *index, char *why,
                      size_t wlen)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, 0, &je);
    memset(out, 0, sizeof(*out));
    if (!doc) {
        snprintf(why, wlen, "bad JSON from the agent: %s", je.text);
        return SHOAL_EDECODE;
    }
    json_t *idx = json_object_get(doc, "index"), *arr = json_object_get(doc, "instances");
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 || !json_is_array(arr)) {
        snprintf(why, wlen, "the agent's answer has no 'index' or 'instances'");
        json_decref(doc);
        return SHOAL_EDECODE;
    }
    size_t cap = json_array_size(arr) ? json_array_size(arr) : 1;
    out->eps = calloc(cap, sizeof(*out->eps));
    out->keys = calloc(cap, sizeof(*out->keys));
    out->cand = calloc(cap, sizeof(*out->cand));
    if (!out->eps || !out->keys || !out->cand) {
        set_free(out);
        json_decref(doc);
        snprintf(why, wlen, "out of memory");
        return SHOAL_ENOMEM;
    }
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
    {
        struct shoal_endpoint *e = &out->eps[out->n];
        json_t *port = json_object_get(it, "port");
        const char *status = json_string_value(json_object_get(it, "status"));
        if (!status || !json_is_integer(port) || json_integer_value(port) < 1 ||
            json_integer_value(port) > 65535 ||
            !copy_str(e->service, sizeof(e->service), json_object_get(it, "service")) ||
            !copy_str(e->id, sizeof(e->id), json_object_get(it, "id")) ||
            !copy_str(e->owner, sizeof(e->owner), json_object_get(it, "owner")) ||
            !copy_str(e->address, sizeof(e->address), json_object_get(it, "address"))) {
            snprintf(why, wlen, "instance %zu of the agent's answer is malformed", i);
            set_free(out);
            json_decref(doc);
            return SHOAL_EDECODE;
        }
        if (strcmp(status, "passing") != 0)
            continue; /* the default query serves passing only; be sure */
        e->port = (uint16_t)json_integer_value(port);
        const char *w = json_string_value(json_object_get(json_object_get(it, "meta"), "weight"));
        int wt = w ? shoal_lb_weight_parse(w) : 1;
        e->weight = wt > 0 ? (uint32_t)wt : 1; /* a bad weight counts as 1, like the agent */
        snprintf(out->keys[out->n], sizeof(out->keys[0]), "%s/%s", e->owner, e->id);
        out->cand[out->n] = (struct shoal_lb_candidate){.key = out->keys[out->n],
                                                        .weight = e->weight};
        out->n++;
    }
    *index = (uint64_t)json_integer_value(idx);
    json_decref(doc);
    return 0;
}

/* Replaces s's set with *ns (taken over), keeping the in-use counts of
 * instances in both. */
static void svc_swap(struct svc *s, struct set *ns)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < ns->n; i++)
        for (size_t j = 0; j < s->set.n; j++)
            if (s->set.cand[j].active && strcmp(ns->keys[i], s->set.keys[j]) == 0) {
                ns->cand[i].active = s->set.cand[j].active;
                break;
            }
    struct set old = s->set;
    s->set = *ns;
    pthread_mutex_unlock(&s->mu);
    set_free(&old);
    memset(ns, 0, sizeof(*ns));
}

/* One GET of s's query; a blocking query at index when blocking. Returns 0 with *ns and
 * *index, or an error with a message in why. retryable: worth retrying. */
static int fetch(struct shoal_client *c, struct svc *s, bool blocking, uint64_t index,
                 int timeout_ms,
                 struct set *ns, uint64_t *new_index, bool *retryable, char *why, size_t wlen)
{
    char path[2200];
    struct shoal_client_http_resp r;
    int sys_err = 0;
    if (blocking)
        snprintf(path, sizeof(path), "%s%cindex=%" PRIu64 "&wait=%" PRIu32 "ms", s->query,
                 strchr(s->query, '?') ? '&' : '?', index, c->wait_ms);
    else
        snprintf(path, sizeof(path), "%s", s->query);
    atomic_fetch_add(&c->n_requests, 1);
    *retryable = true;
    int rc = shoal_client_http_get(&c->agent, path, timeout_ms, c->wake_fd, &r, &sys_err);
    if (rc) {
        atomic_fetch_add(&c->n_errors, 1);
        snprintf(why, wlen, "%s", sys_err ? strerror(sys_err) : shoal_strerror(rc));
        return rc == SHOAL_ENOMEM ? rc : rc == SHOAL_ECONN ? SHOAL_ECONN : SHOAL_EIO;
    }
    if (r.status != 200) {
        atomic_fetch_add(&c->n_errors, 1);
        json_t *doc = json_loadb(r.body, r.body_len, 0, NULL);
        const char *msg = json_string_value(json_object_get(doc, "error"));
        snprintf(why, wlen, "the agent answered %d: %s", r.status,
                 msg ? msg : (r.body_len < 200 ? r.body : "(long body)"));
        json_decref(doc);
        *retryable = r.status >= 500; /* a 4xx will not change by retrying */
        free(r.body);
        return r.status >= 500 ? SHOAL_EIO : SHOAL_EINVAL;
    }
    rc = decode_set(r.body, r.body_len, ns, new_index, why, wlen);
    free(r.body);
    if (rc) {
        atomic_fetch_add(&c->n_errors, 1);
        *retryable = false;
    }
    return rc;
}

/* Waits ms of real time, or less if the client is being freed. */
static void watcher_pause(struct shoal_client *c, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->stop_mu);
    while (!atomic_load(&c->stop))
        if (pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&c->stop_mu);
}

/* The watcher: blocking queries forever; on failure the cache stays as it
 * is and the query is retried with the same backoff as discovery (real
 * time, unbounded in attempts: the cache is still served meanwhile). */
static void *watcher_main(void *arg)
{
    struct svc *s = arg;
    struct shoal_client *c = s->c;
    struct shoal_rng rng;
    unsigned k = 0;
    char why[ERR_MAX];
    shoal_rng_seed(&rng, c->seed ^ (uint64_t)(uintptr_t)s);
    /* the agent answers by wait; leave it a margin (ms + 1/16, like Consul's jitter) */
    int timeout_ms = (int)(c->wait_ms + c->wait_ms / 16 + 5000);
    while (!atomic_load(&c->stop)) {
        struct set ns;
        uint64_t idx = 0;
        bool retryable;
        int rc = fetch(c, s, true, s->index, timeout_ms, &ns, &idx, &retryable, why,
                       sizeof(why));
        if (atomic_load(&c->stop)) {
            if (rc == 0)
                set_free(&ns);
            break;
        }
        if (rc) {
            set_error(c, "watch of %s at %s failed: %s", s->name, c->agent_str, why);
            watcher_pause(c, shoal_client_backoff_draw(&rng, &c->retry, k));
            if (k < 62)
                k++;
            continue;
        }
        k = 0;
        if (idx != s->index) {
            size_t passing = ns.n;
            svc_swap(s, &ns);
            atomic_fetch_add(&c->n_updates, 1);
            pthread_mutex_lock(&c->change_mu);
            shoal_client_change_fn fn = c->change;
            void *ud = c->change_ud;
            pthread_mutex_unlock(&c->change_mu);
            if (fn) /* outside every lock: the callback may pick */
                fn(ud, s->name, passing);
        } else {
            set_free(&ns);
        }
        /* An index that went backwards (agent restarted) is taken as is:
         * the agent answers at once to any index but its current one. */
        s->index = idx;
    }
    return NULL;
}

/* The first fetch, with retry. */
static int discover(struct shoal_client *c, struct svc *s)
{
    uint64_t start = c->clock(c->time_ctx);
    char why[ERR_MAX] = "";
    unsigned k;
    int rc = SHOAL_ECONN;
    for (k = 0;; k++) {
        struct set ns;
        uint64_t idx = 0;
        bool retryable;
        uint64_t now = c->clock(c->time_ctx);
        uint64_t left = now - start < c->retry.deadline_ms ? c->retry.deadline_ms - (now - start)
                                                            : 1;
        rc = fetch(c, s, false, 0, (int)left, &ns, &idx, &retryable, why, sizeof(why));
        if (rc == 0) {
            svc_swap(s, &ns);
            s->index = idx;
            atomic_fetch_add(&c->n_updates, 1);
            return 0;
        }
        if (!retryable)
            break;
        if (k + 1 >= c->retry.max_attempts)
            break;
        pthread_mutex_lock(&c->rng_mu);
        uint64_t d = shoal_client_backoff_draw(&c->rng, &c->retry, k);
        pthread_mutex_unlock(&c->rng_mu);
        if (c->clock(c->time_ctx) + d - start > c->retry.deadline_ms)
            break; /* the next attempt would start after the deadline */
        c->sleep(c->time_ctx, d);
    }
    uint64_t took = c->clock(c->time_ctx) - start;
    if (rc == SHOAL_ECONN || rc == SHOAL_EIO)
        set_error(c, "cannot reach the agent at %s for '%s' after %u attempt%s in %" PRIu64
                     ".%03" PRIu64 " s: %s",
                  c->agent_str, s->name, k + 1, k ? "s" : "", took / 1000, took % 1000, why);
    else
        set_error(c, "discovery of '%s' at %s failed: %s", s->name, c->agent_str, why);
    return rc == SHOAL_EIO && why[0] && strncmp(why, "the agent answered", 18) != 0
               ? SHOAL_ECONN /* an I/O failure talking to it: unreachable too */
               : rc;
}

/* "HOST:PORT" -> an address: an IP as is, a host name through the resolver
 * (its first address). Returns 0 or SHOAL_EINVAL with why. */
static int agent_addr(const char *agent, struct shoal_addr *out, char *why, size_t wlen)
{
    char host[SHOAL_HOST_MAX], port[8];
    uint16_t p;
    if (shoal_addr_parse(agent, out) == 0)
        return 0;
    if (shoal_hostport_split(agent, host, sizeof(host), &p) != 0) {
        snprintf(why, wlen, "agent address '%s' is not HOST:PORT (an IP address, [IPv6] or a "
                 "host name, and a port 1-65535)", agent);
        return SHOAL_EINVAL;
    }
    snprintf(port, sizeof(port), "%u", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(why, wlen, "agent address '%s': cannot resolve %s: %s", agent, host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return SHOAL_EINVAL;
    }
    rc = SHOAL_EINVAL;
    for (struct addrinfo *ai = res; ai && rc; ai = ai->ai_next) {
        memset(out, 0, sizeof(*out));
        out->port = p;
        if (ai->ai_family == AF_INET) {
            out->family = 4;
            memcpy(out->ip, &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr, 4);
            rc = 0;
        } else if (ai->ai_family == AF_INET6) {
            out->family = 6;
            memcpy(out->ip, &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr,
                   16);
            rc = 0;
        }
    }
    freeaddrinfo(res);
    if (rc)
        snprintf(why, wlen, "agent address '%s': %s has no IP address", agent, host);
    return rc;
}

struct shoal_client *shoal_client_new(const struct shoal_client_options *opts, int *err)
{
    return shoal_client_new_ex(opts, err, NULL, 0);
}

struct shoal_client *shoal_client_new_ex(const struct shoal_client_options *opts, int *err,
                                         char *why, size_t why_len)
{
    struct shoal_client_options o = opts ? *opts : (struct shoal_client_options){0};
    char whybuf[ERR_MAX];
    int dummy;
    err = err ? err : &dummy;
    *err = 0;
    if (why && why_len)
        why[0] = '\0';
    struct shoal_client *c = calloc(1, sizeof(*c));
    if (!c) {
        *err = SHOAL_ENOMEM;
        if (why && why_len)
            snprintf(why, why_len, "out of memory");
        return NULL;
    }
    const char *agent = o.agent ? o.agent : getenv("SHOAL_HTTP_ADDR");
    if (!agent || !*agent)
        agent = DEFAULT_AGENT;
    if ((*err = agent_addr(agent, &c->agent, whybuf, sizeof(whybuf))) != 0) {
        free(c);
        if (why && why_len)
            snprintf(why, why_len, "%s%s", o.agent ? "" : "$SHOAL_HTTP_ADDR: ", whybuf);
        return NULL;
    }
    shoal_addr_format(&c->agent, c->agent_str, sizeof(c->agent_str));
    c->retry = o.retry;
    if (!c->retry.max_attempts)
        c->retry.max_attempts = 5;
    if (!c->retry.base_ms)
        c->retry.base_ms = 50;
    if (!c->retry.max_ms)
        c->retry.max_ms = 2000;
    if (!c->retry.deadline_ms)
        c->retry.deadline_ms = 10000;
    c->wait_ms = o.watch_wait_ms ? o.watch_wait_ms : DEFAULT_WAIT_MS;
    c->clock = o.clock ? o.clock : default_clock;
    c->sleep = o.sleep ? o.sleep : default_sleep;
    c->time_ctx = o.time_ctx;
    c->seed = o.seed ? o.seed : default_clock(NULL) ^ ((uint64_t)getpid() << 32);
    shoal_rng_seed(&c->rng, c->seed);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0) {
        free(c);
        *err = SHOAL_ENOMEM;
        if (why && why_len)
            snprintf(why, why_len, "eventfd: %s", strerror(errno));
        return NULL;
    }
    pthread_mutex_init(&c->change_mu, NULL);
    pthread_rwlock_init(&c->list_lock, NULL);
    pthread_mutex_init(&c->watch_mu, NULL);
    pthread_mutex_init(&c->rng_mu, NULL);
    pthread_mutex_init(&c->err_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    return c;
}

void shoal_client_free(struct shoal_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->stop_mu);
    atomic_store(&c->stop, true);
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) != sizeof(one))
        abort(); /* an eventfd write of 1 cannot fail short of a bug */
    for (size_t i = 0; i < c->nsvcs; i++) {
        struct svc *s = c->svcs[i];
        pthread_join(s->thread, NULL);
        set_free(&s->set);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
    free(c->svcs);
    close(c->wake_fd);
    pthread_rwlock_destroy(&c->list_lock);
    pthread_mutex_destroy(&c->watch_mu);
    pthread_mutex_destroy(&c->rng_mu);
    pthread_mutex_destroy(&c->err_mu);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->change_mu);
    free(c);
}

void shoal_client_on_change(struct shoal_client *c, shoal_client_change_fn fn, void *ud)
{
    pthread_mutex_lock(&c->change_mu);
    c->change = fn;
    c->change_ud = ud;
    pthread_mutex_unlock(&c->change_mu);
}

/* ---- for reg.c (client/internal.h) ---- */

const struct shoal_addr *shoal_client__agent(struct shoal_client *c, const char **text)
{
    *text = c->agent_str;
    return &c->agent;
}

int shoal_client__wake_fd(struct shoal_client *c) { return c->wake_fd; }

uint32_t shoal_client__timeout_ms(struct shoal_client *c) { return c->retry.deadline_ms; }

void shoal_client__count(struct shoal_client *c, bool failed)
{
    atomic_fetch_add(&c->n_requests, 1);
    if (failed)
        atomic_fetch_add(&c->n_errors, 1);
}

void shoal_client__error(struct shoal_client *c, const char *msg) { set_error(c, "%s", msg); }

static struct svc *find_locked(struct shoal_client *c, const char *service)
{
    for (size_t i = 0; i < c->nsvcs; i++)
        if (strcmp(c->svcs[i]->name, service) == 0)
            return c->svcs[i];
    return NULL;
}

static struct svc *find(struct shoal_client *c, const char *service)
{
    pthread_rwlock_rdlock(&c->list_lock);
    struct svc *s = find_locked(c, service);
    pthread_rwlock_unlock(&c->list_lock);
    return s; /* a svc lives until shoal_client_free */
}

static bool same_tags(const struct svc *s, const char *const *tags, size_t ntags)
{
    if (s->ntags != ntags)
        return false;
    for (size_t i = 0; i < ntags; i++)
        if (strcmp(s->tags[i], tags[i]) != 0)
            return false;
    return true;
}

static bool valid_service(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n >= SHOAL_CLIENT_SERVICE_MAX || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* Percent-encodes a tag into the query. */
static void append_tag(char *q, size_t cap, const char *tag)
{
    size_t len = strlen(q);
    len += (size_t)snprintf(q + len, cap - len, "%ctag=", strchr(q, '?') ? '&' : '?');
    for (const unsigned char *p = (const unsigned char *)tag; *p && len + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            q[len++] = (char)*p;
        else
            len += (size_t)snprintf(q + len, cap - len, "%%%02X", *p);
    }
    q[len] = 0;
}

int shoal_client_watch(struct shoal_client *c, const char *service, const char *const *tags,
                       size_t ntags)
{
    if (!c || !service || !valid_service(service) || ntags > SHOAL_CLIENT_TAGS_MAX ||
        (ntags && !tags)) {
        if (c)
            set_error(c, "invalid service name or tags");
        return SHOAL_EINVAL;
    }
    for (size_t i = 0; i < ntags; i++)
        if (!tags[i] || !*tags[i] || strlen(tags[i]) >= 64) {
            set_error(c, "invalid tag");
            return SHOAL_EINVAL;
        }
    pthread_mutex_lock(&c->watch_mu);
    struct svc *s = find(c, service);
    if (s) {
        bool same = same_tags(s, tags, ntags);
        pthread_mutex_unlock(&c->watch_mu);
        if (!same)
            set_error(c, "'%s' is already watched with other tags", service);
        return same ? 0 : SHOAL_EEXIST;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&c->watch_mu);
        return SHOAL_ENOMEM;
    }
    snprintf(s->name, sizeof(s->name), "%s", service);
    snprintf(s->query, sizeof(s->query), "/v1/instances/%s", service);
    s->ntags = ntags;
    for (size_t i = 0; i < ntags; i++) {
        snprintf(s->tags[i], sizeof(s->tags[i]), "%s", tags[i]);
        append_tag(s->query, sizeof(s->query), tags[i]);
    }
    s->c = c;
    pthread_mutex_init(&s->mu, NULL);
    /* a per-service seed derived from the client's: FNV-1a of the name */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = service; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    shoal_rng_seed(&s->rng, c->seed ^ h);
    int rc = discover(c, s);
    if (rc == 0) {
        pthread_rwlock_wrlock(&c->list_lock);
        if (c->nsvcs == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 8;
            struct svc **n = realloc(c->svcs, ncap * sizeof(*n));
            if (!n)
                rc = SHOAL_ENOMEM;
            else {
                c->svcs = n;
                c->cap = ncap;
            }
        }
        if (rc == 0 && pthread_create(&s->thread, NULL, watcher_main, s) != 0) {
            set_error(c, "cannot start the watcher thread of '%s'", service);
            rc = SHOAL_ENOMEM;
        }
        if (rc == 0)
            c->svcs[c->nsvcs++] = s;
        pthread_rwlock_unlock(&c->list_lock);
    }
    if (rc) {
        set_free(&s->set);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
    pthread_mutex_unlock(&c->watch_mu);
    return rc;
}

static int pick(struct shoal_client *c, const char *service, int lb, const char *client_key,
                bool acquire, struct shoal_endpoint *out)
{
    if (!c || !service || !out || lb < 0 || lb >= SHOAL_LB_COUNT)
        return SHOAL_EINVAL;
    struct svc *s = find(c, service);
    if (!s) {
        int rc = shoal_client_watch(c, service, NULL, 0);
        if (rc)
            return rc;
        s = find(c, service);
    }
    pthread_mutex_lock(&s->mu);
    int i = shoal_lb_pick(lb, s->set.cand, s->set.n, &s->rr, &s->rng, client_key);
    if (i >= 0) {
        *out = s->set.eps[i];
        if (acquire)
            s->set.cand[i].active++;
    }
    pthread_mutex_unlock(&s->mu);
    if (i < 0) {
        set_error(c, "no passing instance of '%s'", service);
        return SHOAL_ENOENT;
    }
    atomic_fetch_add_explicit(&c->n_picks, 1, memory_order_relaxed);
    return 0;
}

int shoal_client_pick(struct shoal_client *c, const char *service, int lb,
                      const char *client_key, struct shoal_endpoint *out)
{
    return pick(c, service, lb, client_key, false, out);
}

int shoal_client_acquire(struct shoal_client *c, const char *service,
                         struct shoal_endpoint *out)
{
    return pick(c, service, SHOAL_LB_LEAST_CONN, NULL, true, out);
}

int shoal_client_release(struct shoal_client *c, const char *service, const char *id)
{
    if (!c || !service || !id)
        return SHOAL_EINVAL;
    struct svc *s = find(c, service);
    if (!s)
        return SHOAL_ENOENT;
    bool full = strchr(id, '/') != NULL;
    int rc = SHOAL_ENOENT;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->set.n; i++) {
        if (!s->set.cand[i].active)
            continue;
        if (full ? strcmp(s->set.keys[i], id) == 0 : strcmp(s->set.eps[i].id, id) == 0) {
            s->set.cand[i].active--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

char *shoal_client_last_error(struct shoal_client *c, char *buf, size_t len)
{
    if (!len)
        return buf;
    pthread_mutex_lock(&c->err_mu);
    snprintf(buf, len, "%s", c->err);
    pthread_mutex_unlock(&c->err_mu);
    return buf;
}

void shoal_client_stats(struct shoal_client *c, struct shoal_client_stats *out)
{
    out->requests = atomic_load(&c->n_requests);
    out->request_errors = atomic_load(&c->n_errors);
    out->updates = atomic_load(&c->n_updates);
    out->picks = atomic_load(&c->n_picks);
}

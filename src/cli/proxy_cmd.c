/* proxy_cmd.c -- `shoal proxy`: a TCP proxy in front of a service's
 * passing instances (io/proxy.c does the proxying).
 *
 * The instance set comes from the local agent by blocking queries
 * (GET /v1/instances/NAME?index=N&wait=5m), made by one watcher thread with
 * the CLI's blocking client (client.c): it reuses that client's timeouts,
 * cancellation and http-parser handling instead of a second HTTP client on
 * libev. The thread never touches the loop: it hands each new set, complete
 * and immutable, to the loop thread under a mutex and wakes it with
 * ev_async, so proxying never waits on the agent. Stopping: the thread runs
 * with every signal blocked except SIGUSR2 while it waits (ppoll's mask);
 * the loop sets a flag and sends it SIGUSR2, which ends any wait at once.
 *
 * If the agent goes away the proxy keeps the last set it had (a sidecar's
 * cache) and retries with backoff, one warning per outage.
 */
#define _GNU_SOURCE /* ppoll */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/call.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "core/balance.h"
#include "io/log.h"
#include "io/proxy.h"

#define WAIT "5m"
#define WAIT_MS 300000
#define SLACK_MS 30000 /* beyond the wait before the answer counts as lost */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define MIN_ROUND_MS 50     /* an unchanged answer sooner than this: pause */
#define STATS_INTERVAL 10.0 /* seconds between counter lines (when changed) */

struct watcher {
    struct shoal_cli_args a; /* http, http_str */
    const char *service;
    int ntags;
    const char *const *tags;
    /* handed from the thread to the loop */
    pthread_mutex_t mu;
    struct shoal_proxy_backend *pending;
    size_t npending;
    uint64_t pending_index;
    bool has_pending;
    ev_async async;
    struct ev_loop *loop;
    volatile sig_atomic_t stop;
    sigset_t wait_mask; /* the thread's mask without SIGUSR2 */
};

static void on_usr2(int sig) {}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *watch_path(const struct watcher *w, uint64_t index)
{
    struct shoal_cli_buf b = {0};
    shoal_cli_buf_add(&b, "/v1/instances/");
    shoal_cli_buf_add_escaped(&b, w->service);
    for (int i = 0; i < w->ntags; i++)
        shoal_cli_buf_param(&b, "tag", w->tags[i]);
    if (index) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)index);
        shoal_cli_buf_param(&b, "index", n);
        shoal_cli_buf_param(&b, "wait", WAIT);
    }
    return b.p;
}

/* The API's instances -> backends (malloc'd; *n may be 0). Instances with a
 * host name for an address are skipped: the loop never resolves names. */
static struct shoal_proxy_backend *to_backends(json_t *list, size_t *n)
{
    size_t cap = json_array_size(list), i;
    struct shoal_proxy_backend *b = calloc(cap ? cap : 1, sizeof(*b));
    json_t *in;
    *n = 0;
    if (!b)
        return NULL;
    json_array_foreach(list, i, in)
    {
        const char *id = json_string_value(json_object_get(in, "id"));
        const char *owner = json_string_value(json_object_get(in, "owner"));
        const char *addr = json_string_value(json_object_get(in, "address"));
        json_int_t port = json_integer_value(json_object_get(in, "port"));
        const char *wv = json_string_value(json_object_get(json_object_get(in, "meta"), "weight"));
        if (!id || !owner || !addr || port < 1 || port > 65535)
            continue;
        char hp[300];
        snprintf(hp, sizeof(hp), strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, (int)port);
        struct shoal_proxy_backend *x = &b[*n];
        if (shoal_addr_parse(hp, &x->addr) != 0) {
            shoal_log_warn("proxy", "instance %s/%s: address %s is not numeric; skipped", owner, id,
                           addr);
            continue;
        }
        int weight = wv ? shoal_lb_weight_parse(wv) : 1;
        x->weight = weight > 0 ? (uint32_t)weight : 1;
        snprintf(x->key, sizeof(x->key), "%s/%s", owner, id);
        (*n)++;
    }
    return b;
}

static void nap(const struct watcher *w, long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    ppoll(NULL, 0, &ts, &w->wait_mask);
}

static void *watch_thread(void *arg)
{
    struct watcher *w = arg;
    const struct shoal_cli_http_opts quick = {.stop = &w->stop, .sigmask = &w->wait_mask};
    const struct shoal_cli_http_opts blocking = {
        .timeout_ms = WAIT_MS + SLACK_MS, .stop = &w->stop, .sigmask = &w->wait_mask};
    uint64_t index = 0;
    long long backoff = BACKOFF_MIN_MS;
    bool away = false;
    char lost[256];

    while (!w->stop) {
        struct shoal_cli_reply r;
        long long asked = mono_ms();
        char *path = watch_path(w, index);
        int rc = shoal_cli_call_ex(&w->a, "GET", path, NULL, index ? &blocking : &quick, &r, lost,
                                   sizeof(lost));
        free(path);
        if (w->stop) {
            if (rc == 0)
                shoal_cli_reply_free(&r);
            break;
        }
        json_t *list = rc ? NULL : json_object_get(r.root, "instances");
        json_t *idx = rc ? NULL : json_object_get(r.root, "index");
        if (rc == 0 && (!json_is_array(list) || !json_is_integer(idx))) {
            shoal_log_warn("proxy", "agent at %s sent no instances list", w->a.http_str);
            shoal_cli_reply_free(&r);
            rc = SHOAL_CLI_FAIL;
        }
        if (rc) {
            if (!away)
                shoal_log_warn("proxy", "%s; keeping the last %s set, retrying",
                               rc == SHOAL_CLI_CALL_LOST ? lost : "agent error", w->service);
            away = true;
            nap(w, backoff);
            backoff = backoff * 2 < BACKOFF_MAX_MS ? backoff * 2 : BACKOFF_MAX_MS;
            index = 0; /* a restarted agent counts anew */
            continue;
        }
        if (away)
            shoal_log_info("proxy", "agent at %s is back", w->a.http_str);
        away = false;
        backoff = BACKOFF_MIN_MS;
        uint64_t got = (uint64_t)json_integer_value(idx);
        if (got != index) {
            size_t n;
            struct shoal_proxy_backend *b = to_backends(list, &n);
            if (b) {
                pthread_mutex_lock(&w->mu);
                free(w->pending);
                w->pending = b;
                w->npending = n;
                w->pending_index = got;
                w->has_pending = true;
                pthread_mutex_unlock(&w->mu);
                ev_async_send(w->loop, &w->async);
            }
        } else if (mono_ms() - asked < MIN_ROUND_MS) {
            nap(w, MIN_ROUND_MS - (mono_ms() - asked));
        }
        index = got;
        shoal_cli_reply_free(&r);
    }
    return NULL;
}

/* ---- the loop side ---- */

struct proxy_main {
    struct watcher w;
    struct shoal_proxy *p;
    struct shoal_proxy_stats last;
    bool have_set;      /* a set was logged already */
    size_t nset;        /* backends in the set now, for "changed" logging */
    char set_sig[4096]; /* keys of the current set, to log only changes */
};

static void log_stats(struct shoal_proxy *p, struct shoal_proxy_stats *last, bool always)
{
    struct shoal_proxy_stats s;
    shoal_proxy_get_stats(p, &s);
    if (!always && memcmp(&s, last, sizeof(s)) == 0)
        return;
    *last = s;
    shoal_log_info("proxy",
                   "stats: accepted=%llu connected=%llu no_instance=%llu failed_connect=%llu "
                   "retries=%llu removed=%llu active=%llu backends=%llu bytes_up=%llu "
                   "bytes_down=%llu",
                   (unsigned long long)s.accepted, (unsigned long long)s.connected,
                   (unsigned long long)s.no_instance, (unsigned long long)s.failed_connect,
                   (unsigned long long)s.retries, (unsigned long long)s.removed,
                   (unsigned long long)s.active, (unsigned long long)s.backends,
                   (unsigned long long)s.bytes_up, (unsigned long long)s.bytes_down);
}

static void async_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct proxy_main *m = a->data;
    pthread_mutex_lock(&m->w.mu);
    struct shoal_proxy_backend *b = m->w.pending;
    size_t n = m->w.npending;
    uint64_t index = m->w.pending_index;
    bool has = m->w.has_pending;
    m->w.pending = NULL;
    m->w.has_pending = false;
    pthread_mutex_unlock(&m->w.mu);
    if (!has)
        return;
    char sig[sizeof(m->set_sig)] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof(sig); i++) {
        char a_[SHOAL_ADDR_STRLEN];
        int k = snprintf(sig + used, sizeof(sig) - used, "%s%s=%s", i ? " " : "", b[i].key,
                         shoal_addr_format(&b[i].addr, a_, sizeof(a_)));
        used += k > 0 ? (size_t)k : 0;
    }
    if (shoal_proxy_set_backends(m->p, b, n) != 0) {
        shoal_log_warn("proxy", "out of memory: instance set not updated");
    } else if (!m->have_set || strcmp(sig, m->set_sig) != 0 || n != m->nset) {
        m->have_set = true;
        shoal_log_info("proxy", "%s: %zu instance%s (index %llu): %s", m->w.service, n,
                       n == 1 ? "" : "s", (unsigned long long)index, n ? sig : "-");
        snprintf(m->set_sig, sizeof(m->set_sig), "%s", sig);
        m->nset = n;
    }
    free(b);
}

static void stats_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct proxy_main *m = t->data;
    log_stats(m->p, &m->last, false);
}

static void usr1_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct proxy_main *m = s->data;
    log_stats(m->p, &m->last, true);
}

static void stop_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    shoal_log_info("proxy", "signal %d: stopping", s->signum);
    ev_break(loop, EVBREAK_ALL);
}

/* ---- arguments ---- */

static const char usage_text[] =
    "usage: shoal proxy --listen IP:PORT --service NAME [--strategy S] [--tag T]...\n"
    "                   [--http IP:PORT] [--connect-timeout D]\n";

static const char help_text[] =
    "\nA TCP proxy in front of the passing instances of service NAME, as the local\n"
    "agent knows them (blocking queries: changes apply to new connections at once).\n"
    "Each connection goes to one instance picked by the strategy; a refused or\n"
    "timed-out connect tries another instance (each at most once). Connections to\n"
    "an instance that leaves the passing set are closed. With no instance a client\n"
    "is closed at once. Counters are logged every 10 s when they change, on SIGUSR1\n"
    "and at exit. Instances must have a numeric address. SIGINT/SIGTERM stop it.\n"
    "\nflags:\n"
    "  --listen IP:PORT       where to accept connections (required)\n"
    "  --service NAME         the service to proxy to (required)\n"
    "  --strategy S           round-robin (default), random, least-conn, ip-hash\n"
    "                         (ip-hash keys on the client's IP address)\n"
    "  --tag T                only instances with this tag; repeat for more\n"
    "  --http IP:PORT         the agent's HTTP API (default: $SHOAL_HTTP_ADDR, "
    "else " SHOAL_CLI_DEFAULT_HTTP ")\n"
    "  --connect-timeout D    per connect attempt (default 2s)\n"
    "  -h, --help             show this help\n";

static int usage(const char *fmt, const char *v)
{
    fprintf(stderr, "shoal proxy: ");
    fprintf(stderr, fmt, v);
    fprintf(stderr, "\n%sRun 'shoal proxy --help' for details.\n", usage_text);
    return SHOAL_CLI_USAGE;
}

int shoal_cli_proxy(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"service", required_argument, NULL, 's'},
        {"strategy", required_argument, NULL, 'S'},
        {"tag", required_argument, NULL, 't'},
        {"http", required_argument, NULL, 'H'},
        {"connect-timeout", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    static struct proxy_main m; /* static: its address outlives every callback */
    struct shoal_proxy_opts po = {.lb = SHOAL_LB_ROUND_ROBIN};
    const char *listen = NULL, *http = NULL, *tags[SHOAL_TAGS_MAX];
    int ntags = 0, ch;

    memset(&m, 0, sizeof(m));
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        const char *want = NULL;
        switch (ch) {
        case 'h':
            printf("%s%s", usage_text, help_text);
            return SHOAL_CLI_OK;
        case 'l':
            listen = optarg;
            if (shoal_addr_parse(optarg, &po.listen) != 0)
                want = "bad --listen '%s' (want IP:PORT or [IPv6]:PORT)";
            break;
        case 's':
            m.w.service = optarg;
            if (shoal_cli_check_service(optarg))
                want = "bad --service '%s' (want 1..63 of [a-z0-9-])";
            break;
        case 'S':
            po.lb = shoal_lb_parse(optarg);
            if (po.lb < 0)
                want = "bad --strategy '%s' (want round-robin, random, least-conn or ip-hash)";
            break;
        case 't':
            if (ntags == SHOAL_TAGS_MAX)
                want = "too many --tag ('%s')";
            else if (shoal_cli_check_tag(optarg))
                want = "bad --tag '%s'";
            else
                tags[ntags++] = optarg;
            break;
        case 'H':
            http = optarg;
            break;
        case 'c':
            if (shoal_duration_parse(optarg, &po.connect_timeout_ms) != 0 ||
                po.connect_timeout_ms == 0)
                want = "bad --connect-timeout '%s' (want a duration: 500ms, 2s)";
            break;
        case ':':
            return usage("flag %s needs a value", argv[optind - 1]);
        default:
            return usage("unknown flag %s", argv[optind - 1]);
        }
        if (want)
            return usage(want, optarg);
    }
    if (optind < argc)
        return usage("unexpected argument '%s'", argv[optind]);
    if (!listen)
        return usage("%s is required", "--listen IP:PORT");
    if (!m.w.service)
        return usage("%s is required", "--service NAME");
    if (!http)
        http = getenv("SHOAL_HTTP_ADDR");
    if (!http || !*http)
        http = SHOAL_CLI_DEFAULT_HTTP;
    if (shoal_addr_parse(http, &m.w.a.http) != 0)
        return usage("bad agent address '%s' (want IP:PORT or [IPv6]:PORT)", http);
    shoal_addr_format(&m.w.a.http, m.w.a.http_str, sizeof(m.w.a.http_str));
    m.w.a.cmd = "proxy";
    m.w.ntags = ntags;
    m.w.tags = tags;
    po.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "shoal proxy: cannot create the event loop\n");
        return SHOAL_CLI_FAIL;
    }
    signal(SIGPIPE, SIG_IGN);
    int err = 0;
    m.p = shoal_proxy_new(loop, &po, &err);
    if (!m.p) {
        fprintf(stderr, "shoal proxy: cannot listen on %s: %s\n", listen,
                err < 0 && err > -1000 ? strerror(-err) : shoal_strerror(err));
        return SHOAL_CLI_FAIL;
    }

    pthread_mutex_init(&m.w.mu, NULL);
    m.w.loop = loop;
    ev_async_init(&m.w.async, async_cb);
    m.w.async.data = &m;
    ev_async_start(loop, &m.w.async);

    /* The thread starts with every signal blocked (it inherits this mask)
     * and lets SIGUSR2 in only while waiting. */
    struct sigaction sa = {.sa_handler = on_usr2}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    m.w.wait_mask = all;
    sigdelset(&m.w.wait_mask, SIGUSR2);
    pthread_t th;
    int te = pthread_create(&th, NULL, watch_thread, &m.w);
    sigset_t loop_mask = old;
    sigaddset(&loop_mask, SIGUSR2); /* only ever for the watcher thread */
    pthread_sigmask(SIG_SETMASK, &loop_mask, NULL);
    if (te != 0) {
        fprintf(stderr, "shoal proxy: cannot start the watcher thread: %s\n", strerror(te));
        shoal_proxy_free(m.p);
        return SHOAL_CLI_FAIL;
    }

    ev_signal sint, sterm, susr1;
    ev_signal_init(&sint, stop_cb, SIGINT);
    ev_signal_init(&sterm, stop_cb, SIGTERM);
    ev_signal_init(&susr1, usr1_cb, SIGUSR1);
    susr1.data = &m;
    ev_signal_start(loop, &sint);
    ev_signal_start(loop, &sterm);
    ev_signal_start(loop, &susr1);
    ev_timer stats;
    ev_timer_init(&stats, stats_cb, STATS_INTERVAL, STATS_INTERVAL);
    stats.data = &m;
    ev_timer_start(loop, &stats);

    char la[SHOAL_ADDR_STRLEN];
    struct shoal_addr local = shoal_proxy_local(m.p);
    shoal_log_info("proxy", "listening on %s for service %s (%s, agent %s)",
                   shoal_addr_format(&local, la, sizeof(la)), m.w.service, shoal_lb_name(po.lb),
                   m.w.a.http_str);
    ev_run(loop, 0);

    m.w.stop = 1;
    pthread_kill(th, SIGUSR2);
    pthread_join(th, NULL);
    log_stats(m.p, &m.last, true);
    ev_timer_stop(loop, &stats);
    ev_signal_stop(loop, &sint);
    ev_signal_stop(loop, &sterm);
    ev_signal_stop(loop, &susr1);
    ev_async_stop(loop, &m.w.async);
    shoal_proxy_free(m.p);
    free(m.w.pending);
    pthread_mutex_destroy(&m.w.mu);
    return SHOAL_CLI_OK;
}

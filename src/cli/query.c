/* query.c -- what `shoal services|instances|watch` do: read the registry
 * (docs/registry-interfaces.md, "HTTP API").
 *
 * `instances` and `watch` share one request (GET /v1/instances/NAME with the
 * filters as query parameters) and one table. `watch` then loops on blocking
 * queries (index=<last index>&wait=5m) and prints the set whenever it
 * differs from the one shown last. SIGINT and SIGTERM are blocked except
 * while waiting (the client's ppoll, our sleeps), so a signal never cuts
 * output in half and never slips in between a check and a wait. An agent
 * that goes away is retried with exponential backoff, up to a bound.
 */
#define _GNU_SOURCE /* ppoll */
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/call.h"
#include "cli/cli.h"
#include "cli/output.h"

/* ---- services ---- */

int shoal_cli_services(const struct shoal_cli_args *a)
{
    static const char *const heads[] = {"NAME", "PASSING", "TOTAL"};
    static const char *const keys[] = {"name", "passing", "total"};
    return shoal_cli_list(a, "/v1/services", "services", heads, keys, 3);
}

/* ---- instances: the request and the table ---- */

#define WATCH_WAIT "5m" /* the blocking query's wait (the agent allows up to 10m) */
#define WATCH_WAIT_MS 300000
/* The agent answers when the wait passes; allow it this much more before
 * the connection counts as lost. */
#define WATCH_SLACK_MS 30000

/* /v1/instances/NAME[?all=1][&tag=T]...[&meta=K:V]...[&index=N&wait=5m]; malloc'd. */
static char *instances_path(const struct shoal_cli_args *a, uint64_t index)
{
    struct shoal_cli_buf b = {0}, kv = {0};
    shoal_cli_buf_add(&b, "/v1/instances/");
    shoal_cli_buf_add_escaped(&b, a->pos[0]);
    if (a->all)
        shoal_cli_buf_param(&b, "all", "1");
    for (int i = 0; i < a->ntags; i++)
        shoal_cli_buf_param(&b, "tag", a->tags[i]);
    for (int i = 0; i < a->nmeta; i++) {
        kv.len = 0;
        shoal_cli_buf_add(&kv, a->meta[i].key);
        shoal_cli_buf_add(&kv, ":");
        shoal_cli_buf_add(&kv, a->meta[i].value);
        shoal_cli_buf_param(&b, "meta", kv.p);
    }
    if (index) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)index);
        shoal_cli_buf_param(&b, "index", n);
        shoal_cli_buf_param(&b, "wait", WATCH_WAIT);
    }
    free(kv.p);
    return b.p;
}

/* Asks for the instances (blocking if index is not 0). Returns 0 with *list
 * (owned by r->root) and *got_index; SHOAL_CLI_CALL_LOST (with lost set, if
 * given); or SHOAL_CLI_FAIL, printed. */
static int fetch_instances(const struct shoal_cli_args *a, uint64_t index,
                           const struct shoal_cli_http_opts *opts, struct shoal_cli_reply *r,
                           json_t **list, uint64_t *got_index, char *lost, size_t lost_len)
{
    char *path = instances_path(a, index);
    int rc = shoal_cli_call_ex(a, "GET", path, NULL, opts, r, lost, lost_len);
    free(path);
    if (rc)
        return rc;
    json_t *idx = json_object_get(r->root, "index");
    *list = json_object_get(r->root, "instances");
    if (!json_is_array(*list) || !json_is_integer(idx) || json_integer_value(idx) < 0) {
        fprintf(stderr, "shoal: agent at %s sent no \"%s\"\n", a->http_str,
                json_is_array(*list) ? "index" : "instances");
        shoal_cli_reply_free(r);
        return SHOAL_CLI_FAIL;
    }
    *got_index = (uint64_t)json_integer_value(idx);
    return 0;
}

/* A meta value longer than this is cut in the table (--format json has it all). */
#define META_CELL_MAX 32

static char *cell(json_t *v) { return v ? shoal_cli_value_text(v) : shoal_cli_clean_dup("-"); }

static char *buf_cell(struct shoal_cli_buf *b)
{
    char *c = shoal_cli_clean_dup(b->p ? b->p : "-");
    free(b->p);
    *b = (struct shoal_cli_buf){0};
    return c;
}

/* CHECKS kind:status,... (only when some instance has checks). */
static void add_checks_cell(struct shoal_cli_table *t, json_t *in)
{
    struct shoal_cli_buf b = {0};
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(in, "checks"), i, c)
    {
        json_t *k = json_object_get(c, "kind"), *st = json_object_get(c, "status");
        shoal_cli_buf_add(&b, b.len ? "," : "");
        shoal_cli_buf_add(&b, json_is_string(k) ? json_string_value(k) : "?");
        shoal_cli_buf_add(&b, ":");
        shoal_cli_buf_add(&b, json_is_string(st) ? json_string_value(st) : "?");
    }
    shoal_cli_table_add(t, buf_cell(&b));
}

/* After the table: one line per check with its target and last output. */
static void print_check_lines(json_t *list)
{
    size_t i, k;
    json_t *in, *c;
    bool first = true;
    json_array_foreach(list, i, in)
    {
        json_t *id = json_object_get(in, "id");
        json_array_foreach(json_object_get(in, "checks"), k, c)
        {
            const char *f[4] = {"kind", "target", "status", "output"};
            if (first)
                putchar('\n');
            first = false;
            shoal_cli_print_clean(stdout, json_is_string(id) ? json_string_value(id) : "?");
            printf(" check %zu", k + 1);
            for (int j = 0; j < 4; j++) {
                json_t *v = json_object_get(c, f[j]);
                fputs(j == 3 ? ": " : " ", stdout);
                shoal_cli_print_clean(stdout, json_is_string(v) ? json_string_value(v) : "-");
            }
            putchar('\n');
        }
    }
}

static void add_instance_row(struct shoal_cli_table *t, json_t *in)
{
    struct shoal_cli_buf b = {0};
    const char *key;
    json_t *v;
    size_t i;

    shoal_cli_table_add(t, cell(json_object_get(in, "id")));

    /* ADDRESS:PORT, an IPv6 address in brackets */
    json_t *addr = json_object_get(in, "address"), *port = json_object_get(in, "port");
    const char *host = json_is_string(addr) ? json_string_value(addr) : "-";
    bool v6 = strchr(host, ':') != NULL;
    shoal_cli_buf_add(&b, v6 ? "[" : "");
    shoal_cli_buf_add(&b, host);
    shoal_cli_buf_add(&b, v6 ? "]:" : ":");
    char *p = cell(port);
    shoal_cli_buf_add(&b, p);
    free(p);
    shoal_cli_table_add(t, buf_cell(&b));

    shoal_cli_table_add(t, cell(json_object_get(in, "status")));

    /* OWNER, with its state when it is not alive (seen with --all) */
    json_t *owner = json_object_get(in, "owner"), *ost = json_object_get(in, "owner_status");
    shoal_cli_buf_add(&b, json_is_string(owner) ? json_string_value(owner) : "-");
    if (json_is_string(ost) && strcmp(json_string_value(ost), "alive") != 0) {
        shoal_cli_buf_add(&b, " (");
        shoal_cli_buf_add(&b, json_string_value(ost));
        shoal_cli_buf_add(&b, ")");
    }
    shoal_cli_table_add(t, buf_cell(&b));

    /* TAGS t1,t2 (tags hold no ',') */
    json_array_foreach(json_object_get(in, "tags"), i, v)
    {
        if (!json_is_string(v))
            continue;
        shoal_cli_buf_add(&b, b.len ? "," : "");
        shoal_cli_buf_add(&b, json_string_value(v));
    }
    shoal_cli_table_add(t, buf_cell(&b));

    /* META k=v,k2=v2, long values cut on a UTF-8 boundary */
    json_object_foreach(json_object_get(in, "meta"), key, v)
    {
        const char *s = json_is_string(v) ? json_string_value(v) : "?";
        size_t n = strlen(s);
        shoal_cli_buf_add(&b, b.len ? "," : "");
        shoal_cli_buf_add(&b, key);
        shoal_cli_buf_add(&b, "=");
        if (n <= META_CELL_MAX) {
            shoal_cli_buf_add(&b, s);
        } else {
            n = META_CELL_MAX - 3;
            while (n > 0 && (s[n] & 0xc0) == 0x80)
                n--;
            shoal_cli_buf_addn(&b, s, n);
            shoal_cli_buf_add(&b, "...");
        }
    }
    shoal_cli_table_add(t, buf_cell(&b));
}

static void print_instances(const struct shoal_cli_args *a, json_t *list)
{
    static const char *const heads[] = {"ID",   "ADDRESS:PORT", "STATUS", "OWNER",
                                        "TAGS", "META",         "CHECKS"};
    struct shoal_cli_table t;
    size_t i;
    json_t *in;
    bool checks = false;

    if (a->format == SHOAL_CLI_FORMAT_JSON) {
        shoal_cli_print_json(list);
        return;
    }
    json_array_foreach(list, i, in) checks |= json_array_size(json_object_get(in, "checks")) > 0;
    /* The CHECKS column and check lines only when there are checks. */
    shoal_cli_table_init(&t, heads, sizeof(heads) / sizeof(heads[0]) - !checks);
    json_array_foreach(list, i, in)
    {
        add_instance_row(&t, in);
        if (checks)
            add_checks_cell(&t, in);
    }
    shoal_cli_table_print(&t);
    if (checks)
        print_check_lines(list);
}

int shoal_cli_instances(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;
    json_t *list;
    uint64_t index;

    if (fetch_instances(a, 0, NULL, &r, &list, &index, NULL, 0))
        return SHOAL_CLI_FAIL;
    print_instances(a, list);
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

/* ---- watch ---- */

/* Backoff while the agent is away: doubles from MIN to MAX between tries;
 * after GIVE_UP without an answer, watch ends with exit 1. */
#define WATCH_BACKOFF_MIN_MS 250
#define WATCH_BACKOFF_MAX_MS 10000
#define WATCH_GIVE_UP_MS 60000
/* An answer that shows nothing new sooner than this after the question
 * (an agent ignoring index, or changes hidden by the filters in quick
 * succession) is followed by a pause until this long has passed: never spin. */
#define WATCH_MIN_ROUND_MS 1000

static volatile sig_atomic_t watch_stop;

static void watch_on_signal(int sig) { watch_stop = 1; }

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms with mask in force: returns early when SIGINT/SIGTERM comes. */
static void watch_sleep(long long ms, const sigset_t *mask)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    ppoll(NULL, 0, &ts, mask);
}

/* One set: in table format a "# TIME NAME: N instances (index I)" line and
 * the table, a blank line between sets; in JSON one array per line. */
static void watch_print(const struct shoal_cli_args *a, json_t *list, uint64_t index, bool first)
{
    if (a->format == SHOAL_CLI_FORMAT_TABLE) {
        struct timespec ts;
        struct tm tm;
        char when[32];
        size_t n = json_array_size(list);
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        printf("%s# %s.%03ldZ %s: %zu instance%s (index %llu)\n", first ? "" : "\n", when,
               ts.tv_nsec / 1000000, a->pos[0], n, n == 1 ? "" : "s", (unsigned long long)index);
    }
    print_instances(a, list);
}

int shoal_cli_watch(const struct shoal_cli_args *a)
{
    sigset_t block, wait_mask;
    struct sigaction sa = {.sa_handler = watch_on_signal}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    const struct shoal_cli_http_opts quick = {.stop = &watch_stop, .sigmask = &wait_mask};
    const struct shoal_cli_http_opts blocking = {
        .timeout_ms = WATCH_WAIT_MS + WATCH_SLACK_MS, .stop = &watch_stop, .sigmask = &wait_mask};
    json_t *shown = NULL; /* the set printed last */
    uint64_t index = 0;   /* 0: ask without blocking */
    long long away = -1;  /* when the current outage began, or -1 */
    long long backoff = WATCH_BACKOFF_MIN_MS;
    int rc = SHOAL_CLI_OK;
    char lost[256];

    while (!watch_stop) {
        struct shoal_cli_reply r;
        json_t *list;
        uint64_t got;
        long long asked = mono_ms();
        int c = fetch_instances(a, index, index ? &blocking : &quick, &r, &list, &got, lost,
                                sizeof(lost));
        if (watch_stop) {
            if (c == 0)
                shoal_cli_reply_free(&r);
            break;
        }
        if (c == SHOAL_CLI_CALL_LOST && !shown) { /* never reached: like every command */
            fprintf(stderr, "shoal: %s\n", lost);
            rc = SHOAL_CLI_FAIL;
            break;
        }
        if (c == SHOAL_CLI_CALL_LOST) {
            long long now = mono_ms();
            if (away < 0) {
                away = now;
                backoff = WATCH_BACKOFF_MIN_MS;
                fprintf(stderr, "shoal watch: %s; retrying for up to %d s\n", lost,
                        WATCH_GIVE_UP_MS / 1000);
            } else if (now - away >= WATCH_GIVE_UP_MS) {
                fprintf(stderr, "shoal watch: no agent at %s for %d s (%s); giving up\n",
                        a->http_str, WATCH_GIVE_UP_MS / 1000, lost);
                rc = SHOAL_CLI_FAIL;
                break;
            }
            long long left = WATCH_GIVE_UP_MS - (now - away);
            watch_sleep(backoff < left ? backoff : left, &wait_mask);
            backoff = backoff * 2 < WATCH_BACKOFF_MAX_MS ? backoff * 2 : WATCH_BACKOFF_MAX_MS;
            index = 0; /* the agent may come back restarted, its index anew: ask at once */
            continue;
        }
        if (c) {
            rc = SHOAL_CLI_FAIL;
            break;
        }
        if (away >= 0) {
            fprintf(stderr, "shoal watch: agent at %s is back\n", a->http_str);
            away = -1;
        }
        if (!shown || !json_equal(shown, list)) {
            watch_print(a, list, got, !shown);
            json_decref(shown);
            shown = json_incref(list);
            if (fflush(stdout) != 0) {
                perror("shoal: writing output");
                rc = SHOAL_CLI_FAIL;
                shoal_cli_reply_free(&r);
                break;
            }
        } else if (mono_ms() - asked < WATCH_MIN_ROUND_MS) {
            watch_sleep(WATCH_MIN_ROUND_MS - (mono_ms() - asked), &wait_mask);
        }
        index = got;
        shoal_cli_reply_free(&r);
    }
    json_decref(shown);
    return rc;
}

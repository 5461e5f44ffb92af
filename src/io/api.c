/* api.c -- HTTP/JSON API handlers (jansson) over one shoal_node.
 *
 * Routes are a table of (path, method, handler); a known path with another
 * method is 405, anything else 404. Every response body is built as a
 * jansson value and dumped compactly. Text that comes from the request
 * (paths, parser messages) is reduced to printable ASCII before it is echoed
 * back, since jansson refuses strings that are not valid UTF-8.
 */
#include "io/api.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/swim.h"
#include "io/log.h"
#include "io/node.h"
#include "wire/wire.h"

#define API_MAX_JOIN_ADDRS 256 /* a join needs a few seeds, not thousands */
#define API_ECHO_MAX 96        /* bytes of request text quoted in errors */

/* Copies s (at most API_ECHO_MAX bytes) keeping printable ASCII only. */
static void echo_safe(char *out, size_t outlen, const char *s)
{
    size_t n = 0;
    for (; *s && n + 1 < outlen && n < API_ECHO_MAX; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[n] = 0;
}

/* Dumps v (and releases it) into resp with the given status. */
static void reply_json(struct shoal_http_resp *resp, int status, json_t *v)
{
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!resp->body) {
        resp->status = 500;
        resp->body = strdup("{\"error\":\"out of memory\"}");
    }
}

static void reply_error(struct shoal_http_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(struct shoal_http_resp *resp, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(resp, status, json_pack("{s:s}", "error", msg));
}

static int cmp_member_name(const void *a, const void *b)
{
    const struct shoal_member_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static void api_members(struct shoal_api *api, const struct shoal_http_req *req,
                        struct shoal_http_resp *resp)
{
    struct shoal_swim *s = shoal_node_swim(api->node);
    size_t count = shoal_swim_member_count(s), n = 0;
    struct shoal_member_info *all = calloc(count ? count : 1, sizeof(*all));
    json_t *arr = json_array();

    if (!all || !arr) {
        free(all);
        json_decref(arr);
        reply_error(resp, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < count; i++)
        if (shoal_swim_member_at(s, i, &all[n]))
            n++;
    qsort(all, n, sizeof(*all), cmp_member_name);
    for (size_t i = 0; i < n; i++) {
        char a[SHOAL_ADDR_STRLEN];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", all[i].name,
                                             "addr", shoal_addr_format(&all[i].addr, a, sizeof(a)),
                                             "status", shoal_status_name(all[i].status),
                                             "incarnation", (json_int_t)all[i].incarnation,
                                             "generation", (json_int_t)all[i].generation));
    }
    free(all);
    reply_json(resp, 200, json_pack("{s:o}", "members", arr));
}

struct api_counter {
    const char *key;
    uint64_t value;
};

/* {"key": value, ...} from a table of counters. */
static json_t *counters_object(const struct api_counter *t, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, t[i].key, json_integer((json_int_t)t[i].value));
    return o;
}
#define COUNTERS(...)                                                                              \
    counters_object((const struct api_counter[]){__VA_ARGS__},                                     \
                    sizeof((const struct api_counter[]){__VA_ARGS__}) /                            \
                        sizeof(struct api_counter))

static void api_info(struct shoal_api *api, const struct shoal_http_req *req,
                     struct shoal_http_resp *resp)
{
    struct shoal_swim *s = shoal_node_swim(api->node);
    const struct shoal_swim_config *cfg = shoal_swim_config(s);
    const struct shoal_swim_stats *st = shoal_swim_stats(s);
    const struct shoal_node_counters *c = shoal_node_counters(api->node);
    struct shoal_member_info self;
    size_t counts[SHOAL_STATUS_COUNT] = {0};
    struct api_counter drops[SHOAL_DROP_COUNT];
    char a[SHOAL_ADDR_STRLEN];

    if (!shoal_swim_member_find(s, cfg->name, &self)) {
        /* core always holds itself; report what the config says if not */
        memset(&self, 0, sizeof(self));
        self.generation = cfg->generation;
    }
    shoal_swim_count_by_status(s, counts);
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        drops[i] = (struct api_counter){shoal_drop_name(i), c->drops[i]};

    json_t *v = json_object();
    json_object_set_new(v, "name", json_string(cfg->name));
    json_object_set_new(v, "addr",
                        json_string(shoal_addr_format(shoal_node_addr(api->node), a, sizeof(a))));
    json_object_set_new(v, "generation", json_integer((json_int_t)self.generation));
    json_object_set_new(v, "incarnation", json_integer((json_int_t)self.incarnation));
    json_object_set_new(v, "health", json_integer((json_int_t)shoal_swim_health(s)));
    json_object_set_new(v, "members",
                        COUNTERS({"alive", counts[SHOAL_ALIVE]}, {"suspect", counts[SHOAL_SUSPECT]},
                                 {"dead", counts[SHOAL_DEAD]}, {"left", counts[SHOAL_LEFT]}));
    json_object_set_new(v, "packets", COUNTERS({"in", c->packets_in}, {"out", c->packets_out}));
    json_object_set_new(v, "bytes", COUNTERS({"in", c->bytes_in}, {"out", c->bytes_out}));
    json_object_set_new(v, "drops", counters_object(drops, SHOAL_DROP_COUNT));
    json_object_set_new(
        v, "protocol",
        COUNTERS({"probes_sent", st->probes_sent}, {"probes_failed", st->probes_failed},
                 {"ping_reqs_sent", st->ping_reqs_sent}, {"suspicions", st->suspicions},
                 {"refutes", st->refutes}, {"deaths", st->deaths}, {"conflicts", st->conflicts},
                 {"updates_applied", st->updates_applied}, {"pushpulls", st->pushpulls}));
    json_object_set_new(v, "joining", json_boolean(shoal_swim_joining(s)));
    json_object_set_new(v, "cluster_key", json_boolean(shoal_node_has_cluster_key(api->node)));
    reply_json(resp, 200, v);
}

static const char join_usage[] = "the body must be {\"addrs\":[\"IP:PORT\", ...]}";

static void api_join(struct shoal_api *api, const struct shoal_http_req *req,
                     struct shoal_http_resp *resp)
{
    json_error_t jerr;
    char echo[API_ECHO_MAX + 1];
    struct shoal_addr *seeds = NULL;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);

    if (!body) {
        echo_safe(echo, sizeof(echo), jerr.text);
        reply_error(resp, 400, "body is not valid JSON (%s at line %d column %d); %s", echo,
                    jerr.line, jerr.column, join_usage);
        return;
    }
    json_t *addrs = json_is_object(body) ? json_object_get(body, "addrs") : NULL;
    size_t n = json_array_size(addrs);
    if (!json_is_object(body)) {
        reply_error(resp, 400, "body is not a JSON object; %s", join_usage);
        goto out;
    }
    if (!json_is_array(addrs) || n == 0) {
        reply_error(resp, 400, "\"addrs\" must be a non-empty array of \"IP:PORT\" strings");
        goto out;
    }
    if (n > API_MAX_JOIN_ADDRS) {
        reply_error(resp, 400, "too many addresses: %zu (at most %d)", n, API_MAX_JOIN_ADDRS);
        goto out;
    }
    seeds = calloc(n, sizeof(*seeds));
    if (!seeds) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(addrs, i);
        if (!json_is_string(e)) {
            reply_error(resp, 400, "addrs[%zu] is not a string; expected \"IP:PORT\"", i);
            goto out;
        }
        if (shoal_addr_parse(json_string_value(e), &seeds[i]) != 0) {
            echo_safe(echo, sizeof(echo), json_string_value(e));
            reply_error(resp, 400, "addrs[%zu] '%s' is not a valid IP:PORT address", i, echo);
            goto out;
        }
    }
    int rc = shoal_node_join(api->node, seeds, n);
    if (rc == SHOAL_ESTATE) {
        reply_error(resp, 400, "the agent is leaving; it cannot join");
    } else if (rc == SHOAL_EINVAL) {
        reply_error(resp, 400, "no address to join other than this node's own");
    } else if (rc != 0) {
        reply_error(resp, 500, "join failed: %s", shoal_strerror(rc));
    } else {
        shoal_log_info("api", "joining through %zu address%s", n, n == 1 ? "" : "es");
        reply_json(resp, 200, json_pack("{s:I}", "joining", (json_int_t)n));
    }
out:
    free(seeds);
    json_decref(body);
}

static void api_leave(struct shoal_api *api, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp)
{
    shoal_log_info("api", "leave requested over HTTP");
    if (api->leave)
        api->leave(api->ud);
    else
        shoal_node_leave(api->node);
    reply_json(resp, 200, json_pack("{s:b}", "leaving", 1));
}

struct api_route {
    const char *path;
    const char *method;
    void (*fn)(struct shoal_api *, const struct shoal_http_req *, struct shoal_http_resp *);
};

static const struct api_route routes[] = {
    {"/v1/members", "GET", api_members},
    {"/v1/info", "GET", api_info},
    {"/v1/join", "POST", api_join},
    {"/v1/leave", "POST", api_leave},
};

void shoal_api_handle(void *ud, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp)
{
    struct shoal_api *api = ud;
    char p[API_ECHO_MAX + 1], m[API_ECHO_MAX + 1];

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        if (strcmp(req->method, routes[i].method) != 0) {
            echo_safe(m, sizeof(m), req->method);
            reply_error(resp, 405, "method %s not allowed on %s; use %s", m, routes[i].path,
                        routes[i].method);
            return;
        }
        routes[i].fn(api, req, resp);
        return;
    }
    echo_safe(p, sizeof(p), req->path);
    reply_error(resp, 404, "no such endpoint: %s", p);
}

/* api.c -- HTTP/JSON API handlers (jansson) over one shoal_node.
 *
 * Routes are a table of (path, method, handler); a route whose path ends in
 * '/' takes the rest of the path as its argument (an instance id, a service
 * name). A known path with another method is 405, anything else 404. Every
 * response body is built as a jansson value and dumped compactly. Text that
 * comes from the request (paths, parser messages) is reduced to printable
 * ASCII before it is echoed back, since jansson refuses strings that are
 * not valid UTF-8.
 *
 * Blocking queries (GET /v1/instances/NAME?index=N) are deferred with the
 * connection id: each waiter has its own ev_timer for `wait`, and
 * shoal_api_registry_changed() answers those whose service index moved.
 * Waiters are detached from the list before any is answered, because an
 * answer may run the handler again (pipelined requests) and add waiters.
 */
#include "io/api.h"
#include "io/apiack.h"
#include "io/apijson.h"
#include "io/checkspec.h"
#include "io/consul_api.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/balance.h"
#include "core/registry.h"
#include "core/swim.h"
#include "io/datadir.h"
#include "io/joiner.h"
#include "io/log.h"
#include "io/metrics.h"
#include "io/node.h"
#include "io/procinfo.h"
#include "io/resolve.h"
#include "io/stream.h"
#include "io/svcfile.h"
#include "io/ui.h"
#include "wire/wire.h"

#define API_ECHO_MAX 96          /* bytes of request text quoted in errors */
#define API_QUERY_VALUE_MAX 8192 /* one decoded query-string value */
#define API_QUERY_TAGS_MAX 64    /* tag= filters in one query */
#define API_QUERY_METAS_MAX 64   /* meta= filters in one query */

/* Copies s (at most API_ECHO_MAX bytes) keeping printable ASCII only. */
static void echo_safe(char *out, size_t outlen, const char *s)
{
    size_t n = 0;
    for (; *s && n + 1 < outlen && n < API_ECHO_MAX; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[n] = 0;
}

void shoal_api_reply_json(struct shoal_http_resp *resp, int status, json_t *v)
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
    shoal_api_reply_json(resp, status, json_pack("{s:s}", "error", msg));
}

static int cmp_member_name(const void *a, const void *b)
{
    const struct shoal_member_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static void api_members(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                        const char *arg, struct shoal_http_resp *resp)
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
    shoal_api_reply_json(resp, 200, json_pack("{s:o}", "members", arr));
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

static json_t *registry_stats_object(const struct shoal_registry_stats *st)
{
    return COUNTERS({"events_applied", st->events_applied}, {"events_stale", st->events_stale},
                    {"events_sent", st->events_sent}, {"notices_sent", st->notices_sent},
                    {"syncs_started", st->syncs_started}, {"syncs_served", st->syncs_served},
                    {"sync_events_sent", st->sync_events_sent},
                    {"sync_events_received", st->sync_events_received},
                    {"tombstones_collected", st->tombstones_collected}, {"reaped", st->reaped},
                    {"generation_wipes", st->generation_wipes},
                    {"floor_refusals", st->floor_refusals}, {"owner_syncs", st->owner_syncs},
                    {"verified", st->verified}, {"verify_timeouts", st->verify_timeouts},
                    {"swept", st->swept}, {"regossiped", st->regossiped});
}

static json_t *health_counts_object(const size_t by_health[SHOAL_HEALTH_COUNT])
{
    return COUNTERS({"passing", by_health[SHOAL_PASSING]}, {"warning", by_health[SHOAL_WARNING]},
                    {"critical", by_health[SHOAL_CRITICAL]});
}

/* /v1/info "registry"."stream": the TCP transport's counters. */
static json_t *stream_info(struct shoal_node *node)
{
    const struct shoal_stream_counters *c = shoal_node_stream_counters(node);
    const struct shoal_node_counters *nc = shoal_node_counters(node);
    return COUNTERS(
        {"open", c->open}, {"accepted", c->accepted}, {"connects", c->connects},
        {"connect_failures", c->connect_failures}, {"rejected", c->rejected},
        {"closed_idle", c->closed_idle}, {"closed_error", c->closed_error},
        {"closed_overflow", c->closed_overflow}, {"closed_too_large", c->closed_too_large},
        {"closed_eof", c->closed_eof}, {"frames_in", c->frames_in}, {"frames_out", c->frames_out},
        {"bytes_in", c->bytes_in}, {"bytes_out", c->bytes_out},
        {"send_unknown_conn", c->send_unknown_conn}, {"send_errors", nc->stream_errors});
}

/* /v1/info "registry"."refused": events from others refused by the
 * authority rules and caps (core/regauth.h), and our own refused by caps. */
static json_t *refused_object(const struct shoal_registry_stats *st)
{
    struct api_counter t[SHOAL_REG_REFUSE_COUNT];
    for (int i = 0; i < SHOAL_REG_REFUSE_COUNT; i++)
        t[i] = (struct api_counter){shoal_reg_refuse_name(i), st->refused[i]};
    return counters_object(t, SHOAL_REG_REFUSE_COUNT);
}

/* /v1/info "registry": what this replica holds and what it did. */
static json_t *registry_info(struct shoal_api *api)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    const struct shoal_node_counters *c = shoal_node_counters(api->node);
    size_t by_health[SHOAL_HEALTH_COUNT], tombstones;
    struct api_counter frame_drops[SHOAL_DROP_COUNT];

    shoal_registry_counts(r, by_health, &tombstones);
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        frame_drops[i] = (struct api_counter){shoal_drop_name(i), c->frame_drops[i]};
    json_t *v = registry_stats_object(shoal_registry_stats(r));
    if (!v)
        return NULL;
    json_object_set_new(v, "instances", health_counts_object(by_health));
    json_object_set_new(v, "tombstones", json_integer((json_int_t)tombstones));
    json_object_set_new(v, "own", json_integer((json_int_t)shoal_registry_own(r, NULL, 0)));
    json_object_set_new(v, "own_version", json_integer((json_int_t)shoal_registry_own_version(r)));
    json_object_set_new(v, "index", json_integer((json_int_t)shoal_registry_index(r, NULL)));
    json_object_set_new(v, "services",
                        json_integer((json_int_t)shoal_registry_services(r, NULL, 0)));
    json_object_set_new(v, "messages", COUNTERS({"in", c->reg_in}, {"out", c->reg_out}));
    json_object_set_new(v, "frame_drops", counters_object(frame_drops, SHOAL_DROP_COUNT));
    json_object_set_new(v, "refused", refused_object(shoal_registry_stats(r)));
    json_object_set_new(v, "signatures_verified",
                        json_integer((json_int_t)shoal_registry_stats(r)->sig_verified));
    json_object_set_new(v, "persist",
                        COUNTERS({"writes", c->persist_writes}, {"errors", c->persist_errors},
                                 {"appends", c->persist_appends},
                                 {"compactions", c->persist_compactions}));
    json_object_set_new(v, "waiting_queries", json_integer((json_int_t)shoal_api_waiting(api)));
    json_object_set_new(v, "stream", stream_info(api->node));
    return v;
}

static void api_info(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                     const char *arg, struct shoal_http_resp *resp)
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
    json_object_set_new(v, "version", json_string(shoal_procinfo_version()));
    json_object_set_new(v, "build", json_string(shoal_procinfo_build()));
    json_object_set_new(v, "uptime_s", json_integer((json_int_t)shoal_procinfo_uptime_s()));
    json_t *own = json_object();
    const struct shoal_addr *mine[3] = {&api->bind_addr, &api->http_addr, &api->dns_addr};
    const char *const mine_names[3] = {"bind", "http", "dns"};
    for (int i = 0; own && i < 3; i++)
        json_object_set_new(own, mine_names[i],
                            mine[i]->family ? json_string(shoal_addr_format(mine[i], a, sizeof(a)))
                                            : json_null());
    json_object_set_new(v, "addresses", own);
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
                 {"probe_suspicions", st->probe_suspicions},
                 {"refutes", st->refutes}, {"stale_claims", st->stale_claims},
                 {"fallback_pings", st->fallback_pings}, {"fallback_acks", st->fallback_acks},
                 {"deaths", st->deaths}, {"conflicts", st->conflicts},
                 {"updates_applied", st->updates_applied}, {"pushpulls", st->pushpulls}));
    json_object_set_new(v, "joining", json_boolean(shoal_swim_joining(s)));
    json_object_set_new(v, "cluster_key", json_boolean(shoal_node_has_cluster_key(api->node)));
    json_object_set_new(v, "registry", registry_info(api));
    shoal_api_reply_json(resp, 200, v);
}

static const char join_usage[] =
    "the body must be {\"addrs\":[\"HOST:PORT\", ...]} with an optional \"wait\": \"5s\"";

#define API_MAX_JOINERS 16        /* joins in progress at once */
#define API_JOIN_WAIT_MAX_MS 60000

struct api_join_wait {
    struct shoal_api *api;
    uint64_t conn;
    bool wait;
    uint32_t wait_ms;
};

/* A join through the API ended: answer the waiting request, if any. */
static void api_join_done(void *ud, bool ok, const char *text)
{
    struct api_join_wait *w = ud;
    if (w->wait && w->api->http && text) { /* text NULL: the agent is stopping */
        json_t *v = ok ? json_pack("{s:s,s:I}", "joined", text, "members",
                                   (json_int_t)shoal_swim_member_count(shoal_node_swim(w->api->node)))
                       : json_pack("{s:s}", "error", text);
        char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        if (body) {
            /* 504: no seed answered in time; the reason says which were asked. */
            (void)shoal_http_reply(w->api->http, w->conn, ok ? 200 : 504, "application/json",
                                   body);
        }
    }
    free(w);
}

static void api_join(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                     const char *arg, struct shoal_http_resp *resp)
{
    json_error_t jerr;
    char echo[API_ECHO_MAX + 1];
    const char **seeds = NULL;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    uint32_t wait_ms = 0;

    if (!body) {
        echo_safe(echo, sizeof(echo), jerr.text);
        reply_error(resp, 400, "body is not valid JSON (%s at line %d column %d); %s", echo,
                    jerr.line, jerr.column, join_usage);
        return;
    }
    json_t *addrs = json_is_object(body) ? json_object_get(body, "addrs") : NULL;
    json_t *wait = json_is_object(body) ? json_object_get(body, "wait") : NULL;
    size_t n = json_array_size(addrs);
    if (!json_is_object(body)) {
        reply_error(resp, 400, "body is not a JSON object; %s", join_usage);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val)
    {
        if (strcmp(key, "addrs") != 0 && strcmp(key, "wait") != 0) {
            echo_safe(echo, sizeof(echo), key);
            reply_error(resp, 400, "unknown field \"%s\"; %s", echo, join_usage);
            goto out;
        }
    }
    if (!json_is_array(addrs) || n == 0) {
        reply_error(resp, 400, "\"addrs\" must be a non-empty array of \"HOST:PORT\" strings");
        goto out;
    }
    if (n > SHOAL_JOIN_MAX_SEEDS) {
        reply_error(resp, 400, "too many addresses: %zu (at most %d)", n, SHOAL_JOIN_MAX_SEEDS);
        goto out;
    }
    if (wait && (!json_is_string(wait) ||
                 shoal_duration_parse(json_string_value(wait), &wait_ms) != 0 || wait_ms == 0 ||
                 wait_ms > API_JOIN_WAIT_MAX_MS)) {
        reply_error(resp, 400, "\"wait\" must be a duration from 1ms to 60s, such as \"5s\"");
        goto out;
    }
    seeds = calloc(n, sizeof(*seeds));
    if (!seeds) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(addrs, i);
        char host[SHOAL_HOST_MAX];
        uint16_t port;
        if (!json_is_string(e)) {
            reply_error(resp, 400, "addrs[%zu] is not a string; expected \"HOST:PORT\"", i);
            goto out;
        }
        if (shoal_hostport_split(json_string_value(e), host, sizeof(host), &port) != 0) {
            echo_safe(echo, sizeof(echo), json_string_value(e));
            reply_error(resp, 400,
                        "addrs[%zu] '%s' is not HOST:PORT (an IP address, [IPv6] or a DNS name, "
                        "and a port 1-65535)", i, echo);
            goto out;
        }
        seeds[i] = json_string_value(e);
    }
    if (!api->joins) {
        reply_error(resp, 503, "this agent cannot join now");
        goto out;
    }
    if (api->joins->count >= API_MAX_JOINERS) {
        reply_error(resp, 503, "too many joins in progress (%d); try again later", API_MAX_JOINERS);
        goto out;
    }
    struct api_join_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    w->api = api;
    w->conn = conn_id;
    w->wait = wait_ms > 0 && api->http;
    struct shoal_joiner_config jc = {
        .seeds = seeds,
        .n_seeds = n,
        .window_ms = wait_ms ? wait_ms : 5000,
        .max_attempts = 1,
        .what = "api join",
        .done = api_join_done,
        .ud = w,
    };
    int rc;
    if (!shoal_joiner_start(api->joins, &jc, &rc)) {
        free(w);
        if (rc == SHOAL_ESTATE)
            reply_error(resp, 400, "the agent is leaving; it cannot join");
        else if (rc == SHOAL_EINVAL)
            reply_error(resp, 400, "no address to join other than this node's own");
        else
            reply_error(resp, 500, "join failed: %s", shoal_strerror(rc));
        goto out;
    }
    shoal_log_info("api", "joining through %zu address%s", n, n == 1 ? "" : "es");
    if (w->wait)
        resp->deferred = true;
    else
        shoal_api_reply_json(resp, 200, json_pack("{s:I}", "joining", (json_int_t)n));
out:
    free(seeds);
    json_decref(body);
}

static void api_leave(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                      const char *arg, struct shoal_http_resp *resp)
{
    shoal_log_info("api", "leave requested over HTTP");
    if (api->leave)
        api->leave(api->ud);
    else
        shoal_node_leave(api->node);
    shoal_api_reply_json(resp, 200, json_pack("{s:b}", "leaving", 1));
}

/* ------------------------------------------------------------ registry */

/* Unix milliseconds as "2026-11-26T14:00:00.123Z". */
static json_t *json_time(int64_t ms)
{
    char buf[40];
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return json_null();
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", frac);
    return json_string(buf);
}

static const char *owner_status(struct shoal_api *api, const char *owner)
{
    struct shoal_member_info mi;
    if (!shoal_swim_member_find(shoal_node_swim(api->node), owner, &mi))
        return "unknown";
    return shoal_status_name(mi.status);
}

/* One instance as docs/registry-interfaces.md shows it. */
static json_t *instance_json(struct shoal_api *api, const struct shoal_instance *in)
{
    json_t *tags = json_array(), *meta = json_object(), *v = json_object();
    if (!tags || !meta || !v) {
        json_decref(tags);
        json_decref(meta);
        json_decref(v);
        return NULL;
    }
    for (uint32_t i = 0; i < in->n_tags; i++)
        json_array_append_new(tags, json_string(in->tags[i]));
    for (uint32_t i = 0; i < in->n_meta; i++)
        json_object_set_new(meta, in->meta[i].key, json_string(in->meta[i].value));
    json_object_set_new(v, "id", json_string(in->id));
    json_object_set_new(v, "service", json_string(in->service));
    json_object_set_new(v, "address", json_string(in->address));
    json_object_set_new(v, "port", json_integer(in->port));
    json_object_set_new(v, "tags", tags);
    json_object_set_new(v, "meta", meta);
    json_object_set_new(v, "status", json_string(shoal_health_name(in->health)));
    json_object_set_new(v, "ttl_ms", json_integer((json_int_t)in->ttl_ms));
    json_object_set_new(v, "registered_at", json_time(in->registered_ms));
    json_object_set_new(v, "last_heartbeat",
                        in->heartbeat_ms ? json_time(in->heartbeat_ms) : json_null());
    json_object_set_new(v, "owner", json_string(in->owner));
    json_object_set_new(v, "owner_status", json_string(owner_status(api, in->owner)));
    json_object_set_new(v, "generation", json_integer((json_int_t)in->generation));
    json_object_set_new(v, "version", json_integer((json_int_t)in->version));
    shoal_checkspec_show(v, in);
    return v;
}

/* After a change of ours, with resp holding the reply: the data dir holds
 * it before we say yes. The reply waits for the loop's group commit
 * (io/apiack.h); without an HTTP server to answer later, or short of
 * memory, the change is written now. */
static void reply_durable(struct shoal_api *api, uint64_t conn_id, struct shoal_http_resp *resp,
                          const char *what, const char *id)
{
    if (shoal_node_durable(api->node))
        return;
    if (shoal_api_ack_defer(api, conn_id, resp, what, id) == 0) {
        shoal_node_persist_soon(api->node);
        return;
    }
    int rc = shoal_node_persist(api->node);
    if (rc == 0)
        return;
    free(resp->body);
    resp->body = NULL;
    reply_error(resp, 500,
                "%s %s, but it could not be saved to the data dir (%s); the agent keeps retrying",
                what, id, shoal_datadir_strerror(rc));
}

static const char register_usage[] =
    "the body must be {\"id\":..,\"service\":..,\"address\":..,\"port\":N, "
    "\"tags\":[..], \"meta\":{..}, \"ttl\":\"10s\", \"checks\":[{\"http\":URL}|{\"tcp\":"
    "\"HOST:PORT\"}, ..], \"deregister_critical_after\":\"1m\"}";

/* A required or optional string member; false after replying 400. */
static bool body_string(json_t *body, const char *key, bool required, const char **out,
                        struct shoal_http_resp *resp)
{
    json_t *v = json_object_get(body, key);
    *out = NULL;
    if (!v) {
        if (required)
            reply_error(resp, 400, "\"%s\" is missing; %s", key, register_usage);
        return !required;
    }
    /* jansson refuses \u0000 without JSON_ALLOW_NUL: strings are C strings. */
    if (!json_is_string(v)) {
        reply_error(resp, 400, "\"%s\" must be a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Fills spec (pointers borrowed from body) from a register body. Returns
 * false after replying 400 naming the field. */
static bool parse_register(json_t *body, struct shoal_instance *spec, char ***tags,
                           struct shoal_kv **meta, struct shoal_http_resp *resp)
{
    static const char *const known[] = {"id",   "service", "address", "port",
                                        "tags", "meta",    "ttl",     "checks",
                                        "deregister_critical_after"};
    const char *key, *str;
    char echo[API_ECHO_MAX + 1];
    json_t *v;

    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            echo_safe(echo, sizeof(echo), key);
            reply_error(resp, 400, "unknown field \"%s\"; %s", echo, register_usage);
            return false;
        }
    }
    if (!body_string(body, "id", true, &str, resp))
        return false;
    spec->id = (char *)str;
    if (!body_string(body, "service", true, &str, resp))
        return false;
    spec->service = (char *)str;
    if (!body_string(body, "address", true, &str, resp))
        return false;
    spec->address = (char *)str;

    v = json_object_get(body, "port");
    if (!v) {
        reply_error(resp, 400, "\"port\" is missing; %s", register_usage);
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535) {
        reply_error(resp, 400, "\"port\" must be a whole number 1..65535");
        return false;
    }
    spec->port = (uint16_t)json_integer_value(v);

    if ((v = json_object_get(body, "tags")) != NULL) {
        size_t n = json_array_size(v);
        if (!json_is_array(v)) {
            reply_error(resp, 400, "\"tags\" must be an array of strings");
            return false;
        }
        if (n > SHOAL_TAGS_MAX) {
            reply_error(resp, 400, "\"tags\": at most %d tags", SHOAL_TAGS_MAX);
            return false;
        }
        if (n && !(*tags = calloc(n, sizeof(**tags)))) {
            reply_error(resp, 500, "out of memory");
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(v, i);
            if (!json_is_string(t)) {
                reply_error(resp, 400, "\"tags\"[%zu] must be a string", i);
                return false;
            }
            (*tags)[i] = (char *)json_string_value(t);
        }
        spec->tags = *tags;
        spec->n_tags = (uint32_t)n;
    }
    if ((v = json_object_get(body, "meta")) != NULL) {
        size_t n = json_object_size(v), i = 0;
        json_t *mv;
        if (!json_is_object(v)) {
            reply_error(resp, 400, "\"meta\" must be an object of strings");
            return false;
        }
        if (n > SHOAL_METAS_MAX) {
            reply_error(resp, 400, "\"meta\": at most %d pairs", SHOAL_METAS_MAX);
            return false;
        }
        if (n && !(*meta = calloc(n, sizeof(**meta)))) {
            reply_error(resp, 500, "out of memory");
            return false;
        }
        json_object_foreach(v, key, mv)
        {
            if (!json_is_string(mv)) {
                echo_safe(echo, sizeof(echo), key);
                reply_error(resp, 400, "\"meta\".\"%s\" must be a string", echo);
                return false;
            }
            (*meta)[i].key = (char *)key;
            (*meta)[i].value = (char *)json_string_value(mv);
            i++;
        }
        spec->meta = *meta;
        spec->n_meta = (uint32_t)i;
    }
    if ((v = json_object_get(body, "ttl")) != NULL) {
        if (json_is_integer(v)) {
            json_int_t ms = json_integer_value(v);
            if (ms < 0 || ms > UINT32_MAX) {
                reply_error(resp, 400, "\"ttl\" must be 0..4294967295 milliseconds");
                return false;
            }
            spec->ttl_ms = (uint32_t)ms;
        } else if (!json_is_string(v) ||
                   shoal_duration_parse(json_string_value(v), &spec->ttl_ms) != 0) {
            reply_error(resp, 400,
                        "\"ttl\" must be a duration such as \"10s\" or a number of milliseconds");
            return false;
        }
    }
    return true;
}

static void api_register(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                         const char *arg, struct shoal_http_resp *resp)
{
    struct shoal_instance spec = {0};
    char **tags = NULL, echo[API_ECHO_MAX + 1];
    struct shoal_kv *meta = NULL;
    json_error_t jerr;
    const char *why = NULL;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);

    if (!body) {
        echo_safe(echo, sizeof(echo), jerr.text);
        reply_error(resp, 400, "body is not valid JSON (%s at line %d column %d); %s", echo,
                    jerr.line, jerr.column, register_usage);
        return;
    }
    if (!json_is_object(body)) {
        reply_error(resp, 400, "body is not a JSON object; %s", register_usage);
        goto out;
    }
    if (!parse_register(body, &spec, &tags, &meta, resp))
        goto out;
    struct shoal_check checks[SHOAL_CHECKS_MAX];
    char cerr[256];
    if (shoal_checkspec_parse(body, &spec, checks, cerr, sizeof(cerr)) != 0) {
        reply_error(resp, 400, "%s", cerr);
        goto out;
    }
    /* Field limits are checked here, before anything changes. */
    if (shoal_instance_validate(&spec, &why) != 0) {
        reply_error(resp, 400, "%s", why);
        goto out;
    }
    int rc = shoal_node_register(api->node, &spec, &why);
    if (rc == SHOAL_EINVAL) {
        reply_error(resp, 400, "%s", why ? why : "invalid instance");
        goto out;
    }
    if (rc == SHOAL_ESTATE) {
        reply_error(resp, 503, "the agent is leaving; it takes no registrations");
        goto out;
    }
    if (rc == SHOAL_ETOOBIG) {
        reply_error(resp, 413, "%s", why ? why : "too large");
        goto out;
    }
    if (rc == SHOAL_EPERM) {
        reply_error(resp, 403, "%s", why ? why : "not permitted");
        goto out;
    }
    if (rc != 0) {
        reply_error(resp, 500, "register failed: %s", shoal_strerror(rc));
        goto out;
    }
    shoal_svcset_forget(api->svc, spec.id);
    const struct shoal_instance *in = shoal_registry_own_get(shoal_node_registry(api->node), spec.id);
    shoal_log_info("api", "registered %s (%s %s:%u)", spec.id, spec.service, spec.address,
                   spec.port);
    shoal_api_reply_json(resp, 200,
               json_pack("{s:s, s:I}", "registered", spec.id, "version",
                         (json_int_t)(in ? in->version : 0)));
    reply_durable(api, conn_id, resp, "registered", spec.id);
out:
    free(tags);
    free(meta);
    json_decref(body);
}

/* The id argument of deregister/heartbeat; false after replying. */
static bool id_arg(const char *arg, struct shoal_http_resp *resp)
{
    struct shoal_instance t = {.id = (char *)arg, .service = "x", .address = "x", .port = 1};
    const char *why;
    if (!*arg) {
        reply_error(resp, 400, "the path must end in the instance id");
        return false;
    }
    if (shoal_instance_validate(&t, &why) != 0) {
        reply_error(resp, 400, "%s", why);
        return false;
    }
    return true;
}

static void api_deregister(struct shoal_api *api, uint64_t conn_id,
                           const struct shoal_http_req *req, const char *id,
                           struct shoal_http_resp *resp)
{
    if (!id_arg(id, resp))
        return;
    int rc = shoal_node_deregister(api->node, id);
    if (rc == SHOAL_ENOENT) {
        reply_error(resp, 404, "no instance '%s' is registered on this node", id);
        return;
    }
    if (rc == SHOAL_ESTATE) {
        reply_error(resp, 503, "the agent is leaving; its instances are being deregistered");
        return;
    }
    if (rc != 0) {
        reply_error(resp, 500, "deregister failed: %s", shoal_strerror(rc));
        return;
    }
    shoal_svcset_forget(api->svc, id);
    shoal_log_info("api", "deregistered %s", id);
    shoal_api_reply_json(resp, 200, json_pack("{s:s}", "deregistered", id));
    reply_durable(api, conn_id, resp, "deregistered", id);
}

static void api_heartbeat(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                          const char *id, struct shoal_http_resp *resp)
{
    if (!id_arg(id, resp))
        return;
    int rc = shoal_node_heartbeat(api->node, id);
    if (rc == SHOAL_ENOENT) {
        reply_error(resp, 404, "no instance '%s' is registered on this node", id);
        return;
    }
    if (rc == SHOAL_EINVAL) {
        reply_error(resp, 400, "instance '%s' has no TTL; heartbeats are for TTL instances", id);
        return;
    }
    if (rc == SHOAL_ESTATE) {
        reply_error(resp, 503, "the agent is leaving");
        return;
    }
    if (rc != 0) {
        reply_error(resp, 500, "heartbeat failed: %s", shoal_strerror(rc));
        return;
    }
    const struct shoal_instance *in = shoal_registry_own_get(shoal_node_registry(api->node), id);
    shoal_api_reply_json(resp, 200,
               json_pack("{s:s, s:s}", "heartbeat", id, "status",
                         shoal_health_name(in ? in->health : SHOAL_PASSING)));
    reply_durable(api, conn_id, resp, "heartbeat for", id);
}

static void api_services(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                         const char *arg, struct shoal_http_resp *resp)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    size_t n = shoal_registry_services(r, NULL, 0);
    struct shoal_service_summary *v = calloc(n ? n : 1, sizeof(*v));
    json_t *arr = json_array();

    if (!v || !arr) {
        free(v);
        json_decref(arr);
        reply_error(resp, 500, "out of memory");
        return;
    }
    n = shoal_registry_services(r, v, n);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr,
                              json_pack("{s:s, s:I, s:I}", "name", v[i].name, "passing",
                                        (json_int_t)v[i].passing, "total", (json_int_t)v[i].total));
    free(v);
    shoal_api_reply_json(resp, 200, json_pack("{s:o}", "services", arr));
}

static void api_registry(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                         const char *arg, struct shoal_http_resp *resp)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    size_t by_health[SHOAL_HEALTH_COUNT], tombstones;
    size_t n = shoal_registry_digests(r, NULL, 0);
    struct shoal_reg_digest *d = calloc(n ? n : 1, sizeof(*d));
    json_t *arr = json_array();

    if (!d || !arr) {
        free(d);
        json_decref(arr);
        reply_error(resp, 500, "out of memory");
        return;
    }
    n = shoal_registry_digests(r, d, n);
    for (size_t i = 0; i < n; i++) {
        char hash[17];
        snprintf(hash, sizeof(hash), "%016" PRIx64, d[i].hash);
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:s, s:I}", "owner", d[i].owner,
                                             "generation", (json_int_t)d[i].generation, "version",
                                             (json_int_t)d[i].version, "hash", hash, "count",
                                             (json_int_t)d[i].count));
    }
    free(d);
    shoal_registry_counts(r, by_health, &tombstones);
    shoal_api_reply_json(resp, 200,
               json_pack("{s:I, s:o, s:I, s:o, s:o}", "index",
                         (json_int_t)shoal_registry_index(r, NULL), "instances",
                         health_counts_object(by_health), "tombstones", (json_int_t)tombstones,
                         "digests", arr, "stats", registry_stats_object(shoal_registry_stats(r))));
}

/* ---------------------------------------------------- instance queries */

/* An instances query as parsed from the path and query string; owns its
 * strings (a waiter keeps it). */
struct api_query {
    char *service;
    char *tags[API_QUERY_TAGS_MAX];
    size_t n_tags;
    struct shoal_kv meta[API_QUERY_METAS_MAX];
    size_t n_meta;
    bool all;
    bool has_index;
    uint64_t index;
    uint32_t wait_ms;
};

static void query_clear(struct api_query *q)
{
    free(q->service);
    for (size_t i = 0; i < q->n_tags; i++)
        free(q->tags[i]);
    for (size_t i = 0; i < q->n_meta; i++)
        free(q->meta[i].key); /* value points into the same allocation */
    memset(q, 0, sizeof(*q));
}

/* URL-decodes s[0..n) (http.c's rules). Returns false if it does not fit. */
static bool url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    return shoal_http_url_decode(s, n, out, outlen) >= 0;
}

/* Parses NAME and the query string into q. Returns false after replying
 * 400 (q is cleared then). */
static bool parse_query(const char *name, const char *qs, struct api_query *q,
                        struct shoal_http_resp *resp)
{
    struct shoal_instance t = {.id = "x", .service = (char *)name, .address = "x", .port = 1};
    char *k = malloc(API_QUERY_VALUE_MAX), *v = malloc(API_QUERY_VALUE_MAX);
    char echo[API_ECHO_MAX + 1];
    const char *why;
    bool ok = false, seen_all = false, seen_wait = false;

    memset(q, 0, sizeof(*q));
    q->wait_ms = SHOAL_API_WAIT_DEFAULT_MS;
    if (!k || !v) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    if (!*name) {
        reply_error(resp, 400, "the path must end in a service name: /v1/instances/NAME");
        goto out;
    }
    if (shoal_instance_validate(&t, &why) != 0) {
        reply_error(resp, 400, "%s", why);
        goto out;
    }
    if (!(q->service = strdup(name))) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    for (const char *p = qs; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        const char *vs = eq ? eq + 1 : p + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        if (len == 0) {
            p++;
            continue;
        }
        if (!url_decode(p, klen, k, API_QUERY_VALUE_MAX) ||
            !url_decode(vs, vlen, v, API_QUERY_VALUE_MAX)) {
            reply_error(resp, 400, "a query parameter is longer than %d bytes",
                        API_QUERY_VALUE_MAX - 1);
            goto out;
        }
        p += len;
        if (*p == '&')
            p++;
        if (strcmp(k, "all") == 0) {
            if (seen_all) {
                reply_error(resp, 400, "\"all\" given twice");
                goto out;
            }
            seen_all = true;
            if (strcmp(v, "") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
                q->all = true;
            } else if (strcmp(v, "0") != 0 && strcmp(v, "false") != 0) {
                reply_error(resp, 400, "\"all\" must be 1, true, 0 or false");
                goto out;
            }
        } else if (strcmp(k, "tag") == 0) {
            struct shoal_instance tt = t;
            char *one[1] = {v};
            tt.tags = one;
            tt.n_tags = 1;
            if (shoal_instance_validate(&tt, &why) != 0) {
                reply_error(resp, 400, "tag filter: %s", why);
                goto out;
            }
            if (q->n_tags == API_QUERY_TAGS_MAX) {
                reply_error(resp, 400, "at most %d tag filters", API_QUERY_TAGS_MAX);
                goto out;
            }
            if (!(q->tags[q->n_tags] = strdup(v))) {
                reply_error(resp, 500, "out of memory");
                goto out;
            }
            q->n_tags++;
        } else if (strcmp(k, "meta") == 0) {
            char *colon = strchr(v, ':');
            if (!colon || colon == v) {
                echo_safe(echo, sizeof(echo), v);
                reply_error(resp, 400, "meta filter '%s' must be KEY:VALUE", echo);
                goto out;
            }
            if (q->n_meta == API_QUERY_METAS_MAX) {
                reply_error(resp, 400, "at most %d meta filters", API_QUERY_METAS_MAX);
                goto out;
            }
            size_t vl = strlen(v);
            char *copy = malloc(vl + 1);
            if (!copy) {
                reply_error(resp, 500, "out of memory");
                goto out;
            }
            memcpy(copy, v, vl + 1);
            copy[colon - v] = 0;
            q->meta[q->n_meta].key = copy;
            q->meta[q->n_meta].value = copy + (colon - v) + 1;
            q->n_meta++;
        } else if (strcmp(k, "index") == 0) {
            char *end;
            size_t digits = strspn(v, "0123456789");
            if (q->has_index || digits == 0 || digits > 20 || v[digits]) {
                reply_error(resp, 400, "\"index\" must be given once, as a whole number");
                goto out;
            }
            errno = 0;
            unsigned long long iv = strtoull(v, &end, 10);
            if (errno) {
                reply_error(resp, 400, "\"index\" is out of range");
                goto out;
            }
            q->index = iv;
            q->has_index = true;
        } else if (strcmp(k, "wait") == 0) {
            uint32_t ms;
            if (seen_wait || shoal_duration_parse(v, &ms) != 0 || ms > SHOAL_API_WAIT_MAX_MS) {
                reply_error(resp, 400,
                            "\"wait\" must be given once, as a duration up to 10m (e.g. 30s)");
                goto out;
            }
            seen_wait = true;
            q->wait_ms = ms;
        } else {
            echo_safe(echo, sizeof(echo), k);
            reply_error(resp, 400,
                        "unknown query parameter '%s' (expected all, tag, meta, index, wait)",
                        echo);
            goto out;
        }
    }
    ok = true;
out:
    free(k);
    free(v);
    if (!ok)
        query_clear(q);
    return ok;
}

/* {"index":N,"instances":[...]} for q, now. NULL when out of memory. */
static const char *owner_status_cb(void *ud, const char *owner) { return owner_status(ud, owner); }

/* The answer's body (io/apijson.h; malloc'd), or NULL when out of memory. */
static char *query_result(struct shoal_api *api, const struct api_query *q)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    struct shoal_query sq = {.service = q->service,
                             .tags = (const char *const *)q->tags,
                             .n_tags = q->n_tags,
                             .meta = q->meta,
                             .n_meta = q->n_meta,
                             .all = q->all};
    size_t n = shoal_registry_query(r, &sq, NULL, 0);
    const struct shoal_instance **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return NULL;
    n = shoal_registry_query(r, &sq, v, n);
    char *body = shoal_apijson_instances(v, n, shoal_registry_index(r, q->service),
                                         owner_status_cb, api, NULL);
    free(v);
    return body;
}

struct api_waiter {
    struct shoal_api *api;
    struct api_waiter *prev, *next;
    ev_timer timer;
    uint64_t conn;
    struct api_query q;
};

struct api_waiters {
    struct api_waiter *head;
    size_t n;
};

static void waiter_unlink(struct api_waiter *w)
{
    struct api_waiters *ws = w->api->waiters;
    if (w->prev)
        w->prev->next = w->next;
    else
        ws->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    ws->n--;
    ev_timer_stop(w->api->loop, &w->timer);
}

/* Answers a detached waiter with the current result and frees it. */
static void waiter_answer(struct api_waiter *w)
{
    /* a client that went away (a page closed) costs no answer */
    char *body =
        shoal_http_awaiting(w->api->http, w->conn) ? query_result(w->api, &w->q) : NULL;
    int status = body ? 200 : 500;
    if (!body)
        body = strdup("{\"error\":\"out of memory\"}");
    if (body && !shoal_http_reply(w->api->http, w->conn, status, "application/json", body))
        shoal_log_debug("api", "blocking query on connection %llu: the client went away",
                        (unsigned long long)w->conn);
    query_clear(&w->q);
    free(w);
}

static void waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct api_waiter *w = t->data;
    waiter_unlink(w);
    waiter_answer(w);
}

void shoal_api_registry_changed(struct shoal_api *api)
{
    struct api_waiter *ready = NULL;
    const struct shoal_registry *r;

    shoal_consul_registry_changed(api);
    if (!api->waiters || !api->waiters->n)
        return;
    r = shoal_node_registry(api->node);
    /* Detach first: answering may run handlers that add waiters. */
    for (struct api_waiter *w = api->waiters->head, *next; w; w = next) {
        next = w->next;
        if (shoal_registry_index(r, w->q.service) == w->q.index)
            continue;
        waiter_unlink(w);
        w->next = ready;
        ready = w;
    }
    while (ready) {
        struct api_waiter *w = ready;
        ready = w->next;
        waiter_answer(w);
    }
}

size_t shoal_api_waiting(const struct shoal_api *api)
{
    return (api->waiters ? api->waiters->n : 0) + shoal_consul_waiting(api);
}

void shoal_api_persisted(struct shoal_api *api, int rc) { shoal_api_ack_done(api, rc); }

void shoal_api_close(struct shoal_api *api)
{
    shoal_api_ack_close(api);
    shoal_resolver_free(api->resolver);
    api->resolver = NULL;
    shoal_consul_close(api);
    shoal_ui_close(api);
    if (!api->waiters)
        return;
    while (api->waiters->head) {
        struct api_waiter *w = api->waiters->head;
        waiter_unlink(w);
        query_clear(&w->q);
        free(w);
    }
    free(api->waiters);
    api->waiters = NULL;
}

static void api_instances(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                          const char *name, struct shoal_http_resp *resp)
{
    struct api_query q;

    if (!parse_query(name, req->query, &q, resp))
        return;
    const struct shoal_registry *r = shoal_node_registry(api->node);
    bool wait = q.has_index && q.index == shoal_registry_index(r, q.service) && q.wait_ms > 0 &&
                api->http && api->loop;
    if (!wait) {
        char *body = query_result(api, &q);
        query_clear(&q);
        if (!body) {
            reply_error(resp, 500, "out of memory");
        } else {
            resp->status = 200;
            resp->content_type = "application/json";
            resp->body = body;
        }
        return;
    }
    if (!api->waiters && !(api->waiters = calloc(1, sizeof(*api->waiters)))) {
        query_clear(&q);
        reply_error(resp, 500, "out of memory");
        return;
    }
    if (api->waiters->n >= SHOAL_API_MAX_WAITERS) {
        query_clear(&q);
        reply_error(resp, 503, "too many blocking queries (%d); retry later",
                    SHOAL_API_MAX_WAITERS);
        return;
    }
    struct api_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        query_clear(&q);
        reply_error(resp, 500, "out of memory");
        return;
    }
    w->api = api;
    w->conn = conn_id;
    w->q = q;
    ev_timer_init(&w->timer, waiter_timeout, q.wait_ms / 1000.0, 0.);
    w->timer.data = w;
    ev_timer_start(api->loop, &w->timer);
    w->next = api->waiters->head;
    if (w->next)
        w->next->prev = w;
    api->waiters->head = w;
    api->waiters->n++;
    resp->deferred = true;
}

/* ---------------------------------------------------- load balancing */

#define API_RESOLVE_QS_MAX 16384 /* the tag=/meta= part of a resolve query */

/* The state key of a caller: `key` if given (has: already in out), else the connection's peer
 * address (io/resolve.h), else "". */
static void caller_key(struct shoal_api *api, uint64_t conn_id, bool has, char *out, size_t outlen)
{
    if (has) /* already in out */
        return;
    if (!api->http || !shoal_http_peer(api->http, conn_id, out, outlen))
        out[0] = 0;
}

static struct shoal_resolver *resolver(struct shoal_api *api)
{
    if (!api->resolver) {
        /* the seed only decorrelates agents' random picks; it needs no
         * secrecy, so the clocks and pid are enough */
        uint64_t seed = (uint64_t)shoal_node_wall_ms() * 0x9e3779b97f4a7c15ULL ^
                        (uint64_t)shoal_node_clock_ms() ^ ((uint64_t)getpid() << 32);
        api->resolver = shoal_resolver_new(seed);
    }
    return api->resolver;
}

/* GET /v1/resolve/NAME?strategy=S&client=IP&key=K&tag=T&meta=K:V: one
 * passing instance picked by S (default round-robin). 400 on a bad
 * parameter, 503 when no instance of NAME passes (an unknown service
 * included: this replica may simply not have heard of it yet). */
static void api_resolve(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                        const char *name, struct shoal_http_resp *resp)
{
    char strategy[32] = "round-robin", client[SHOAL_RESOLVE_KEY_MAX], key[SHOAL_RESOLVE_KEY_MAX];
    char echo[API_ECHO_MAX + 1], *filtered = malloc(API_RESOLVE_QS_MAX);
    char *k = malloc(API_QUERY_VALUE_MAX), *v = malloc(API_QUERY_VALUE_MAX);
    bool has_client = false, has_key = false, has_strategy = false;
    size_t flen = 0;
    struct api_query q;
    const struct shoal_instance **insts = NULL;

    if (!filtered || !k || !v) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    filtered[0] = 0;
    /* strategy, client and key are ours; tag= and meta= go to parse_query */
    for (const char *p = req->query; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (len == 0) {
            p++;
            continue;
        }
        if (!url_decode(p, klen, k, API_QUERY_VALUE_MAX) ||
            !url_decode(eq ? eq + 1 : p + len, eq ? len - klen - 1 : 0, v, API_QUERY_VALUE_MAX)) {
            reply_error(resp, 400, "a query parameter is longer than %d bytes",
                        API_QUERY_VALUE_MAX - 1);
            goto out;
        }
        bool *seen = strcmp(k, "strategy") == 0 ? &has_strategy
                     : strcmp(k, "client") == 0 ? &has_client
                     : strcmp(k, "key") == 0    ? &has_key
                                                : NULL;
        if (seen) {
            char *dst = seen == &has_strategy ? strategy : seen == &has_client ? client : key;
            size_t cap = seen == &has_strategy ? sizeof(strategy) : SHOAL_RESOLVE_KEY_MAX;
            if (*seen || strlen(v) >= cap) {
                reply_error(resp, 400, "\"%s\" must be given once, at most %zu bytes", k, cap - 1);
                goto out;
            }
            *seen = true;
            memcpy(dst, v, strlen(v) + 1);
        } else if (strcmp(k, "tag") == 0 || strcmp(k, "meta") == 0) {
            if (flen + len + 2 > API_RESOLVE_QS_MAX) {
                reply_error(resp, 400, "too many tag and meta filters");
                goto out;
            }
            if (flen)
                filtered[flen++] = '&';
            memcpy(filtered + flen, p, len);
            filtered[flen += len] = 0;
        } else {
            echo_safe(echo, sizeof(echo), k);
            reply_error(resp, 400,
                        "unknown query parameter '%s' (expected strategy, client, key, tag, meta)",
                        echo);
            goto out;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    int lb = shoal_lb_parse(strategy);
    if (lb < 0) {
        echo_safe(echo, sizeof(echo), strategy);
        reply_error(resp, 400,
                    "unknown strategy '%s' (expected round-robin, random, least-conn, ip-hash)",
                    echo);
        goto out;
    }
    if (!parse_query(name, filtered, &q, resp))
        goto out;
    caller_key(api, conn_id, has_key, key, sizeof(key));
    caller_key(api, conn_id, has_client, client, sizeof(client));

    const struct shoal_registry *r = shoal_node_registry(api->node);
    struct shoal_query sq = {.service = q.service,
                             .tags = (const char *const *)q.tags,
                             .n_tags = q.n_tags,
                             .meta = q.meta,
                             .n_meta = q.n_meta};
    size_t n = shoal_registry_query(r, &sq, NULL, 0);
    if (n == 0) {
        reply_error(resp, 503, "no passing instance of %s", q.service);
        query_clear(&q);
        goto out;
    }
    if (!(insts = calloc(n, sizeof(*insts))) || !resolver(api)) {
        reply_error(resp, 500, "out of memory");
        query_clear(&q);
        goto out;
    }
    n = shoal_registry_query(r, &sq, insts, n);
    uint32_t active = 0;
    int i = shoal_resolver_pick(api->resolver, shoal_node_clock_ms(), lb, key, q.service,
                                (const struct shoal_instance *const *)insts, n, client, &active);
    query_clear(&q);
    if (i < 0) {
        reply_error(resp, 500, "out of memory");
        goto out;
    }
    json_t *res = json_pack("{s:o, s:s, s:I, s:s}", "instance", instance_json(api, insts[i]),
                            "strategy", shoal_lb_name(lb), "candidates", (json_int_t)n, "key", key);
    if (res && lb == SHOAL_LB_LEAST_CONN)
        json_object_set_new(res, "active", json_integer(active));
    if (res && lb == SHOAL_LB_IP_HASH)
        json_object_set_new(res, "client", json_string(client));
    if (!res)
        reply_error(resp, 500, "out of memory");
    else
        shoal_api_reply_json(resp, 200, res);
out:
    free(insts);
    free(filtered);
    free(k);
    free(v);
}

/* POST /v1/release/NAME/ID?owner=O&key=K: ends the oldest least-conn lease
 * of instance ID (of owner O, if given) that GET /v1/resolve handed to
 * key K (default as for resolve). 404 when there is none. */
static void api_release(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                        const char *arg, struct shoal_http_resp *resp)
{
    char key[SHOAL_RESOLVE_KEY_MAX], owner[SHOAL_NAME_MAX], name[SHOAL_SERVICE_MAX];
    char echo[API_ECHO_MAX + 1];
    const char *slash = strchr(arg, '/');
    struct api_query q;

    if (!slash || (size_t)(slash - arg) >= sizeof(name) || !slash[1]) {
        echo_safe(echo, sizeof(echo), arg);
        reply_error(resp, 400, "'%s': the path must be /v1/release/NAME/ID", echo);
        return;
    }
    memcpy(name, arg, (size_t)(slash - arg));
    name[slash - arg] = 0;
    if (!parse_query(name, "", &q, resp)) /* validates the service name */
        return;
    query_clear(&q);
    if (!id_arg(slash + 1, resp))
        return;
    bool has_key = shoal_http_query_get(req->query, "key", key, sizeof(key));
    bool has_owner = shoal_http_query_get(req->query, "owner", owner, sizeof(owner));
    caller_key(api, conn_id, has_key, key, sizeof(key));
    int left = api->resolver ? shoal_resolver_release(api->resolver, shoal_node_clock_ms(), key,
                                                      name, has_owner ? owner : NULL, slash + 1)
                             : -1;
    if (left < 0) {
        echo_safe(echo, sizeof(echo), slash + 1);
        reply_error(resp, 404, "no lease of %s for this key", echo);
        return;
    }
    shoal_api_reply_json(resp, 200, json_pack("{s:b, s:i}", "released", 1, "active", left));
}

/* ------------------------------------------------------------ routing */

/* GET /metrics: Prometheus text (io/metrics.c). */
static void api_metrics(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                        const char *arg, struct shoal_http_resp *resp)
{
    char *text = shoal_metrics_render(api->metrics, api->node);
    if (!text) {
        reply_error(resp, 500, "out of memory");
        return;
    }
    resp->status = 200;
    resp->body = text;
    resp->content_type = SHOAL_METRICS_CONTENT_TYPE;
}

struct api_route {
    const char *path; /* ending in '/': a prefix, the rest is the argument */
    const char *method;
    void (*fn)(struct shoal_api *, uint64_t conn_id, const struct shoal_http_req *, const char *arg,
               struct shoal_http_resp *);
};

static const struct api_route routes[] = {
    {"/v1/members", "GET", api_members},
    {"/v1/info", "GET", api_info},
    {"/v1/join", "POST", api_join},
    {"/v1/leave", "POST", api_leave},
    {"/v1/register", "POST", api_register},
    {"/v1/deregister/", "POST", api_deregister},
    {"/v1/heartbeat/", "POST", api_heartbeat},
    {"/v1/services", "GET", api_services},
    {"/v1/instances/", "GET", api_instances},
    {"/v1/resolve/", "GET", api_resolve},
    {"/v1/release/", "POST", api_release}, /* the one argument with a '/': NAME/ID */
    {"/v1/registry", "GET", api_registry},
    {"/metrics", "GET", api_metrics},
};

bool shoal_api_native(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp)
{
    char p[API_ECHO_MAX + 1], m[API_ECHO_MAX + 1];
    char arg[SHOAL_ID_MAX * 3 + 1];

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *rp = routes[i].path;
        size_t rlen = strlen(rp);
        bool prefix = rp[rlen - 1] == '/';
        const char *rest = "";
        if (!prefix && strcmp(req->path, rp) != 0)
            continue;
        if (prefix) {
            if (strncmp(req->path, rp, rlen) != 0)
                continue; /* before looking past rlen: the path may be shorter */
            const char *slash = strchr(req->path + rlen, '/');
            if (slash && (routes[i].fn != api_release || strchr(slash + 1, '/')))
                continue;
            rest = req->path + rlen;
        }
        if (strcmp(req->method, routes[i].method) != 0) {
            echo_safe(m, sizeof(m), req->method);
            reply_error(resp, 405, "method %s not allowed on %s; use %s", m, rp, routes[i].method);
            return true;
        }
        arg[0] = 0;
        if (prefix && !url_decode(rest, strlen(rest), arg, sizeof(arg))) {
            echo_safe(p, sizeof(p), rest);
            reply_error(resp, 400, "'%s' is too long for an instance id or service name", p);
            return true;
        }
        routes[i].fn(api, conn_id, req, arg, resp);
        return true;
    }
    return false;
}

void shoal_api_handle(void *ud, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp)
{
    struct shoal_api *api = ud;
    char p[API_ECHO_MAX + 1];

    /* The web UI (/ui/, /v1/cluster), then native routes: they win where a
     * path could mean both; then Consul's. */
    if (shoal_ui_handle(api, conn_id, req, resp) || shoal_api_native(api, conn_id, req, resp) ||
        shoal_consul_handle(api, conn_id, req, resp))
        return;
    echo_safe(p, sizeof(p), req->path);
    reply_error(resp, 404, "no such endpoint: %s", p);
}

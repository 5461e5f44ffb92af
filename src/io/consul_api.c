/* consul_api.c -- Consul's agent/catalog/health/status API subset and
 * Prometheus http_sd over one agent's registry replica (io/consul_api.h).
 *
 * Every agent holds the whole registry, so every agent answers catalog and
 * health queries itself: it is the "leader" of a datacenter of one voter.
 * Nodes are shoal members; a service instance is owned by the member it was
 * registered with. Each node gets Consul's "serfHealth" check from
 * membership (alive/suspect: passing, dead: critical).
 *
 * A request is parsed into a struct cq (common parameters), then routed
 * by a table. A blocking query (?index=N equal to the current index of the
 * query's scope: one service, or the whole registry) is deferred; its
 * path and query are kept and the request is run again, unblocked, when
 * the scope's index moves or `wait` passes, and answered with
 * shoal_http_reply_headers().
 */
#include "io/consul_api.h"

#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "core/swim.h"
#include "io/consul_json.h"
#include "io/log.h"
#include "io/node.h"

#define CQ_VALUE_MAX 4096 /* one decoded query value */
#define CQ_TAGS_MAX 32

struct consul_waiter {
    struct shoal_api *api;
    struct consul_waiter *prev, *next;
    ev_timer timer;
    uint64_t conn;
    char *method, *path, *query; /* one allocation; method first */
    char *scope;                 /* service whose index is watched; NULL: all */
    uint64_t index;
};

struct shoal_consul {
    struct consul_waiter *head;
    size_t n;
};

/* The parsed common parameters of one request. */
struct cq {
    struct shoal_api *api;
    const struct shoal_http_req *req;
    struct shoal_http_resp *resp;
    bool has_index;
    uint64_t index;
    uint64_t wait_ms;
    bool passing;
    bool all;
    char *tags[CQ_TAGS_MAX];
    size_t n_tags;
    char *service; /* ?service= (http_sd) */
    struct shoal_consul_filter *filter;
    const char *scope; /* set by the handler: the index it reports */
    bool blocked_ok;   /* the request may be deferred */
};

static const char *dc_name(const struct shoal_api *api)
{
    return api->datacenter && *api->datacenter ? api->datacenter : "dc1";
}

static const char *self_name(const struct shoal_api *api)
{
    return shoal_swim_config(shoal_node_swim(api->node))->name;
}

/* ---------------------------------------------------------- responses */

static void set_headers(struct cq *q, uint64_t index)
{
    snprintf(q->resp->headers, sizeof(q->resp->headers),
             "X-Consul-Index: %" PRIu64 "\r\nX-Consul-KnownLeader: true\r\n"
             "X-Consul-LastContact: 0\r\n",
             index);
}

static uint64_t scope_index(const struct shoal_api *api, const char *scope)
{
    return shoal_registry_index(shoal_node_registry(api->node), scope);
}

static void reply_json(struct cq *q, int status, json_t *v)
{
    struct shoal_http_resp *resp = q->resp;
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!resp->body) {
        resp->status = 500;
        resp->content_type = "text/plain; charset=utf-8";
        resp->body = strdup("out of memory");
    }
    set_headers(q, scope_index(q->api, q->scope));
}

/* Consul's errors are plain text. */
static void reply_text(struct cq *q, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_text(struct cq *q, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* keep printable ASCII: the text may quote the request */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    q->resp->status = status;
    q->resp->content_type = "text/plain; charset=utf-8";
    q->resp->body = strdup(msg);
    set_headers(q, scope_index(q->api, q->scope));
}

/* ---------------------------------------------------------- parameters */

static void cq_clear(struct cq *q)
{
    for (size_t i = 0; i < q->n_tags; i++)
        free(q->tags[i]);
    free(q->service);
    shoal_consul_filter_free(q->filter);
    q->n_tags = 0;
    q->service = NULL;
    q->filter = NULL;
}

static bool flag_value(const char *v)
{
    return !*v || strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
}

/* Reads the query string. Unknown parameters are ignored, as Consul does.
 * Returns false after replying. */
static bool cq_parse(struct cq *q)
{
    char *k = malloc(CQ_VALUE_MAX), *v = malloc(CQ_VALUE_MAX);
    bool ok = false, stale = false, consistent = false;

    q->wait_ms = SHOAL_CONSUL_WAIT_DEFAULT_MS;
    if (!k || !v) {
        reply_text(q, 500, "out of memory");
        goto out;
    }
    for (const char *p = q->req->query; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (len == 0) {
            p++;
            continue;
        }
        if (shoal_http_url_decode(p, klen, k, CQ_VALUE_MAX) < 0 ||
            shoal_http_url_decode(eq ? eq + 1 : p + len, eq ? len - klen - 1 : 0, v, CQ_VALUE_MAX) <
                0) {
            reply_text(q, 400, "a query parameter is longer than %d bytes", CQ_VALUE_MAX - 1);
            goto out;
        }
        p += len;
        if (*p == '&')
            p++;
        if (strcmp(k, "dc") == 0) {
            if (*v && strcmp(v, dc_name(q->api)) != 0) {
                reply_text(q, 500, "No path to datacenter");
                goto out;
            }
        } else if (strcmp(k, "stale") == 0) {
            stale = true;
        } else if (strcmp(k, "consistent") == 0) {
            consistent = true;
        } else if (strcmp(k, "index") == 0) {
            size_t d = strspn(v, "0123456789");
            if (!*v || d != strlen(v) || d > 19) {
                reply_text(q, 400, "Invalid index");
                goto out;
            }
            q->index = strtoull(v, NULL, 10);
            q->has_index = true;
        } else if (strcmp(k, "wait") == 0) {
            uint64_t ms;
            if (shoal_consul_duration(v, &ms) != 0) {
                reply_text(q, 400, "Invalid wait time");
                goto out;
            }
            q->wait_ms = ms > SHOAL_CONSUL_WAIT_MAX_MS ? SHOAL_CONSUL_WAIT_MAX_MS : ms;
        } else if (strcmp(k, "passing") == 0) {
            q->passing = flag_value(v);
        } else if (strcmp(k, "all") == 0) {
            q->all = flag_value(v);
        } else if (strcmp(k, "tag") == 0) {
            if (q->n_tags == CQ_TAGS_MAX) {
                reply_text(q, 400, "at most %d tag filters", CQ_TAGS_MAX);
                goto out;
            }
            if (!(q->tags[q->n_tags] = strdup(v))) {
                reply_text(q, 500, "out of memory");
                goto out;
            }
            q->n_tags++;
        } else if (strcmp(k, "service") == 0) {
            free(q->service);
            if (!(q->service = strdup(v))) {
                reply_text(q, 500, "out of memory");
                goto out;
            }
        } else if (strcmp(k, "filter") == 0) {
            char err[400];
            shoal_consul_filter_free(q->filter);
            if (!(q->filter = shoal_consul_filter_new(v, err, sizeof(err)))) {
                reply_text(q, 400, "Failed to create boolean expression evaluator: %s", err);
                goto out;
            }
        }
        /* cached, token, near, note, ns, partition, pretty, node-meta...:
         * accepted; a single agent answers every read itself (no cache,
         * no nearer node), and tokens are checked by the HTTP layer. */
    }
    if (stale && consistent) {
        reply_text(q, 400, "Cannot specify ?stale with ?consistent, conflicting semantics.");
        goto out;
    }
    ok = true;
out:
    free(k);
    free(v);
    if (!ok)
        cq_clear(q);
    return ok;
}

/* ---------------------------------------------------------- JSON shapes */

/* The IP of a member's gossip address, or "" (unknown member). */
static bool member_of(const struct shoal_api *api, const char *name, struct shoal_member_info *mi)
{
    return shoal_swim_member_find(shoal_node_swim(api->node), name, mi);
}

static void addr_ip(const struct shoal_addr *a, char *out, size_t outlen)
{
    char buf[SHOAL_ADDR_STRLEN];
    shoal_addr_format(a, buf, sizeof(buf));
    char *colon = strrchr(buf, ':');
    if (colon)
        *colon = 0;
    const char *s = buf;
    if (*s == '[') {
        s++;
        char *rb = strchr(buf, ']');
        if (rb)
            *rb = 0;
    }
    snprintf(out, outlen, "%s", s);
}

static json_t *node_json(const struct shoal_api *api, const char *name, bool with_index)
{
    struct shoal_member_info mi;
    char ip[64] = "", id[37];
    if (member_of(api, name, &mi))
        addr_ip(&mi.addr, ip, sizeof(ip));
    shoal_consul_node_id(name, id);
    json_t *v =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{}}", "ID", id, "Node", name, "Address", ip,
                  "Datacenter", dc_name(api), "TaggedAddresses", "lan", ip, "wan", ip, "Meta");
    if (v && with_index) {
        json_object_set_new(v, "CreateIndex", json_integer((json_int_t)mi.generation));
        json_object_set_new(v, "ModifyIndex", json_integer((json_int_t)mi.generation));
    }
    return v;
}

static json_t *tags_json(const struct shoal_instance *in)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < in->n_tags; i++)
        json_array_append_new(a, json_string(in->tags[i]));
    return a;
}

static json_t *meta_json(const struct shoal_instance *in)
{
    json_t *o = json_object();
    for (uint32_t i = 0; o && i < in->n_meta; i++)
        json_object_set_new(o, in->meta[i].key, json_string(in->meta[i].value));
    return o;
}

static int weight_of(const struct shoal_instance *in)
{
    for (uint32_t i = 0; i < in->n_meta; i++) {
        if (strcmp(in->meta[i].key, "weight") == 0) {
            int w = atoi(in->meta[i].value);
            return w >= 1 && w <= 1000 ? w : 1;
        }
    }
    return 1;
}

/* The agent form of a service (GET /v1/agent/services, health's Service). */
static json_t *service_json(const struct shoal_api *api, const struct shoal_instance *in)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:i, s:s, s:{}, s:{s:i, s:i}, s:b, s:s, s:I, s:I}", "ID",
                     in->id, "Service", in->service, "Tags", tags_json(in), "Meta", meta_json(in),
                     "Port", (int)in->port, "Address", in->address, "TaggedAddresses", "Weights",
                     "Passing", weight_of(in), "Warning", 1, "EnableTagOverride", 0, "Datacenter",
                     dc_name(api), "CreateIndex", (json_int_t)in->version, "ModifyIndex",
                     (json_int_t)in->version);
}

static json_t *check_json(const struct shoal_api *api, const struct shoal_instance *in,
                          const struct shoal_consul_check *c)
{
    char name[SHOAL_SERVICE_MAX + 32], interval[24] = "", timeout[24] = "";
    snprintf(name, sizeof(name), "Service '%s' check", in->service);
    if (c->check) {
        snprintf(interval, sizeof(interval), "%ums", (unsigned)c->check->interval_ms);
        snprintf(timeout, sizeof(timeout), "%ums", (unsigned)c->check->timeout_ms);
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:i, s:{}, "
                     "s:I, s:I}",
                     "Node", in->owner, "CheckID", c->id, "Name", name, "Status",
                     shoal_consul_status(c->status), "Notes", "", "Output", c->output, "ServiceID",
                     in->id, "ServiceName", in->service, "ServiceTags", tags_json(in), "Type",
                     c->type, "Interval", interval, "Timeout", timeout, "ExposedPort", 0,
                     "Definition", "CreateIndex", (json_int_t)in->version, "ModifyIndex",
                     (json_int_t)in->version);
}

/* Membership as Consul's node check. */
static uint8_t node_health(const struct shoal_api *api, const char *name)
{
    struct shoal_member_info mi;
    if (!member_of(api, name, &mi))
        return SHOAL_CRITICAL;
    return mi.status == SHOAL_ALIVE || mi.status == SHOAL_SUSPECT ? SHOAL_PASSING : SHOAL_CRITICAL;
}

static json_t *serf_check_json(const struct shoal_api *api, const char *node)
{
    uint8_t h = node_health(api, node);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[], s:s, s:s, s:s, s:i, s:{}}",
                     "Node", node, "CheckID", "serfHealth", "Name", "Serf Health Status", "Status",
                     shoal_consul_status(h), "Notes", "", "Output",
                     h == SHOAL_PASSING ? "Agent alive and reachable"
                                        : "Agent not live or unreachable",
                     "ServiceID", "", "ServiceName", "", "ServiceTags", "Type", "", "Interval", "",
                     "Timeout", "", "ExposedPort", 0, "Definition");
}

/* Instances of a service (all health states, dead owners too), by tag. */
static size_t instances(struct cq *q, const char *service, const struct shoal_instance ***out)
{
    const struct shoal_registry *r = shoal_node_registry(q->api->node);
    struct shoal_query sq = {
        .service = service, .tags = (const char *const *)q->tags, .n_tags = q->n_tags, .all = true};
    size_t n = shoal_registry_query(r, &sq, NULL, 0);
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return SIZE_MAX;
    return shoal_registry_query(r, &sq, *out, n);
}

/* Appends v to arr unless the filter rejects it. */
static void add_filtered(struct cq *q, json_t *arr, json_t *v)
{
    if (v && (!q->filter || shoal_consul_filter_match(q->filter, v)))
        json_array_append(arr, v);
    json_decref(v);
}

/* Our own live instances (not tombstones); *out malloc'd. */
static size_t own_instances(struct shoal_api *api, const struct shoal_instance ***out)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    size_t n = shoal_registry_own(r, NULL, 0);
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return SIZE_MAX;
    return shoal_registry_own(r, *out, n);
}

static const struct shoal_instance *own_find(struct shoal_api *api, const char *id)
{
    const struct shoal_instance **v, *found = NULL;
    size_t n = own_instances(api, &v);
    for (size_t i = 0; n != SIZE_MAX && i < n && !found; i++)
        if (strcmp(v[i]->id, id) == 0)
            found = v[i];
    free(v);
    return found;
}

/* ---------------------------------------------------------- agent */

/* Runs a native route with a translated request and turns its answer into
 * Consul's: 200 with an empty body, or the native error as plain text. */
static void native_call(struct cq *q, uint64_t conn_id, const char *path, const char *body)
{
    struct shoal_http_req nreq = *q->req;
    struct shoal_http_resp nresp;
    memset(&nresp, 0, sizeof(nresp));
    nreq.method = "POST";
    nreq.path = path;
    nreq.query = "";
    nreq.body = body ? body : "";
    nreq.body_len = body ? strlen(body) : 0;
    if (!shoal_api_native(q->api, conn_id, &nreq, &nresp)) {
        reply_text(q, 500, "internal route %s is missing", path);
        return;
    }
    int status = nresp.status ? nresp.status : 200;
    if (status == 200) {
        reply_text(q, 200, "%s", "");
    } else {
        json_t *e = nresp.body ? json_loads(nresp.body, 0, NULL) : NULL;
        const char *msg = json_string_value(json_object_get(e, "error"));
        reply_text(q, status, "%s", msg ? msg : "request failed");
        json_decref(e);
    }
    free(nresp.body);
}

static void agent_register(struct cq *q, uint64_t conn_id, const char *arg)
{
    json_error_t jerr;
    char err[400], ip[64];
    json_t *native = NULL, *body = json_loadb(q->req->body, q->req->body_len, 0, &jerr);
    if (!body) {
        reply_text(q, 400, "Request decode failed: %s (line %d column %d)", jerr.text, jerr.line,
                   jerr.column);
        return;
    }
    addr_ip(shoal_node_addr(q->api->node), ip, sizeof(ip));
    if (shoal_consul_to_native(body, ip, &native, err, sizeof(err)) != 0) {
        reply_text(q, 400, "Invalid service: %s", err);
        json_decref(body);
        return;
    }
    char *text = json_dumps(native, JSON_COMPACT);
    if (!text)
        reply_text(q, 500, "out of memory");
    else
        native_call(q, conn_id, "/v1/register", text);
    free(text);
    json_decref(native);
    json_decref(body);
}

static void agent_deregister(struct cq *q, uint64_t conn_id, const char *id)
{
    char path[SHOAL_ID_MAX * 3 + 32];
    if (!*id || strlen(id) >= SHOAL_ID_MAX) {
        reply_text(q, 400, "Missing service ID");
        return;
    }
    /* the native route URL-decodes its argument again: encode '%' */
    size_t o = (size_t)snprintf(path, sizeof(path), "/v1/deregister/");
    for (const char *p = id; *p && o + 4 < sizeof(path); p++)
        o += (size_t)(*p == '%' ? snprintf(path + o, 4, "%%25") : snprintf(path + o, 2, "%c", *p));
    if (strchr(id, '/')) {
        reply_text(q, 404, "Unknown service ID %s", id);
        return;
    }
    native_call(q, conn_id, path, NULL);
}

static void agent_services(struct cq *q, uint64_t conn_id, const char *arg)
{
    const struct shoal_instance **v;
    size_t n = own_instances(q->api, &v);
    json_t *o = json_object();
    if (n == SIZE_MAX || !o) {
        free(v);
        json_decref(o);
        reply_text(q, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = service_json(q->api, v[i]);
        if (s && (!q->filter || shoal_consul_filter_match(q->filter, s)))
            json_object_set(o, v[i]->id, s);
        json_decref(s);
    }
    free(v);
    reply_json(q, 200, o);
}

static void agent_service(struct cq *q, uint64_t conn_id, const char *id)
{
    const struct shoal_instance *in = own_find(q->api, id);
    if (!in) {
        reply_text(q, 404, "unknown service ID: %s", id);
        return;
    }
    json_t *s = service_json(q->api, in);
    char hash[17];
    snprintf(hash, sizeof(hash), "%016" PRIx64, (uint64_t)(in->version * 0x9E3779B97F4A7C15ULL));
    if (s)
        json_object_set_new(s, "ContentHash", json_string(hash));
    reply_json(q, 200, s);
}

static void agent_checks(struct cq *q, uint64_t conn_id, const char *arg)
{
    const struct shoal_instance **v;
    size_t n = own_instances(q->api, &v);
    json_t *o = json_object();
    if (n == SIZE_MAX || !o) {
        free(v);
        json_decref(o);
        reply_text(q, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct shoal_consul_check cc[SHOAL_CHECKS_MAX + 1];
        size_t k = shoal_consul_checks(v[i], cc);
        for (size_t j = 0; j < k; j++) {
            json_t *c = check_json(q->api, v[i], &cc[j]);
            if (c && (!q->filter || shoal_consul_filter_match(q->filter, c)))
                json_object_set(o, cc[j].id, c);
            json_decref(c);
        }
    }
    free(v);
    reply_json(q, 200, o);
}

/* PUT /v1/agent/check/{pass,warn,fail,update}/service:ID[:N] */
static void agent_check_set(struct cq *q, const char *check_id, int health)
{
    char id[SHOAL_ID_MAX];
    int pos;
    struct shoal_consul_check cc[SHOAL_CHECKS_MAX + 1];
    const struct shoal_instance *in = NULL;
    size_t n = 0;
    if (shoal_consul_check_parse(check_id, id, sizeof(id), &pos) &&
        (in = own_find(q->api, id)) != NULL)
        n = shoal_consul_checks(in, cc);
    if (!in || (pos < 0 && n != 1) || (pos >= 0 && (size_t)pos >= n) || (pos >= 0 && n == 1)) {
        reply_text(q, 404,
                   "Unknown check ID \"%s\". Ensure that the check ID is passed, not "
                   "the check name.",
                   check_id);
        return;
    }
    const struct shoal_consul_check *c = &cc[pos < 0 ? 0 : pos];
    if (strcmp(c->type, "ttl") != 0) {
        reply_text(q, 500, "CheckID \"%s\" does not have associated TTL", check_id);
        return;
    }
    int rc = shoal_node_ttl_set(q->api->node, id, (uint8_t)health);
    if (rc == SHOAL_ESTATE) {
        reply_text(q, 503, "the agent is leaving");
        return;
    }
    if (rc != 0) {
        reply_text(q, 500, "check update failed: %s", shoal_strerror(rc));
        return;
    }
    if ((rc = shoal_node_persist(q->api->node)) != 0) {
        reply_text(q, 500, "updated %s, but it could not be saved to the data dir", check_id);
        return;
    }
    reply_text(q, 200, "%s", "");
}

static void agent_check_pass(struct cq *q, uint64_t c, const char *id)
{
    agent_check_set(q, id, SHOAL_PASSING);
}
static void agent_check_warn(struct cq *q, uint64_t c, const char *id)
{
    agent_check_set(q, id, SHOAL_WARNING);
}
static void agent_check_fail(struct cq *q, uint64_t c, const char *id)
{
    agent_check_set(q, id, SHOAL_CRITICAL);
}

static void agent_check_update(struct cq *q, uint64_t conn_id, const char *id)
{
    json_t *body = json_loadb(q->req->body, q->req->body_len, 0, NULL);
    json_t *st = shoal_consul_get(body, "Status");
    int h = json_is_string(st) ? shoal_health_parse(json_string_value(st)) : -1;
    json_decref(body);
    if (h < 0) {
        reply_text(q, 400,
                   "Invalid check status: the body must be {\"Status\": \"passing\", "
                   "\"warning\" or \"critical\", \"Output\": ...}");
        return;
    }
    agent_check_set(q, id, h);
}

static int serf_status(uint8_t st)
{
    switch (st) {
    case SHOAL_ALIVE:
    case SHOAL_SUSPECT:
        return 1; /* serf StatusAlive */
    case SHOAL_LEFT:
        return 3;
    default:
        return 4; /* failed */
    }
}

static json_t *member_json(const struct shoal_api *api, const struct shoal_member_info *m)
{
    char ip[64], id[37];
    addr_ip(&m->addr, ip, sizeof(ip));
    shoal_consul_node_id(m->name, id);
    return json_pack("{s:s, s:s, s:i, s:{s:s, s:s, s:s}, s:i, s:i, s:i, s:i, s:i, s:i, s:i}",
                     "Name", m->name, "Addr", ip, "Port", (int)m->addr.port, "Tags", "dc",
                     dc_name(api), "role", "node", "id", id, "Status", serf_status(m->status),
                     "ProtocolMin", 1, "ProtocolMax", 5, "ProtocolCur", 2, "DelegateMin", 2,
                     "DelegateMax", 5, "DelegateCur", 4);
}

static void agent_members(struct cq *q, uint64_t conn_id, const char *arg)
{
    struct shoal_swim *s = shoal_node_swim(q->api->node);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < shoal_swim_member_count(s); i++) {
        struct shoal_member_info m;
        if (shoal_swim_member_at(s, i, &m))
            add_filtered(q, arr, member_json(q->api, &m));
    }
    reply_json(q, 200, arr);
}

static void agent_self(struct cq *q, uint64_t conn_id, const char *arg)
{
    struct shoal_member_info m;
    char id[37];
    const char *name = self_name(q->api);
    memset(&m, 0, sizeof(m));
    if (!member_of(q->api, name, &m)) {
        snprintf(m.name, sizeof(m.name), "%s", name);
        m.addr = *shoal_node_addr(q->api->node);
        m.status = SHOAL_ALIVE;
    }
    shoal_consul_node_id(name, id);
    reply_json(q, 200,
               json_pack("{s:{s:s, s:s, s:s, s:b, s:s, s:s}, s:o, s:{}}", "Config", "Datacenter",
                         dc_name(q->api), "NodeName", name, "NodeID", id, "Server", 0, "Revision",
                         "", "Version", "shoal", "Member", member_json(q->api, &m), "Meta"));
}

/* ---------------------------------------------------------- catalog */

static void catalog_services(struct cq *q, uint64_t conn_id, const char *arg)
{
    const struct shoal_registry *r = shoal_node_registry(q->api->node);
    size_t n = shoal_registry_services(r, NULL, 0);
    struct shoal_service_summary *v = calloc(n ? n : 1, sizeof(*v));
    json_t *o = json_object();
    if (!v || !o) {
        free(v);
        json_decref(o);
        reply_text(q, 500, "out of memory");
        return;
    }
    n = shoal_registry_services(r, v, n);
    for (size_t i = 0; i < n; i++) {
        const struct shoal_instance **in;
        size_t k = instances(q, v[i].name, &in);
        json_t *tags = json_array();
        for (size_t j = 0; k != SIZE_MAX && tags && j < k; j++) {
            for (uint32_t t = 0; t < in[j]->n_tags; t++) {
                bool seen = false;
                for (size_t x = 0; x < json_array_size(tags) && !seen; x++)
                    seen = strcmp(json_string_value(json_array_get(tags, x)), in[j]->tags[t]) == 0;
                if (!seen)
                    json_array_append_new(tags, json_string(in[j]->tags[t]));
            }
        }
        if (k != SIZE_MAX && k > 0 && tags)
            json_object_set(o, v[i].name, tags);
        json_decref(tags);
        free(in);
    }
    free(v);
    reply_json(q, 200, o);
}

static json_t *catalog_entry(const struct shoal_api *api, const struct shoal_instance *in)
{
    json_t *node = node_json(api, in->owner, false);
    json_t *v = json_pack(
        "{s:O, s:O, s:O, s:O, s:O, s:{}, s:s, s:s, s:o, s:s, s:o, s:i, s:{s:i, s:i}, s:b, s:I, "
        "s:I}",
        "ID", json_object_get(node, "ID"), "Node", json_object_get(node, "Node"), "Address",
        json_object_get(node, "Address"), "Datacenter", json_object_get(node, "Datacenter"),
        "TaggedAddresses", json_object_get(node, "TaggedAddresses"), "NodeMeta", "ServiceID",
        in->id, "ServiceName", in->service, "ServiceTags", tags_json(in), "ServiceAddress",
        in->address, "ServiceMeta", meta_json(in), "ServicePort", (int)in->port, "ServiceWeights",
        "Passing", weight_of(in), "Warning", 1, "ServiceEnableTagOverride", 0, "CreateIndex",
        (json_int_t)in->version, "ModifyIndex", (json_int_t)in->version);
    json_decref(node);
    return v;
}

static void catalog_service(struct cq *q, uint64_t conn_id, const char *name)
{
    const struct shoal_instance **in;
    q->scope = name;
    size_t n = instances(q, name, &in);
    json_t *arr = json_array();
    if (n == SIZE_MAX || !arr) {
        free(in);
        json_decref(arr);
        reply_text(q, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        add_filtered(q, arr, catalog_entry(q->api, in[i]));
    free(in);
    reply_json(q, 200, arr);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct shoal_member_info *)a)->name,
                  ((const struct shoal_member_info *)b)->name);
}

/* Members a catalog lists: all but those that left; sorted by name. */
static size_t catalog_members(const struct shoal_api *api, struct shoal_member_info **out)
{
    struct shoal_swim *s = shoal_node_swim(api->node);
    size_t count = shoal_swim_member_count(s), n = 0;
    *out = calloc(count ? count : 1, sizeof(**out));
    if (!*out)
        return SIZE_MAX;
    for (size_t i = 0; i < count; i++)
        if (shoal_swim_member_at(s, i, &(*out)[n]) && (*out)[n].status != SHOAL_LEFT)
            n++;
    qsort(*out, n, sizeof(**out), by_name);
    return n;
}

static void catalog_nodes(struct cq *q, uint64_t conn_id, const char *arg)
{
    struct shoal_member_info *m;
    size_t n = catalog_members(q->api, &m);
    json_t *arr = json_array();
    for (size_t i = 0; n != SIZE_MAX && arr && i < n; i++)
        add_filtered(q, arr, node_json(q->api, m[i].name, true));
    free(m);
    reply_json(q, 200, arr);
}

/* Every instance (all states) of one owner, malloc'd. */
static size_t owner_instances(struct cq *q, const char *node, const struct shoal_instance ***out)
{
    const struct shoal_registry *r = shoal_node_registry(q->api->node);
    size_t ns = shoal_registry_services(r, NULL, 0), total = 0, cap = 0;
    struct shoal_service_summary *sv = calloc(ns ? ns : 1, sizeof(*sv));
    *out = NULL;
    if (!sv)
        return SIZE_MAX;
    ns = shoal_registry_services(r, sv, ns);
    for (size_t i = 0; i < ns; i++) {
        const struct shoal_instance **in;
        size_t k = instances(q, sv[i].name, &in);
        for (size_t j = 0; k != SIZE_MAX && j < k; j++) {
            if (strcmp(in[j]->owner, node) != 0)
                continue;
            if (total == cap) {
                cap = cap ? cap * 2 : 16;
                const struct shoal_instance **g = realloc(*out, cap * sizeof(**out));
                if (!g) {
                    free(in);
                    free(sv);
                    free(*out);
                    *out = NULL;
                    return SIZE_MAX;
                }
                *out = g;
            }
            (*out)[total++] = in[j];
        }
        free(in);
    }
    free(sv);
    return total;
}

static void catalog_node(struct cq *q, uint64_t conn_id, const char *node)
{
    struct shoal_member_info mi;
    if (!member_of(q->api, node, &mi) || mi.status == SHOAL_LEFT) {
        reply_json(q, 200, json_null());
        return;
    }
    const struct shoal_instance **in;
    size_t n = owner_instances(q, node, &in);
    json_t *svcs = json_object();
    for (size_t i = 0; n != SIZE_MAX && svcs && i < n; i++)
        json_object_set_new(svcs, in[i]->id, service_json(q->api, in[i]));
    free(in);
    reply_json(q, 200,
               json_pack("{s:o, s:o}", "Node", node_json(q->api, node, true), "Services", svcs));
}

static void catalog_datacenters(struct cq *q, uint64_t conn_id, const char *arg)
{
    reply_json(q, 200, json_pack("[s]", dc_name(q->api)));
}

/* ---------------------------------------------------------- health */

/* The checks of one instance, the node's serfHealth first; the worst. */
static json_t *instance_checks(const struct shoal_api *api, const struct shoal_instance *in,
                               uint8_t *worst)
{
    struct shoal_consul_check cc[SHOAL_CHECKS_MAX + 1];
    size_t k = shoal_consul_checks(in, cc);
    json_t *arr = json_array();
    *worst = node_health(api, in->owner);
    if (!shoal_registry_owner_live(shoal_node_registry(api->node), in->owner))
        *worst = SHOAL_CRITICAL;
    json_array_append_new(arr, serf_check_json(api, in->owner));
    for (size_t j = 0; j < k; j++) {
        json_array_append_new(arr, check_json(api, in, &cc[j]));
        if (cc[j].status > *worst)
            *worst = cc[j].status;
    }
    if (in->health > *worst)
        *worst = in->health;
    return arr;
}

static void health_service(struct cq *q, uint64_t conn_id, const char *name)
{
    const struct shoal_instance **in;
    q->scope = name;
    size_t n = instances(q, name, &in);
    json_t *arr = json_array();
    if (n == SIZE_MAX || !arr) {
        free(in);
        json_decref(arr);
        reply_text(q, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t worst;
        json_t *checks = instance_checks(q->api, in[i], &worst);
        if (q->passing && worst != SHOAL_PASSING) {
            json_decref(checks);
            continue;
        }
        add_filtered(q, arr,
                     json_pack("{s:o, s:o, s:o}", "Node", node_json(q->api, in[i]->owner, true),
                               "Service", service_json(q->api, in[i]), "Checks", checks));
    }
    free(in);
    reply_json(q, 200, arr);
}

/* Appends the checks of the given instances (matching state, or any). */
static void append_checks(struct cq *q, json_t *arr, const struct shoal_instance **in, size_t n,
                          int state)
{
    for (size_t i = 0; i < n; i++) {
        struct shoal_consul_check cc[SHOAL_CHECKS_MAX + 1];
        size_t k = shoal_consul_checks(in[i], cc);
        for (size_t j = 0; j < k; j++)
            if (state < 0 || cc[j].status == state)
                add_filtered(q, arr, check_json(q->api, in[i], &cc[j]));
    }
}

static void health_checks(struct cq *q, uint64_t conn_id, const char *name)
{
    const struct shoal_instance **in;
    q->scope = name;
    size_t n = instances(q, name, &in);
    json_t *arr = json_array();
    if (n != SIZE_MAX && arr)
        append_checks(q, arr, in, n, -1);
    free(in);
    reply_json(q, 200, arr);
}

static void health_node(struct cq *q, uint64_t conn_id, const char *node)
{
    struct shoal_member_info mi;
    json_t *arr = json_array();
    if (member_of(q->api, node, &mi) && mi.status != SHOAL_LEFT && arr) {
        const struct shoal_instance **in;
        add_filtered(q, arr, serf_check_json(q->api, node));
        size_t n = owner_instances(q, node, &in);
        if (n != SIZE_MAX)
            append_checks(q, arr, in, n, -1);
        free(in);
    }
    reply_json(q, 200, arr);
}

static void health_state(struct cq *q, uint64_t conn_id, const char *state)
{
    int want = strcmp(state, "any") == 0 ? -1 : shoal_health_parse(state);
    if (want < 0 && strcmp(state, "any") != 0) {
        reply_text(q, 400, "Invalid check state: %s (passing, warning, critical or any)", state);
        return;
    }
    json_t *arr = json_array();
    struct shoal_member_info *m;
    size_t nm = catalog_members(q->api, &m);
    for (size_t i = 0; nm != SIZE_MAX && arr && i < nm; i++)
        if (want < 0 || node_health(q->api, m[i].name) == want)
            add_filtered(q, arr, serf_check_json(q->api, m[i].name));
    free(m);
    const struct shoal_registry *r = shoal_node_registry(q->api->node);
    size_t ns = shoal_registry_services(r, NULL, 0);
    struct shoal_service_summary *sv = calloc(ns ? ns : 1, sizeof(*sv));
    ns = sv ? shoal_registry_services(r, sv, ns) : 0;
    for (size_t i = 0; arr && i < ns; i++) {
        const struct shoal_instance **in;
        size_t n = instances(q, sv[i].name, &in);
        if (n != SIZE_MAX)
            append_checks(q, arr, in, n, want);
        free(in);
    }
    free(sv);
    reply_json(q, 200, arr);
}

/* ---------------------------------------------------------- status */

/* Every agent answers from its own full replica: to a Consul client it is
 * the leader of a healthy one-voter cluster. */
static void status_leader(struct cq *q, uint64_t conn_id, const char *arg)
{
    char a[SHOAL_ADDR_STRLEN];
    reply_json(q, 200, json_string(shoal_addr_format(shoal_node_addr(q->api->node), a, sizeof(a))));
}

static void status_peers(struct cq *q, uint64_t conn_id, const char *arg)
{
    char a[SHOAL_ADDR_STRLEN];
    reply_json(q, 200,
               json_pack("[s]", shoal_addr_format(shoal_node_addr(q->api->node), a, sizeof(a))));
}

/* ---------------------------------------------------------- http_sd */

/* A meta key as a Prometheus label name part: [a-zA-Z0-9_]. */
static void label_part(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (; *in && n + 1 < outlen; in++)
        out[n++] =
            (*in >= 'a' && *in <= 'z') || (*in >= 'A' && *in <= 'Z') || (*in >= '0' && *in <= '9')
                ? *in
                : '_';
    out[n] = 0;
}

static json_t *sd_group(const struct shoal_instance *in)
{
    char target[SHOAL_HOST_MAX + 16], tags[SHOAL_TAGS_MAX * SHOAL_TAG_MAX + 2];
    size_t o = 0;
    bool v6 = strchr(in->address, ':') != NULL;
    snprintf(target, sizeof(target), v6 ? "[%s]:%u" : "%s:%u", in->address, (unsigned)in->port);
    tags[o++] = ',';
    for (uint32_t i = 0; i < in->n_tags; i++)
        o += (size_t)snprintf(tags + o, sizeof(tags) - o, "%s,", in->tags[i]);
    tags[o < sizeof(tags) ? o : sizeof(tags) - 1] = 0;
    if (in->n_tags == 0)
        tags[0] = 0; /* Consul's form: "" without tags, ",a,b," with */
    json_t *labels =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "__meta_shoal_service", in->service,
                  "__meta_shoal_node", in->owner, "__meta_shoal_tags", tags, "__meta_shoal_status",
                  shoal_health_name(in->health), "__meta_shoal_id", in->id);
    for (uint32_t i = 0; labels && i < in->n_meta; i++) {
        char name[SHOAL_META_KEY_MAX + 24], part[SHOAL_META_KEY_MAX];
        label_part(in->meta[i].key, part, sizeof(part));
        snprintf(name, sizeof(name), "__meta_shoal_meta_%s", part);
        json_object_set_new(labels, name, json_string(in->meta[i].value));
    }
    return json_pack("{s:[s], s:o}", "targets", target, "labels", labels);
}

/* GET /v1/sd/prometheus[?service=NAME][&tag=T]...: one group per passing
 * instance of live owners (every instance with ?all=1). */
static void sd_prometheus(struct cq *q, uint64_t conn_id, const char *arg)
{
    const struct shoal_registry *r = shoal_node_registry(q->api->node);
    json_t *arr = json_array();
    size_t ns = 0;
    struct shoal_service_summary *sv = NULL;
    if (q->service) {
        const char *why = shoal_check_service(q->service);
        if (why) {
            reply_text(q, 400, "service: %s", why);
            json_decref(arr);
            return;
        }
        q->scope = q->service;
    } else {
        ns = shoal_registry_services(r, NULL, 0);
        sv = calloc(ns ? ns : 1, sizeof(*sv));
        ns = sv ? shoal_registry_services(r, sv, ns) : 0;
    }
    for (size_t i = 0; arr && i < (q->service ? 1 : ns); i++) {
        struct shoal_query sq = {.service = q->service ? q->service : sv[i].name,
                                 .tags = (const char *const *)q->tags,
                                 .n_tags = q->n_tags,
                                 .all = q->all};
        size_t n = shoal_registry_query(r, &sq, NULL, 0);
        const struct shoal_instance **in = calloc(n ? n : 1, sizeof(*in));
        n = in ? shoal_registry_query(r, &sq, in, n) : 0;
        for (size_t j = 0; j < n; j++)
            add_filtered(q, arr, sd_group(in[j]));
        free(in);
    }
    free(sv);
    reply_json(q, 200, arr);
}

/* ---------------------------------------------------------- routing */

typedef void (*consul_fn)(struct cq *q, uint64_t conn_id, const char *arg);

struct consul_route {
    const char *path;    /* ending in '/': a prefix, the rest is the argument */
    const char *methods; /* space-separated */
    consul_fn fn;
    bool blocking; /* reads that take ?index= */
};

/* GET is allowed on the agent's write endpoints that Debian's
 * python-consul 0.7.1 calls with GET (service deregister, check
 * pass/warn/fail), as Consul itself did before 1.0. */
static const struct consul_route consul_routes[] = {
    {"/v1/agent/service/register", "PUT POST", agent_register, false},
    {"/v1/agent/service/deregister/", "PUT POST GET", agent_deregister, false},
    {"/v1/agent/services", "GET", agent_services, true},
    {"/v1/agent/service/", "GET", agent_service, true},
    {"/v1/agent/checks", "GET", agent_checks, true},
    {"/v1/agent/check/pass/", "PUT POST GET", agent_check_pass, false},
    {"/v1/agent/check/warn/", "PUT POST GET", agent_check_warn, false},
    {"/v1/agent/check/fail/", "PUT POST GET", agent_check_fail, false},
    {"/v1/agent/check/update/", "PUT POST", agent_check_update, false},
    {"/v1/agent/self", "GET", agent_self, false},
    {"/v1/agent/members", "GET", agent_members, false},
    {"/v1/catalog/services", "GET", catalog_services, true},
    {"/v1/catalog/service/", "GET", catalog_service, true},
    {"/v1/catalog/nodes", "GET", catalog_nodes, true},
    {"/v1/catalog/node/", "GET", catalog_node, true},
    {"/v1/catalog/datacenters", "GET", catalog_datacenters, false},
    {"/v1/health/service/", "GET", health_service, true},
    {"/v1/health/checks/", "GET", health_checks, true},
    {"/v1/health/state/", "GET", health_state, true},
    {"/v1/health/node/", "GET", health_node, true},
    {"/v1/status/leader", "GET", status_leader, false},
    {"/v1/status/peers", "GET", status_peers, false},
    {"/v1/sd/prometheus", "GET", sd_prometheus, true},
};

static bool method_ok(const char *methods, const char *m)
{
    size_t l = strlen(m);
    for (const char *p = methods; *p;) {
        size_t w = strcspn(p, " ");
        if (w == l && strncmp(p, m, l) == 0)
            return true;
        p += w;
        while (*p == ' ')
            p++;
    }
    return false;
}

static void waiter_add(struct cq *q, uint64_t conn_id, uint64_t index);

/* Runs one Consul request; with may_block, a blocking query is deferred. */
static bool consul_run(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                       struct shoal_http_resp *resp, bool may_block)
{
    const struct consul_route *rt = NULL;
    const char *rest = "";
    for (size_t i = 0; i < sizeof(consul_routes) / sizeof(consul_routes[0]) && !rt; i++) {
        const char *p = consul_routes[i].path;
        size_t l = strlen(p);
        if (p[l - 1] == '/') {
            if (strncmp(req->path, p, l) == 0 && req->path[l]) {
                rt = &consul_routes[i];
                rest = req->path + l;
            }
        } else if (strcmp(req->path, p) == 0) {
            rt = &consul_routes[i];
        }
    }
    struct cq q = {.api = api, .req = req, .resp = resp};
    if (!rt) {
        static const char *const ours[] = {
            "/v1/agent/",   "/v1/catalog/", "/v1/health/",     "/v1/status/",
            "/v1/sd/",      "/v1/kv/",      "/v1/session/",    "/v1/event/",
            "/v1/acl/",     "/v1/query",    "/v1/coordinate/", "/v1/operator/",
            "/v1/connect/", "/v1/txn",      "/v1/snapshot",    "/v1/config"};
        for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
            if (strncmp(req->path, ours[i], strlen(ours[i])) == 0) {
                reply_text(&q, 404,
                           "%s is not supported by shoal (docs/consul.md lists the Consul "
                           "endpoints it answers)",
                           req->path);
                return true;
            }
        }
        return false;
    }
    if (!method_ok(rt->methods, req->method)) {
        reply_text(&q, 405, "method %s not allowed", req->method);
        return true;
    }
    char arg[SHOAL_ID_MAX * 3 + 1] = "";
    if (*rest && shoal_http_url_decode(rest, strlen(rest), arg, sizeof(arg)) < 0) {
        reply_text(&q, 400, "the path argument is too long");
        return true;
    }
    if (!cq_parse(&q))
        return true;
    /* The scope a handler reports is decided from the route and the
     * parameters, before running it, so a blocked query watches the same. */
    if (rt->fn == health_service || rt->fn == catalog_service || rt->fn == health_checks)
        q.scope = arg;
    else if (rt->fn == sd_prometheus && q.service)
        q.scope = q.service;
    uint64_t cur = scope_index(api, q.scope);
    if (may_block && rt->blocking && q.has_index && q.index == cur && q.wait_ms > 0 && api->http &&
        api->loop) {
        if (shoal_api_waiting(api) >= SHOAL_API_MAX_WAITERS) {
            reply_text(&q, 503, "too many blocking queries (%d); retry later",
                       SHOAL_API_MAX_WAITERS);
        } else {
            waiter_add(&q, conn_id, cur);
        }
        cq_clear(&q);
        return true;
    }
    rt->fn(&q, conn_id, arg);
    cq_clear(&q);
    return true;
}

bool shoal_consul_handle(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                         struct shoal_http_resp *resp)
{
    return consul_run(api, conn_id, req, resp, true);
}

/* ---------------------------------------------------------- blocking */

static void waiter_unlink(struct consul_waiter *w)
{
    struct shoal_consul *cs = w->api->consul;
    if (w->prev)
        w->prev->next = w->next;
    else
        cs->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    cs->n--;
    ev_timer_stop(w->api->loop, &w->timer);
}

static void waiter_free(struct consul_waiter *w)
{
    free(w->method);
    free(w->scope);
    free(w);
}

/* Runs a detached waiter's request again, unblocked, and answers it. */
static void waiter_answer(struct consul_waiter *w)
{
    struct shoal_http_req req = {
        .method = w->method, .path = w->path, .query = w->query, .body = "", .body_len = 0};
    struct shoal_http_resp resp;
    memset(&resp, 0, sizeof(resp));
    (void)consul_run(w->api, w->conn, &req, &resp, false);
    if (!shoal_http_reply_headers(w->api->http, w->conn, resp.status ? resp.status : 200,
                                  resp.content_type, resp.headers, resp.body))
        shoal_log_debug("consul", "blocking query on connection %llu: the client went away",
                        (unsigned long long)w->conn);
    waiter_free(w);
}

static void waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct consul_waiter *w = t->data;
    waiter_unlink(w);
    waiter_answer(w);
}

static void waiter_add(struct cq *q, uint64_t conn_id, uint64_t index)
{
    struct shoal_api *api = q->api;
    size_t lm = strlen(q->req->method) + 1, lp = strlen(q->req->path) + 1;
    size_t lq = strlen(q->req->query) + 1;
    struct consul_waiter *w = calloc(1, sizeof(*w));
    if (!api->consul)
        api->consul = calloc(1, sizeof(*api->consul));
    if (!w || !api->consul || !(w->method = malloc(lm + lp + lq)) ||
        (q->scope && !(w->scope = strdup(q->scope)))) {
        if (w)
            waiter_free(w);
        reply_text(q, 500, "out of memory");
        return;
    }
    memcpy(w->method, q->req->method, lm);
    w->path = w->method + lm;
    memcpy(w->path, q->req->path, lp);
    w->query = w->path + lp;
    memcpy(w->query, q->req->query, lq);
    w->api = api;
    w->conn = conn_id;
    w->index = index;
    ev_timer_init(&w->timer, waiter_timeout, (double)q->wait_ms / 1000.0, 0.);
    w->timer.data = w;
    ev_timer_start(api->loop, &w->timer);
    w->next = api->consul->head;
    if (w->next)
        w->next->prev = w;
    api->consul->head = w;
    api->consul->n++;
    q->resp->deferred = true;
}

void shoal_consul_registry_changed(struct shoal_api *api)
{
    struct consul_waiter *ready = NULL;
    if (!api->consul || !api->consul->n)
        return;
    /* Detach first: answering may run handlers that add waiters. */
    for (struct consul_waiter *w = api->consul->head, *next; w; w = next) {
        next = w->next;
        if (scope_index(api, w->scope) == w->index)
            continue;
        waiter_unlink(w);
        w->next = ready;
        ready = w;
    }
    while (ready) {
        struct consul_waiter *w = ready;
        ready = w->next;
        waiter_answer(w);
    }
}

size_t shoal_consul_waiting(const struct shoal_api *api)
{
    return api->consul ? api->consul->n : 0;
}

void shoal_consul_close(struct shoal_api *api)
{
    if (!api->consul)
        return;
    while (api->consul->head) {
        struct consul_waiter *w = api->consul->head;
        waiter_unlink(w);
        waiter_free(w);
    }
    free(api->consul);
    api->consul = NULL;
}

/* ui.c -- the web UI's routes (implements io/ui.h; the page is src/io/ui/).
 *
 * Static files: the embedded table of io/ui_assets.h, answered with their
 * content type, an ETag (304 on a matching If-None-Match), a cache policy
 * (index.html revalidates every time; the hashed script and style are
 * immutable) and headers that keep a browser strict: nosniff and a content
 * security policy that allows only this origin's script and style, so even
 * a bug in the page's escaping could not run injected script.
 *
 * GET /v1/cluster is the page's one blocking query for the overview and the
 * members: its index is (member changes seen) + (registry index), both only
 * growing. Changes are noted from inside core's callbacks, so waiters are
 * answered from a short timer on the loop instead: once per burst, never
 * re-entering core.
 */
#include "io/ui.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "core/swim.h"
#include "io/api.h"
#include "io/log.h"
#include "io/node.h"
#include "io/ui_assets.h"

#define UI_KICK_S 0.02 /* coalesce a burst of changes into one answer */

/* Sent with every UI file. 'self' only: no inline script or style, no
 * other origin, no framing (the page shows untrusted metadata). */
#define UI_SECURITY_HEADERS                                                                        \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                    \
    "frame-ancestors 'none'\r\n"

struct ui_waiter {
    struct shoal_api *api;
    struct ui_waiter *prev, *next;
    ev_timer timer;
    uint64_t conn;
    uint64_t index;
};

struct shoal_ui {
    struct ui_waiter *head;
    size_t n;
    uint64_t member_changes;
    ev_timer kick; /* answers waiters a moment after a change */
};

/* ------------------------------------------------------------ replies */

static void reply_text(struct shoal_http_resp *resp, int status, const char *content_type,
                       const char *text)
{
    resp->status = status;
    resp->content_type = content_type;
    resp->body = strdup(text);
    if (!resp->body)
        resp->status = 500; /* the server sends an empty body */
}

static void reply_error(struct shoal_http_resp *resp, int status, const char *msg)
{
    shoal_api_reply_json(resp, status, json_pack("{s:s}", "error", msg));
}

/* ------------------------------------------------------- static files */

/* Does an If-None-Match value ("*", or a list of possibly weak tags) name
 * etag? (RFC 9110 13.1.2: weak comparison.) */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t n = strcspn(p, ",");
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == elen && memcmp(p, etag, elen) == 0)
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

/* The ETag, the cache policy and the security headers of asset a. */
static void asset_headers(const struct shoal_ui_asset *a, struct shoal_http_resp *resp)
{
    _Static_assert(sizeof(UI_SECURITY_HEADERS) + 128 < SHOAL_HTTP_EXTRA_HEADERS,
                   "the UI's headers fit io/http.h's extra header space");
    snprintf(resp->headers, sizeof(resp->headers), "ETag: %s\r\nCache-Control: %s\r\n%s", a->etag,
             a->immutable ? "public, max-age=31536000, immutable" : "no-cache",
             UI_SECURITY_HEADERS);
}

static void serve_asset(const struct shoal_http_req *req, const char *name,
                        struct shoal_http_resp *resp)
{
    for (size_t i = 0; i < shoal_ui_n_assets; i++) {
        const struct shoal_ui_asset *a = &shoal_ui_assets[i];
        if (strcmp(a->name, name) != 0)
            continue;
        asset_headers(a, resp);
        if (req->if_none_match && etag_matches(req->if_none_match, a->etag)) {
            resp->status = 304;
            return;
        }
        resp->status = 200;
        resp->content_type = a->content_type;
        resp->body = malloc(a->len + 1);
        if (!resp->body) {
            resp->headers[0] = 0;
            reply_error(resp, 500, "out of memory");
            return;
        }
        memcpy(resp->body, a->data, a->len + 1); /* the table ends each file with a NUL */
        return;
    }
    /* an old page asking for the script of an older build lands here too */
    snprintf(resp->headers, sizeof(resp->headers), "%s", UI_SECURITY_HEADERS);
    reply_text(resp, 404, "text/plain; charset=utf-8", "no such file in the UI\n");
}

/* ---------------------------------------------------- GET /v1/cluster */

static struct shoal_ui *ui_state(struct shoal_api *api);

static uint64_t cluster_index(struct shoal_api *api)
{
    struct shoal_ui *ui = ui_state(api);
    return (ui ? ui->member_changes : 0) +
           shoal_registry_index(shoal_node_registry(api->node), NULL);
}

static json_t *members_json(struct shoal_api *api)
{
    struct shoal_swim *s = shoal_node_swim(api->node);
    size_t n = shoal_swim_member_count(s);
    int64_t now = shoal_node_clock_ms();
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        struct shoal_member_info m;
        char a[SHOAL_ADDR_STRLEN];
        if (!shoal_swim_member_at(s, i, &m))
            continue;
        int64_t ago = now - m.since_ms;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "name", m.name,
                                             "addr", shoal_addr_format(&m.addr, a, sizeof(a)),
                                             "status", shoal_status_name(m.status), "incarnation",
                                             (json_int_t)m.incarnation, "generation",
                                             (json_int_t)m.generation, "changed_ms_ago",
                                             (json_int_t)(ago > 0 ? ago : 0)));
    }
    return arr;
}

/* Per service: instances by health (every owner), and `served`, what a
 * default query answers (passing instances of live owners). */
static json_t *services_json(struct shoal_api *api)
{
    const struct shoal_registry *r = shoal_node_registry(api->node);
    size_t n = shoal_registry_services(r, NULL, 0), most = 0;
    struct shoal_service_summary *sv = calloc(n ? n : 1, sizeof(*sv));
    const struct shoal_instance **v = NULL;
    json_t *arr = json_array();
    if (!sv || !arr)
        goto fail;
    n = shoal_registry_services(r, sv, n);
    for (size_t i = 0; i < n; i++)
        most = sv[i].total > most ? sv[i].total : most;
    if (!(v = calloc(most ? most : 1, sizeof(*v))))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        struct shoal_query q = {.service = sv[i].name, .all = true};
        size_t by[SHOAL_HEALTH_COUNT] = {0}, k = shoal_registry_query(r, &q, v, most);
        for (size_t j = 0; j < k && j < most; j++)
            if (v[j]->health < SHOAL_HEALTH_COUNT)
                by[v[j]->health]++;
        json_array_append_new(
            arr, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "name", sv[i].name, "passing",
                           (json_int_t)by[SHOAL_PASSING], "warning", (json_int_t)by[SHOAL_WARNING],
                           "critical", (json_int_t)by[SHOAL_CRITICAL], "total",
                           (json_int_t)sv[i].total, "served", (json_int_t)sv[i].passing));
    }
    free(v);
    free(sv);
    return arr;
fail:
    free(v);
    free(sv);
    json_decref(arr);
    return NULL;
}

static json_t *cluster_json(struct shoal_api *api)
{
    json_t *m = members_json(api), *s = services_json(api);
    if (!m || !s) {
        json_decref(m);
        json_decref(s);
        return NULL;
    }
    return json_pack("{s:I, s:s, s:o, s:o}", "index", (json_int_t)cluster_index(api), "self",
                     shoal_swim_config(shoal_node_swim(api->node))->name, "members", m, "services",
                     s);
}

static void waiter_unlink(struct shoal_ui *ui, struct shoal_api *api, struct ui_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        ui->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    ui->n--;
    ev_timer_stop(api->loop, &w->timer);
}

/* Answers a detached waiter with the state now and frees it. */
static void waiter_answer(struct ui_waiter *w)
{
    /* nothing is built for a client that went away (a page closed) */
    json_t *v = shoal_http_awaiting(w->api->http, w->conn) ? cluster_json(w->api) : NULL;
    char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    int status = body ? 200 : 500;
    if (!body)
        body = strdup("{\"error\":\"out of memory\"}");
    if (body && !shoal_http_reply(w->api->http, w->conn, status, "application/json", body))
        shoal_log_debug("ui", "blocking query on connection %llu: the client went away",
                        (unsigned long long)w->conn);
    free(w);
}

static void waiter_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct ui_waiter *w = t->data;
    waiter_unlink(w->api->ui, w->api, w);
    waiter_answer(w);
}

static void ui_kick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct shoal_api *api = t->data;
    struct shoal_ui *ui = api->ui;
    struct ui_waiter *ready = NULL;
    uint64_t index = cluster_index(api);
    /* Detach first: an answer may run the handler again (a pipelined
     * request) and add waiters. */
    for (struct ui_waiter *w = ui->head, *next; w; w = next) {
        next = w->next;
        if (w->index == index)
            continue;
        waiter_unlink(ui, api, w);
        w->next = ready;
        ready = w;
    }
    while (ready) {
        struct ui_waiter *w = ready;
        ready = w->next;
        waiter_answer(w);
    }
}

static struct shoal_ui *ui_state(struct shoal_api *api)
{
    if (!api->ui && api->loop && (api->ui = calloc(1, sizeof(*api->ui)))) {
        ev_timer_init(&api->ui->kick, ui_kick, UI_KICK_S, 0.);
        api->ui->kick.data = api;
    }
    return api->ui;
}

void shoal_ui_notify(struct shoal_api *api, bool members)
{
    struct shoal_ui *ui = ui_state(api);
    if (!ui)
        return;
    if (members)
        ui->member_changes++;
    if (ui->n && !ev_is_active(&ui->kick))
        ev_timer_start(api->loop, &ui->kick);
}

void shoal_ui_close(struct shoal_api *api)
{
    struct shoal_ui *ui = api->ui;
    if (!ui)
        return;
    while (ui->head) {
        struct ui_waiter *w = ui->head;
        waiter_unlink(ui, api, w);
        free(w);
    }
    ev_timer_stop(api->loop, &ui->kick);
    free(ui);
    api->ui = NULL;
}

/* index=N (a whole number) and wait=D (a duration up to 10 m), nothing else. */
static bool parse_cluster_query(const char *qs, bool *has_index, uint64_t *index, uint32_t *wait_ms,
                                struct shoal_http_resp *resp)
{
    char v[64];
    int n_index = 0, n_wait = 0;
    *has_index = false;
    *wait_ms = SHOAL_API_WAIT_DEFAULT_MS;
    for (const char *p = qs; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        bool is_index = klen == 5 && memcmp(p, "index", 5) == 0;
        bool is_wait = klen == 4 && memcmp(p, "wait", 4) == 0;
        if (len && !is_index && !is_wait) {
            reply_error(resp, 400, "unknown query parameter (expected index, wait)");
            return false;
        }
        n_index += is_index;
        n_wait += is_wait;
        p += len + (p[len] == '&');
    }
    if (n_index > 1 || n_wait > 1) {
        reply_error(resp, 400, "\"index\" and \"wait\" may be given once each");
        return false;
    }
    if (shoal_http_query_get(qs, "index", v, sizeof(v))) {
        size_t digits = strspn(v, "0123456789");
        char *end;
        errno = 0;
        unsigned long long iv = strtoull(v, &end, 10);
        if (digits == 0 || digits > 20 || v[digits] || errno) {
            reply_error(resp, 400, "\"index\" must be a whole number");
            return false;
        }
        *index = iv;
        *has_index = true;
    }
    if (shoal_http_query_get(qs, "wait", v, sizeof(v)) &&
        (shoal_duration_parse(v, wait_ms) != 0 || *wait_ms > SHOAL_API_WAIT_MAX_MS)) {
        reply_error(resp, 400, "\"wait\" must be a duration up to 10m (e.g. 30s)");
        return false;
    }
    return true;
}

static void api_cluster(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                        struct shoal_http_resp *resp)
{
    bool has_index;
    uint64_t index = 0;
    uint32_t wait_ms;
    if (!parse_cluster_query(req->query, &has_index, &index, &wait_ms, resp))
        return;
    struct shoal_ui *ui = ui_state(api);
    if (!has_index || wait_ms == 0 || !ui || !api->http || index != cluster_index(api)) {
        json_t *v = cluster_json(api);
        if (!v)
            reply_error(resp, 500, "out of memory");
        else
            shoal_api_reply_json(resp, 200, v);
        return;
    }
    if (ui->n >= SHOAL_UI_MAX_WAITERS) {
        reply_error(resp, 503, "too many blocking queries; retry later");
        return;
    }
    struct ui_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        reply_error(resp, 500, "out of memory");
        return;
    }
    w->api = api;
    w->conn = conn_id;
    w->index = index;
    ev_timer_init(&w->timer, waiter_timeout, wait_ms / 1000.0, 0.);
    w->timer.data = w;
    ev_timer_start(api->loop, &w->timer);
    w->next = ui->head;
    if (w->next)
        w->next->prev = w;
    ui->head = w;
    ui->n++;
    resp->deferred = true;
}

/* ------------------------------------------------------------ routing */

bool shoal_ui_handle(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                     struct shoal_http_resp *resp)
{
    bool ui_path = strcmp(req->path, "/ui") == 0 || strncmp(req->path, "/ui/", 4) == 0;
    if (!ui_path && strcmp(req->path, "/v1/cluster") != 0)
        return false;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        reply_error(resp, 405, "method not allowed; use GET");
        return true;
    }
    if (!ui_path) {
        api_cluster(api, conn_id, req, resp);
    } else if (strcmp(req->path, "/ui") == 0) {
        snprintf(resp->headers, sizeof(resp->headers), "Location: /ui/\r\n");
        reply_text(resp, 301, "text/plain; charset=utf-8", "moved to /ui/\n");
    } else {
        const char *name = req->path + 4;
        serve_asset(req, *name ? name : "index.html", resp);
    }
    return true;
}

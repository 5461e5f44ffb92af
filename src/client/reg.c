/* reg.c -- the client library's calls that are one request each: list a
 * service's instances with everything the agent knows of them, and
 * register, deregister and heartbeat the caller's own instances with the
 * local agent (see include/shoal/client.h).
 *
 * Each call is one HTTP request to the agent; a failure leaves a message
 * naming the cause in shoal_client_last_error(). Nothing is retried here:
 * a registration is idempotent, so the caller decides.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/http.h"
#include "client/internal.h"
#include "shoal/client.h"

#define WHY_MAX 512

/* One request; returns 0 with the parsed JSON object in *doc (the caller
 * decrefs), or a SHOAL_E* code with the message set. */
static int call(struct shoal_client *c, const char *method, const char *path, const char *body,
                const char *what, json_t **doc)
{
    const char *agent;
    const struct shoal_addr *addr = shoal_client__agent(c, &agent);
    struct shoal_client_http_resp r;
    char why[WHY_MAX];
    int sys_err = 0;
    *doc = NULL;
    int rc = shoal_client_http_request(addr, method, path, body,
                                       (int)shoal_client__timeout_ms(c),
                                       shoal_client__wake_fd(c), &r, &sys_err);
    if (rc) {
        shoal_client__count(c, true);
        snprintf(why, sizeof(why), "%s: cannot reach the agent at %s: %s", what, agent,
                 sys_err ? strerror(sys_err) : shoal_strerror(rc));
        shoal_client__error(c, why);
        return rc == SHOAL_ENOMEM ? rc : SHOAL_ECONN;
    }
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    if (r.status != 200) {
        const char *msg = json_string_value(json_object_get(j, "error"));
        snprintf(why, sizeof(why), "%s: the agent answered %d: %s", what, r.status,
                 msg ? msg : "(no message)");
        shoal_client__count(c, true);
        shoal_client__error(c, why);
        json_decref(j);
        free(r.body);
        return r.status == 404   ? SHOAL_ENOENT
               : r.status == 413 ? SHOAL_ETOOBIG
               : r.status >= 500 ? SHOAL_EIO
                                 : SHOAL_EINVAL;
    }
    free(r.body);
    if (!json_is_object(j)) {
        snprintf(why, sizeof(why), "%s: the agent's answer is not a JSON object", what);
        shoal_client__count(c, true);
        shoal_client__error(c, why);
        json_decref(j);
        return SHOAL_EDECODE;
    }
    shoal_client__count(c, false);
    *doc = j;
    return 0;
}

/* Percent-encodes s (a path segment or a query value) onto out. */
static void encode(char *out, size_t cap, const char *s)
{
    size_t len = strlen(out);
    for (const unsigned char *p = (const unsigned char *)s; *p && len + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~' || *p == ':')
            out[len++] = (char)*p;
        else
            len += (size_t)snprintf(out + len, cap - len, "%%%02X", *p);
    }
    out[len] = '\0';
}

/* ---- list ---- */

struct list_priv {
    json_t *doc; /* the strings point into it */
};

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

int shoal_client_list(struct shoal_client *c, const char *service, int all,
                      struct shoal_client_instances **out)
{
    char path[512] = "/v1/instances/", what[128];
    json_t *doc;
    if (!c || !service || !*service || strlen(service) > 63 || !out)
        return SHOAL_EINVAL;
    *out = NULL;
    encode(path, sizeof(path), service);
    if (all)
        strcat(path, "?all=1");
    snprintf(what, sizeof(what), "list of '%s'", service);
    int rc = call(c, "GET", path, NULL, what, &doc);
    if (rc)
        return rc;
    json_t *arr = json_object_get(doc, "instances");
    json_t *idx = json_object_get(doc, "index");
    if (!json_is_array(arr) || !json_is_integer(idx)) {
        shoal_client__error(c, "list: the agent's answer has no 'instances' or 'index'");
        json_decref(doc);
        return SHOAL_EDECODE;
    }
    size_t n = json_array_size(arr);
    struct shoal_client_instances *l = calloc(1, sizeof(*l));
    struct list_priv *p = calloc(1, sizeof(*p));
    if (!l || !p || !(l->v = calloc(n ? n : 1, sizeof(*l->v)))) {
        free(l ? l->v : NULL);
        free(l);
        free(p);
        json_decref(doc);
        return SHOAL_ENOMEM;
    }
    p->doc = doc;
    l->priv_ = p;
    l->index = (uint64_t)json_integer_value(idx);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(arr, i);
        struct shoal_client_instance *e = &l->v[l->n];
        json_t *port = json_object_get(it, "port"), *tags = json_object_get(it, "tags");
        json_t *meta = json_object_get(it, "meta");
        e->id = json_string_value(json_object_get(it, "id"));
        e->service = json_string_value(json_object_get(it, "service"));
        e->address = json_string_value(json_object_get(it, "address"));
        e->owner = json_string_value(json_object_get(it, "owner"));
        if (!json_is_object(it) || !e->id || !e->service || !e->address || !e->owner ||
            !json_is_integer(port) || json_integer_value(port) < 1 ||
            json_integer_value(port) > 65535 || (tags && !json_is_array(tags)) ||
            (meta && !json_is_object(meta))) {
            char why[128];
            snprintf(why, sizeof(why), "list: instance %zu of the agent's answer is malformed", i);
            shoal_client__error(c, why);
            shoal_client_instances_free(l);
            return SHOAL_EDECODE;
        }
        e->port = (uint16_t)json_integer_value(port);
        e->status = str_or(it, "status", "unknown");
        e->owner_status = str_or(it, "owner_status", "unknown");
        e->ttl_ms = (uint32_t)json_integer_value(json_object_get(it, "ttl_ms"));
        e->version = (uint64_t)json_integer_value(json_object_get(it, "version"));
        size_t nt = json_array_size(tags), nm = json_object_size(meta);
        const char **tv = calloc(nt + 1, sizeof(*tv));
        struct shoal_client_meta *mv = calloc(nm + 1, sizeof(*mv));
        e->tags = tv;
        e->meta = mv;
        l->n++; /* counted now, so _free releases tv and mv */
        if (!tv || !mv) {
            shoal_client_instances_free(l);
            return SHOAL_ENOMEM;
        }
        size_t k;
        json_t *t;
        json_array_foreach(tags, k, t)
            if (json_is_string(t))
                tv[e->ntags++] = json_string_value(t);
        const char *key;
        json_object_foreach(meta, key, t)
            if (json_is_string(t))
                mv[e->nmeta++] = (struct shoal_client_meta){key, json_string_value(t)};
    }
    *out = l;
    return 0;
}

void shoal_client_instances_free(struct shoal_client_instances *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free((void *)l->v[i].tags);
        free((void *)l->v[i].meta);
    }
    free(l->v);
    struct list_priv *p = l->priv_;
    if (p)
        json_decref(p->doc);
    free(p);
    free(l);
}

/* ---- register, deregister, heartbeat ---- */

int shoal_client_register(struct shoal_client *c, const struct shoal_client_registration *r)
{
    if (!c || !r || !r->service || !r->id || !r->address || !r->port || (r->ntags && !r->tags) ||
        (r->nmeta && !r->meta)) {
        if (c)
            shoal_client__error(c, "register: service, id, address and port are required");
        return SHOAL_EINVAL;
    }
    json_t *tags = json_array(), *meta = json_object();
    for (size_t i = 0; tags && i < r->ntags; i++)
        json_array_append_new(tags, json_string(r->tags[i] ? r->tags[i] : ""));
    for (size_t i = 0; meta && i < r->nmeta; i++)
        if (r->meta[i].key)
            json_object_set_new(meta, r->meta[i].key, json_string(r->meta[i].value ? r->meta[i].value : ""));
    json_t *body = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o}", "service", r->service, "id", r->id,
                             "address", r->address, "port", (int)r->port, "tags", tags, "meta",
                             meta);
    if (body && r->ttl_ms)
        json_object_set_new(body, "ttl", json_integer((json_int_t)r->ttl_ms));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        /* json_pack fails on a string that is not UTF-8: the agent would too */
        shoal_client__error(c, "register: a field is not valid UTF-8 text");
        return SHOAL_EINVAL;
    }
    char what[200];
    snprintf(what, sizeof(what), "register of '%s'", r->id);
    json_t *doc;
    int rc = call(c, "POST", "/v1/register", text, what, &doc);
    free(text);
    json_decref(doc);
    return rc;
}

static int by_id(struct shoal_client *c, const char *verb, const char *id)
{
    char path[512], what[200];
    if (!c || !id || !*id || strlen(id) > 127) {
        if (c)
            shoal_client__error(c, "an instance id is 1..127 characters");
        return SHOAL_EINVAL;
    }
    snprintf(path, sizeof(path), "/v1/%s/", verb);
    encode(path, sizeof(path), id);
    snprintf(what, sizeof(what), "%s of '%s'", verb, id);
    json_t *doc;
    int rc = call(c, "POST", path, NULL, what, &doc);
    json_decref(doc);
    return rc;
}

int shoal_client_deregister(struct shoal_client *c, const char *id)
{
    return by_id(c, "deregister", id);
}

int shoal_client_heartbeat(struct shoal_client *c, const char *id)
{
    return by_id(c, "heartbeat", id);
}

/* consul_json.c -- Consul's JSON forms over shoal's registry
 * (io/consul_json.h): lenient field lookup, Go durations, the service
 * definition -> native register body translation, check ids, filters.
 *
 * The translation builds the native body that POST /v1/register takes, so
 * a Consul registration passes through exactly the native validation
 * (io/checkspec.c, shoal_instance_validate) and register path.
 */
#include "io/consul_json.h"
#include "io/checkspec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ lookup */

/* a and b equal ignoring case and underscores */
static bool loose_eq(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_')
            a++;
        while (*b == '_')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
        a++;
        b++;
    }
}

json_t *shoal_consul_get(const json_t *obj, const char *name)
{
    const char *key;
    json_t *v;
    if (!json_is_object(obj))
        return NULL;
    if ((v = json_object_get(obj, name)) != NULL)
        return v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (loose_eq(key, name))
            return v;
    }
    return NULL;
}

/* ------------------------------------------------------------ durations */

int shoal_consul_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    double total_ns = 0;
    if (!s || !*s)
        return -1;
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    while (*s) {
        char *end;
        if (!isdigit((unsigned char)*s) && *s != '.')
            return -1;
        double v = strtod(s, &end);
        if (end == s || v < 0)
            return -1;
        s = end;
        size_t best = 0;
        int which = -1;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, l) == 0 && l > best) {
                best = l;
                which = (int)i;
            }
        }
        if (which < 0)
            return -1; /* Go requires a unit on every part */
        total_ns += v * units[which].ns;
        s += best;
        if (total_ns > 9.2e18)
            return -1;
    }
    double m = total_ns / 1e6;
    uint64_t whole = (uint64_t)m;
    *ms = whole + ((double)whole < m ? 1 : 0);
    return 0;
}

/* ------------------------------------------------------------ translation */

/* A duration member as native milliseconds; 0 when absent. */
static int member_duration(const json_t *o, const char *key, const char *where, uint64_t *ms,
                           bool *present, char *err, size_t errlen)
{
    json_t *v = shoal_consul_get(o, key);
    *ms = 0;
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        /* Consul's API takes a bare number as nanoseconds */
        *ms = ((uint64_t)json_integer_value(v) + 999999) / 1000000;
        return 0;
    }
    if (json_is_string(v) && shoal_consul_duration(json_string_value(v), ms) == 0)
        return 0;
    snprintf(err, errlen, "%s%s must be a duration such as \"10s\" or \"1m30s\"", where, key);
    return -1;
}

static const char *const check_unsupported[] = {
    "Args",       "ScriptArgs", "Script",        "DockerContainerID", "Shell",           "GRPC",
    "GRPCUseTLS", "H2PING",     "H2PingUseTLS",  "AliasNode",         "AliasService",    "UDP",
    "OSService",  "Body",       "TLSServerName", "OutputMaxSize",     "DisableRedirects"};

static const char *const check_known[] = {"CheckID",
                                          "ID",
                                          "Name",
                                          "Notes",
                                          "Status",
                                          "HTTP",
                                          "Method",
                                          "Header",
                                          "TCP",
                                          "TTL",
                                          "Interval",
                                          "Timeout",
                                          "DeregisterCriticalServiceAfter",
                                          "SuccessBeforePassing",
                                          "FailuresBeforeCritical",
                                          "FailuresBeforeWarning",
                                          "TLSSkipVerify",
                                          "ServiceID",
                                          "Namespace",
                                          "Partition",
                                          "Type",
                                          "Definition"};

static bool in_list(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (loose_eq(key, list[i]))
            return true;
    return false;
}

/* One Consul check object into the native checks array / TTL. */
static int one_check(const json_t *c, const char *where, json_t *checks, uint64_t *ttl_ms,
                     uint64_t *dereg_ms, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    uint64_t ms;
    bool present;

    if (!json_is_object(c)) {
        snprintf(err, errlen, "%s must be an object", where);
        return -1;
    }
    json_object_foreach((json_t *)c, key, v)
    {
        char k[40];
        snprintf(k, sizeof(k), "%.32s", key);
        if (in_list(key, check_unsupported,
                    sizeof(check_unsupported) / sizeof(check_unsupported[0]))) {
            if (json_is_null(v) || (json_is_string(v) && !*json_string_value(v)) ||
                (json_is_array(v) && !json_array_size(v)) || json_is_false(v) ||
                (json_is_integer(v) && !json_integer_value(v)))
                continue; /* present but empty, as clients that fill every field send it */
            snprintf(err, errlen,
                     "%s.%s: shoal runs HTTP, TCP and TTL checks only (no scripts, gRPC, "
                     "aliases, UDP or request bodies)",
                     where, k);
            return -1;
        }
        if (!in_list(key, check_known, sizeof(check_known) / sizeof(check_known[0]))) {
            snprintf(err, errlen, "%s: unknown field \"%s\"", where, k);
            return -1;
        }
    }
    json_t *http = shoal_consul_get(c, "HTTP"), *tcp = shoal_consul_get(c, "TCP");
    json_t *ttl = shoal_consul_get(c, "TTL");
    if (http && json_is_null(http))
        http = NULL;
    if (tcp && json_is_null(tcp))
        tcp = NULL;
    if (ttl && (json_is_null(ttl) || (json_is_string(ttl) && !*json_string_value(ttl))))
        ttl = NULL;
    if (!!http + !!tcp + !!ttl != 1) {
        snprintf(err, errlen, "%s needs exactly one of HTTP, TCP or TTL", where);
        return -1;
    }
    json_t *method = shoal_consul_get(c, "Method");
    if (method && !json_is_null(method) &&
        (!json_is_string(method) ||
         (*json_string_value(method) && strcasecmp(json_string_value(method), "GET") != 0))) {
        snprintf(err, errlen, "%s.Method: shoal's HTTP checks use GET only", where);
        return -1;
    }
    json_t *hdr = shoal_consul_get(c, "Header");
    if (hdr && !json_is_null(hdr) && (!json_is_object(hdr) || json_object_size(hdr))) {
        snprintf(err, errlen, "%s.Header: shoal's HTTP checks send no custom headers", where);
        return -1;
    }
    json_t *fbw = shoal_consul_get(c, "FailuresBeforeWarning");
    if (fbw && !json_is_null(fbw) && !(json_is_integer(fbw) && json_integer_value(fbw) == 0)) {
        snprintf(err, errlen,
                 "%s.FailuresBeforeWarning is not supported (use "
                 "FailuresBeforeCritical)",
                 where);
        return -1;
    }
    if (member_duration(c, "DeregisterCriticalServiceAfter", "", &ms, &present, err, errlen))
        return -1;
    if (present && ms && (!*dereg_ms || ms < *dereg_ms))
        *dereg_ms = ms; /* shoal has one per instance: the shortest wins */
    if (ttl) {
        if (*ttl_ms) {
            snprintf(err, errlen, "%s: an instance has at most one TTL check", where);
            return -1;
        }
        if (member_duration(c, "TTL", "", ttl_ms, &present, err, errlen))
            return -1;
        if (!*ttl_ms) {
            snprintf(err, errlen, "%s.TTL must be longer than 0", where);
            return -1;
        }
        return 0;
    }
    json_t *n = json_object();
    if (!n || json_array_append_new(checks, n) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_t *target = http ? http : tcp;
    if (!json_is_string(target)) {
        snprintf(err, errlen, "%s.%s must be a string", where, http ? "HTTP" : "TCP");
        return -1;
    }
    json_object_set(n, http ? "http" : "tcp", target);
    if (member_duration(c, "Interval", "", &ms, &present, err, errlen))
        return -1;
    if (!present || !ms) {
        snprintf(err, errlen, "%s.Interval is required for an %s check", where,
                 http ? "HTTP" : "TCP");
        return -1;
    }
    json_object_set_new(n, "interval",
                        json_integer((json_int_t)(ms > UINT32_MAX ? UINT32_MAX : ms)));
    if (member_duration(c, "Timeout", "", &ms, &present, err, errlen))
        return -1;
    if (present && ms)
        json_object_set_new(n, "timeout",
                            json_integer((json_int_t)(ms > UINT32_MAX ? UINT32_MAX : ms)));
    static const char *const damp[][2] = {{"SuccessBeforePassing", "rise"},
                                          {"FailuresBeforeCritical", "fall"}};
    for (int i = 0; i < 2; i++) {
        json_t *d = shoal_consul_get(c, damp[i][0]);
        if (!d || json_is_null(d) || (json_is_integer(d) && json_integer_value(d) == 0))
            continue; /* Consul's 0: the first result counts */
        if (!json_is_integer(d)) {
            snprintf(err, errlen, "%s.%s must be a whole number", where, damp[i][0]);
            return -1;
        }
        json_object_set(n, damp[i][1], d); /* the native rules check the range */
    }
    return 0;
}

static const char *const service_known[] = {"ID",
                                            "Name",
                                            "Tags",
                                            "Address",
                                            "Port",
                                            "Meta",
                                            "Weights",
                                            "EnableTagOverride",
                                            "Check",
                                            "Checks",
                                            "TaggedAddresses",
                                            "Kind",
                                            "Namespace",
                                            "Partition",
                                            "SocketPath",
                                            "Token",
                                            "Locality"};
static const char *const service_unsupported[] = {"Proxy", "Connect"};

int shoal_consul_to_native(const json_t *svc, const char *default_address, json_t **out, char *err,
                           size_t errlen)
{
    const char *key;
    json_t *v, *body = NULL, *checks = NULL;
    uint64_t ttl_ms = 0, dereg_ms = 0;

    *out = NULL;
    if (!json_is_object(svc)) {
        snprintf(err, errlen, "the service definition must be a JSON object");
        return -1;
    }
    json_object_foreach((json_t *)svc, key, v)
    {
        char k[40];
        snprintf(k, sizeof(k), "%.32s", key);
        if (in_list(key, service_unsupported, 2) && !json_is_null(v) &&
            !(json_is_object(v) && !json_object_size(v))) {
            snprintf(err, errlen, "%s: Connect and proxies are not supported by shoal", k);
            return -1;
        }
        if (!in_list(key, service_unsupported, 2) &&
            !in_list(key, service_known, sizeof(service_known) / sizeof(service_known[0]))) {
            snprintf(err, errlen, "unknown field \"%s\" in the service definition", k);
            return -1;
        }
    }
    json_t *name = shoal_consul_get(svc, "Name"), *id = shoal_consul_get(svc, "ID");
    json_t *addr = shoal_consul_get(svc, "Address"), *port = shoal_consul_get(svc, "Port");
    json_t *kind = shoal_consul_get(svc, "Kind");
    if (!json_is_string(name) || !*json_string_value(name)) {
        snprintf(err, errlen, "Missing service name");
        return -1;
    }
    if (kind && !json_is_null(kind) && !(json_is_string(kind) && !*json_string_value(kind))) {
        snprintf(err, errlen, "Kind: only typical services are supported (no Connect kinds)");
        return -1;
    }
    if (id && !json_is_null(id) && !json_is_string(id)) {
        snprintf(err, errlen, "ID must be a string");
        return -1;
    }
    if (addr && !json_is_null(addr) && !json_is_string(addr)) {
        snprintf(err, errlen, "Address must be a string");
        return -1;
    }
    if (!port || json_is_null(port) || (json_is_integer(port) && json_integer_value(port) == 0)) {
        snprintf(err, errlen, "Port is required: shoal serves every instance as ADDRESS:PORT");
        return -1;
    }
    if (!json_is_integer(port)) {
        snprintf(err, errlen, "Port must be a whole number 1..65535");
        return -1;
    }
    const char *ids = id && json_is_string(id) && *json_string_value(id) ? json_string_value(id)
                                                                         : json_string_value(name);
    const char *as = addr && json_is_string(addr) && *json_string_value(addr)
                         ? json_string_value(addr)
                         : default_address;
    body = json_pack("{s:s, s:s, s:s, s:O}", "id", ids, "service", json_string_value(name),
                     "address", as ? as : "", "port", port);
    checks = json_array();
    if (!body || !checks) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    json_t *tags = shoal_consul_get(svc, "Tags");
    if (tags && !json_is_null(tags))
        json_object_set(body, "tags", tags); /* native rules check the types */
    json_t *meta = shoal_consul_get(svc, "Meta");
    json_t *weights = shoal_consul_get(svc, "Weights");
    json_t *nmeta = meta && !json_is_null(meta) ? json_deep_copy(meta) : json_object();
    if (!nmeta) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    json_object_set_new(body, "meta", nmeta);
    if (weights && !json_is_null(weights)) {
        json_t *p = shoal_consul_get(weights, "Passing");
        if (!json_is_object(weights) || (p && !(json_is_integer(p) && json_integer_value(p) >= 1 &&
                                                json_integer_value(p) <= 1000))) {
            snprintf(err, errlen, "Weights.Passing must be a whole number 1..1000");
            goto fail;
        }
        /* shoal's balancers read meta "weight"; an explicit one wins */
        if (p && json_integer_value(p) != 1 && json_is_object(nmeta) &&
            !json_object_get(nmeta, "weight")) {
            char w[16];
            snprintf(w, sizeof(w), "%d", (int)json_integer_value(p));
            json_object_set_new(nmeta, "weight", json_string(w));
        }
    }
    json_t *one = shoal_consul_get(svc, "Check"), *many = shoal_consul_get(svc, "Checks");
    if (one && !json_is_null(one) &&
        one_check(one, "Check", checks, &ttl_ms, &dereg_ms, err, errlen) != 0)
        goto fail;
    if (many && !json_is_null(many)) {
        if (!json_is_array(many)) {
            snprintf(err, errlen, "Checks must be an array of check objects");
            goto fail;
        }
        for (size_t i = 0; i < json_array_size(many); i++) {
            char where[32];
            snprintf(where, sizeof(where), "Checks[%zu]", i);
            if (one_check(json_array_get(many, i), where, checks, &ttl_ms, &dereg_ms, err,
                          errlen) != 0)
                goto fail;
        }
    }
    if (json_array_size(checks))
        json_object_set(body, "checks", checks);
    if (ttl_ms)
        json_object_set_new(body, "ttl",
                            json_integer((json_int_t)(ttl_ms > UINT32_MAX ? UINT32_MAX : ttl_ms)));
    if (dereg_ms)
        json_object_set_new(
            body, "deregister_critical_after",
            json_integer((json_int_t)(dereg_ms > UINT32_MAX ? UINT32_MAX : dereg_ms)));
    json_decref(checks);
    *out = body;
    return 0;
fail:
    json_decref(checks);
    json_decref(body);
    return -1;
}

/* ------------------------------------------------------------ checks */

size_t shoal_consul_checks(const struct shoal_instance *in,
                           struct shoal_consul_check out[SHOAL_CHECKS_MAX + 1])
{
    size_t n = 0;
    uint8_t worst_active = SHOAL_PASSING;
    for (uint32_t i = 0; i < in->n_checks; i++)
        if (in->checks[i].status > worst_active)
            worst_active = in->checks[i].status;
    if (in->ttl_ms) {
        /* Replicas see the instance's health, the worst of its checks and
         * its TTL state: the TTL's own state is the health when no active
         * check explains it, else passing once it has had a heartbeat. */
        uint8_t st = in->health > worst_active ? in->health
                     : in->heartbeat_ms        ? SHOAL_PASSING
                                               : in->health;
        out[n++] = (struct shoal_consul_check){.type = "ttl", .status = st, .output = ""};
    }
    for (uint32_t i = 0; i < in->n_checks && n < SHOAL_CHECKS_MAX + 1; i++)
        out[n++] =
            (struct shoal_consul_check){.type = shoal_check_kind_name(in->checks[i].kind),
                                        .status = in->checks[i].status,
                                        .output = in->checks[i].output ? in->checks[i].output : "",
                                        .check = &in->checks[i]};
    for (size_t i = 0; i < n; i++) {
        if (n == 1)
            snprintf(out[i].id, sizeof(out[i].id), "service:%s", in->id);
        else
            snprintf(out[i].id, sizeof(out[i].id), "service:%s:%zu", in->id, i + 1);
    }
    return n;
}

bool shoal_consul_check_parse(const char *check_id, char *id, size_t idlen, int *pos)
{
    if (strncmp(check_id, "service:", 8) != 0 || !check_id[8])
        return false;
    const char *rest = check_id + 8, *colon = strrchr(rest, ':');
    *pos = -1;
    size_t len = strlen(rest);
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
        strlen(colon + 1) <= 2) {
        *pos = atoi(colon + 1) - 1;
        len = (size_t)(colon - rest);
        if (*pos < 0)
            return false;
    }
    if (len == 0 || len >= idlen)
        return false;
    memcpy(id, rest, len);
    id[len] = 0;
    return true;
}

const char *shoal_consul_status(uint8_t health) { return shoal_health_name(health); }

void shoal_consul_node_id(const char *name, char out[37])
{
    /* two FNV-1a 64-bit hashes with different offsets: stable, not secret */
    uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        a = (a ^ *p) * 0x100000001b3ULL;
        b = (b ^ *p) * 0x100000001b3ULL;
    }
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)((a & 0x0fff) | 0x4000),
             (unsigned)(((b >> 48) & 0x3fff) | 0x8000),
             (unsigned long long)(b & 0xffffffffffffULL));
}

/* ------------------------------------------------------------ filters */

#define FILTER_NODES_MAX 64
#define FILTER_TEXT_MAX 256

enum fnode_kind { F_AND, F_OR, F_NOT, F_EQ, F_NE, F_CONTAINS, F_IN, F_EMPTY };

struct fnode {
    enum fnode_kind kind;
    int a, b; /* children (F_AND/F_OR: both; F_NOT: a) */
    char sel[FILTER_TEXT_MAX];
    char val[FILTER_TEXT_MAX];
};

struct shoal_consul_filter {
    struct fnode n[FILTER_NODES_MAX];
    int count, root;
};

enum tok_kind { T_END, T_WORD, T_STRING, T_EQ, T_NE, T_LP, T_RP, T_BAD };

struct lexer {
    const char *p;
    enum tok_kind kind;
    char text[FILTER_TEXT_MAX];
    char *err;
    size_t errlen;
    struct shoal_consul_filter *f;
    int depth; /* nesting of not and parentheses */
};

#define FILTER_DEPTH_MAX 32

static void lex(struct lexer *lx)
{
    const char *p = lx->p;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    lx->text[0] = 0;
    if (!*p) {
        lx->kind = T_END;
    } else if (p[0] == '=' && p[1] == '=') {
        lx->kind = T_EQ;
        p += 2;
    } else if (p[0] == '!' && p[1] == '=') {
        lx->kind = T_NE;
        p += 2;
    } else if (*p == '(' || *p == ')') {
        lx->kind = *p == '(' ? T_LP : T_RP;
        p++;
    } else if (*p == '"' || *p == '`') {
        char q = *p++;
        size_t n = 0;
        lx->kind = T_STRING;
        while (*p && *p != q) {
            if (q == '"' && *p == '\\' && p[1])
                p++;
            if (n + 1 >= sizeof(lx->text)) {
                lx->kind = T_BAD;
                break;
            }
            lx->text[n++] = *p++;
        }
        lx->text[n] = 0;
        if (*p != q)
            lx->kind = T_BAD;
        else
            p++;
    } else if (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-' || *p == '/' ||
               *p == ':') {
        size_t n = 0;
        lx->kind = T_WORD;
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-' || *p == '/' ||
               *p == ':') {
            if (n + 1 >= sizeof(lx->text)) {
                lx->kind = T_BAD;
                break;
            }
            lx->text[n++] = *p++;
        }
        lx->text[n] = 0;
    } else {
        lx->kind = T_BAD;
    }
    lx->p = p;
}

static bool is_kw(const struct lexer *lx, const char *kw)
{
    return lx->kind == T_WORD && strcasecmp(lx->text, kw) == 0;
}

static int new_node(struct lexer *lx, enum fnode_kind k)
{
    if (lx->f->count >= FILTER_NODES_MAX) {
        snprintf(lx->err, lx->errlen, "filter: the expression is too long");
        return -1;
    }
    struct fnode *n = &lx->f->n[lx->f->count];
    memset(n, 0, sizeof(*n));
    n->kind = k;
    n->a = n->b = -1;
    return lx->f->count++;
}

static int parse_or(struct lexer *lx);
static int parse_factor(struct lexer *lx);
static int parse_factor_in(struct lexer *lx);

static int fail_at(struct lexer *lx, const char *what)
{
    snprintf(lx->err, lx->errlen,
             "filter: %s; shoal supports SELECTOR ==, !=, contains, not contains, is empty, "
             "is not empty, \"VALUE\" in SELECTOR, joined by and/or/not",
             what);
    return -1;
}

static int parse_factor(struct lexer *lx)
{
    if (++lx->depth > FILTER_DEPTH_MAX) {
        snprintf(lx->err, lx->errlen, "filter: nested more than %d deep", FILTER_DEPTH_MAX);
        return -1;
    }
    int n = parse_factor_in(lx);
    lx->depth--;
    return n;
}

static int parse_factor_in(struct lexer *lx)
{
    if (is_kw(lx, "not")) {
        lex(lx);
        int a = parse_factor(lx);
        if (a < 0)
            return -1;
        int n = new_node(lx, F_NOT);
        if (n >= 0)
            lx->f->n[n].a = a;
        return n;
    }
    if (lx->kind == T_LP) {
        lex(lx);
        int a = parse_or(lx);
        if (a < 0)
            return -1;
        if (lx->kind != T_RP)
            return fail_at(lx, "a ')' is missing");
        lex(lx);
        return a;
    }
    if (lx->kind != T_WORD && lx->kind != T_STRING)
        return fail_at(lx, "expected a selector or a value");
    char first[FILTER_TEXT_MAX];
    bool first_string = lx->kind == T_STRING;
    snprintf(first, sizeof(first), "%s", lx->text);
    lex(lx);
    bool negate = false;
    int n;
    if (is_kw(lx, "not")) {
        negate = true;
        lex(lx);
    }
    if (!negate && (lx->kind == T_EQ || lx->kind == T_NE)) {
        enum fnode_kind k = lx->kind == T_EQ ? F_EQ : F_NE;
        lex(lx);
        if (lx->kind != T_WORD && lx->kind != T_STRING)
            return fail_at(lx, "expected a value after == or !=");
        if ((n = new_node(lx, k)) < 0)
            return -1;
        snprintf(lx->f->n[n].sel, FILTER_TEXT_MAX, "%s", first);
        snprintf(lx->f->n[n].val, FILTER_TEXT_MAX, "%s", lx->text);
        lex(lx);
    } else if (is_kw(lx, "contains")) {
        lex(lx);
        if (lx->kind != T_WORD && lx->kind != T_STRING)
            return fail_at(lx, "expected a value after contains");
        if ((n = new_node(lx, F_CONTAINS)) < 0)
            return -1;
        snprintf(lx->f->n[n].sel, FILTER_TEXT_MAX, "%s", first);
        snprintf(lx->f->n[n].val, FILTER_TEXT_MAX, "%s", lx->text);
        lex(lx);
    } else if (is_kw(lx, "in")) {
        lex(lx);
        if (lx->kind != T_WORD)
            return fail_at(lx, "expected a selector after in");
        if ((n = new_node(lx, F_IN)) < 0)
            return -1;
        snprintf(lx->f->n[n].sel, FILTER_TEXT_MAX, "%s", lx->text);
        snprintf(lx->f->n[n].val, FILTER_TEXT_MAX, "%s", first);
        lex(lx);
    } else if (!negate && is_kw(lx, "is")) {
        lex(lx);
        if (is_kw(lx, "not")) {
            negate = true;
            lex(lx);
        }
        if (!is_kw(lx, "empty"))
            return fail_at(lx, "expected empty after is");
        if ((n = new_node(lx, F_EMPTY)) < 0)
            return -1;
        snprintf(lx->f->n[n].sel, FILTER_TEXT_MAX, "%s", first);
        lex(lx);
    } else {
        return fail_at(lx, "unsupported operator");
    }
    if (first_string && lx->f->n[n].kind != F_IN)
        return fail_at(lx, "a selector cannot be a quoted string");
    if (negate) {
        int m = new_node(lx, F_NOT);
        if (m < 0)
            return -1;
        lx->f->n[m].a = n;
        n = m;
    }
    return n;
}

static int parse_and(struct lexer *lx)
{
    int a = parse_factor(lx);
    while (a >= 0 && is_kw(lx, "and")) {
        lex(lx);
        int b = parse_factor(lx);
        if (b < 0)
            return -1;
        int n = new_node(lx, F_AND);
        if (n < 0)
            return -1;
        lx->f->n[n].a = a;
        lx->f->n[n].b = b;
        a = n;
    }
    return a;
}

static int parse_or(struct lexer *lx)
{
    int a = parse_and(lx);
    while (a >= 0 && is_kw(lx, "or")) {
        lex(lx);
        int b = parse_and(lx);
        if (b < 0)
            return -1;
        int n = new_node(lx, F_OR);
        if (n < 0)
            return -1;
        lx->f->n[n].a = a;
        lx->f->n[n].b = b;
        a = n;
    }
    return a;
}

struct shoal_consul_filter *shoal_consul_filter_new(const char *expr, char *err, size_t errlen)
{
    struct shoal_consul_filter *f = calloc(1, sizeof(*f));
    struct lexer lx = {.p = expr, .err = err, .errlen = errlen, .f = f};
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    lex(&lx);
    f->root = parse_or(&lx);
    if (f->root >= 0 && lx.kind != T_END)
        f->root = lx.kind == T_BAD ? fail_at(&lx, "unreadable text (an unclosed quote?)")
                                   : fail_at(&lx, "unexpected text after the expression");
    if (f->root < 0) {
        free(f);
        return NULL;
    }
    return f;
}

void shoal_consul_filter_free(struct shoal_consul_filter *f) { free(f); }

/* The value at a dotted selector; NULL when absent. */
static const json_t *select_path(const json_t *v, const char *sel)
{
    char part[FILTER_TEXT_MAX];
    while (*sel && v) {
        size_t l = strcspn(sel, ".");
        snprintf(part, sizeof(part), "%.*s", (int)l, sel);
        if (!json_is_object(v))
            return NULL;
        const json_t *next = json_object_get(v, part);
        if (!next) { /* struct fields match loosely; map keys (Meta) exactly first */
            const char *key;
            json_t *x;
            json_object_foreach((json_t *)v, key, x)
            {
                if (strcasecmp(key, part) == 0) {
                    next = x;
                    break;
                }
            }
        }
        v = next;
        sel += l;
        if (*sel == '.')
            sel++;
    }
    return v;
}

static bool scalar_eq(const json_t *v, const char *s)
{
    char buf[32];
    if (json_is_string(v))
        return strcmp(json_string_value(v), s) == 0;
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        return strcmp(buf, s) == 0;
    }
    if (json_is_boolean(v))
        return strcasecmp(json_is_true(v) ? "true" : "false", s) == 0;
    return false;
}

static bool eval(const struct shoal_consul_filter *f, int i, const json_t *v)
{
    const struct fnode *n = &f->n[i];
    const json_t *x;
    switch (n->kind) {
    case F_AND:
        return eval(f, n->a, v) && eval(f, n->b, v);
    case F_OR:
        return eval(f, n->a, v) || eval(f, n->b, v);
    case F_NOT:
        return !eval(f, n->a, v);
    case F_EQ:
    case F_NE:
        x = select_path(v, n->sel);
        return (x && scalar_eq(x, n->val)) == (n->kind == F_EQ);
    case F_CONTAINS:
    case F_IN:
        x = select_path(v, n->sel);
        if (json_is_array(x)) {
            for (size_t k = 0; k < json_array_size(x); k++)
                if (scalar_eq(json_array_get(x, k), n->val))
                    return true;
            return false;
        }
        if (json_is_object(x))
            return json_object_get(x, n->val) != NULL;
        if (json_is_string(x))
            return strstr(json_string_value(x), n->val) != NULL;
        return false;
    case F_EMPTY:
        x = select_path(v, n->sel);
        return !x || json_is_null(x) || (json_is_string(x) && !*json_string_value(x)) ||
               (json_is_array(x) && !json_array_size(x)) ||
               (json_is_object(x) && !json_object_size(x));
    }
    return false;
}

bool shoal_consul_filter_match(const struct shoal_consul_filter *f, const json_t *v)
{
    return eval(f, f->root, v);
}

/* ------------------------------------------------------------ files */

int shoal_consul_native_instance(const json_t *native, struct shoal_instance *out, char *err,
                                 size_t errlen)
{
    struct shoal_instance spec = {0};
    struct shoal_check checks[SHOAL_CHECKS_MAX];
    char *tags[SHOAL_TAGS_MAX];
    struct shoal_kv meta[SHOAL_METAS_MAX];
    const char *why = NULL, *key;
    json_t *v;

    memset(out, 0, sizeof(*out));
    spec.id = (char *)json_string_value(json_object_get(native, "id"));
    spec.service = (char *)json_string_value(json_object_get(native, "service"));
    spec.address = (char *)json_string_value(json_object_get(native, "address"));
    json_int_t port = json_integer_value(json_object_get(native, "port"));
    if (!spec.id || !spec.service || !spec.address || !*spec.address) {
        snprintf(err, errlen,
                 "ID, Name and Address must be strings (Address is required "
                 "in files)");
        return -1;
    }
    if (port < 1 || port > 65535) {
        snprintf(err, errlen, "Port must be a whole number 1..65535");
        return -1;
    }
    spec.port = (uint16_t)port;
    json_t *t = json_object_get(native, "tags");
    if (t) {
        if (!json_is_array(t) || json_array_size(t) > SHOAL_TAGS_MAX) {
            snprintf(err, errlen, "Tags must be an array of at most %d strings", SHOAL_TAGS_MAX);
            return -1;
        }
        for (size_t i = 0; i < json_array_size(t); i++) {
            if (!json_is_string(json_array_get(t, i))) {
                snprintf(err, errlen, "Tags[%zu] must be a string", i);
                return -1;
            }
            tags[i] = (char *)json_string_value(json_array_get(t, i));
        }
        spec.tags = tags;
        spec.n_tags = (uint32_t)json_array_size(t);
    }
    json_t *m = json_object_get(native, "meta");
    if (m) {
        if (!json_is_object(m) || json_object_size(m) > SHOAL_METAS_MAX) {
            snprintf(err, errlen, "Meta must be an object of at most %d strings", SHOAL_METAS_MAX);
            return -1;
        }
        json_object_foreach(m, key, v)
        {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "Meta values must be strings");
                return -1;
            }
            meta[spec.n_meta].key = (char *)key;
            meta[spec.n_meta++].value = (char *)json_string_value(v);
        }
        spec.meta = meta;
    }
    if ((v = json_object_get(native, "ttl")) != NULL)
        spec.ttl_ms = (uint32_t)json_integer_value(v);
    /* the checks: the API's own reader and rules (io/checkspec.c) */
    if (shoal_checkspec_parse(native, &spec, checks, err, errlen) != 0)
        return -1;
    for (uint32_t i = 0; i < spec.n_checks; i++)
        shoal_check_defaults(&checks[i]);
    if (shoal_instance_validate(&spec, &why) != 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (shoal_instance_copy(out, &spec) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

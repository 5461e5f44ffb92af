/* apijson.c -- instances as JSON without jansson objects.
 *
 * A growing buffer and jansson's escaping rules for JSON_COMPACT without
 * JSON_ENSURE_ASCII: '"' and '\\' escaped, \b \f \n \r \t by name, other
 * bytes below 0x20 as \u00XX, everything else (UTF-8 included) as is.
 * Keys come in the order api.c's instance_json() inserts them.
 */
#include "io/apijson.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct buf {
    char *p;
    size_t n, cap;
    bool oom;
};

static bool reserve(struct buf *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->cap - b->n > more)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->n <= more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put(struct buf *b, const char *s, size_t len)
{
    if (!reserve(b, len))
        return;
    memcpy(b->p + b->n, s, len);
    b->n += len;
}

#define PUT_LIT(b, s) put((b), (s), sizeof(s) - 1)

static void put_str(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF"; /* jansson: \\u%04X */
    size_t len = strlen(s);
    if (!reserve(b, 2 + 6 * len)) /* the worst case: every byte \u00XX */
        return;
    char *o = b->p + b->n;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
}

static void put_int(struct buf *b, int64_t v)
{
    char t[24], *e = t + sizeof(t), *p = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    put(b, p, (size_t)(e - p));
}

static char *two(char *o, int v)
{
    *o++ = (char)('0' + v / 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

/* As api.c's json_time: "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC). gmtime_r and
 * strftime cost more than the rest of an instance together, so the
 * civil date comes from days since the epoch directly (the proleptic
 * Gregorian algorithm of H. Hinnant's "chrono-compatible low-level date
 * algorithms"). Years outside 1000..9999 go through gmtime_r as before. */
static void put_time(struct buf *b, int64_t ms)
{
    char t[40];
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int frac = (int)(ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    if (m <= 2)
        y++;
    if (y < 1000 || y > 9999) { /* strftime's %Y does not pad: its own path */
        time_t ts = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&ts, &tm)) {
            PUT_LIT(b, "null");
            return;
        }
        size_t n = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(t + n, sizeof(t) - n, ".%03dZ", frac);
        put_str(b, t);
        return;
    }
    char *o = t;
    *o++ = '"';
    o = two(o, (int)(y / 100));
    o = two(o, (int)(y % 100));
    *o++ = '-';
    o = two(o, m);
    *o++ = '-';
    o = two(o, d);
    *o++ = 'T';
    o = two(o, (int)(sod / 3600));
    *o++ = ':';
    o = two(o, (int)(sod / 60 % 60));
    *o++ = ':';
    o = two(o, (int)(sod % 60));
    *o++ = '.';
    *o++ = (char)('0' + frac / 100);
    o = two(o, frac % 100);
    *o++ = 'Z';
    *o++ = '"';
    put(b, t, (size_t)(o - t));
}

static void put_instance(struct buf *b, const struct shoal_instance *in, const char *owner_status)
{
    PUT_LIT(b, "{\"id\":");
    put_str(b, in->id);
    PUT_LIT(b, ",\"service\":");
    put_str(b, in->service);
    PUT_LIT(b, ",\"address\":");
    put_str(b, in->address);
    PUT_LIT(b, ",\"port\":");
    put_int(b, in->port);
    PUT_LIT(b, ",\"tags\":[");
    for (uint32_t i = 0; i < in->n_tags; i++) {
        if (i)
            PUT_LIT(b, ",");
        put_str(b, in->tags[i]);
    }
    PUT_LIT(b, "],\"meta\":{");
    for (uint32_t i = 0; i < in->n_meta; i++) {
        if (i)
            PUT_LIT(b, ",");
        put_str(b, in->meta[i].key);
        PUT_LIT(b, ":");
        put_str(b, in->meta[i].value);
    }
    PUT_LIT(b, "},\"status\":");
    put_str(b, shoal_health_name(in->health));
    PUT_LIT(b, ",\"ttl_ms\":");
    put_int(b, in->ttl_ms);
    PUT_LIT(b, ",\"registered_at\":");
    put_time(b, in->registered_ms);
    PUT_LIT(b, ",\"last_heartbeat\":");
    if (in->heartbeat_ms)
        put_time(b, in->heartbeat_ms);
    else
        PUT_LIT(b, "null");
    PUT_LIT(b, ",\"owner\":");
    put_str(b, in->owner);
    PUT_LIT(b, ",\"owner_status\":");
    put_str(b, owner_status);
    PUT_LIT(b, ",\"generation\":");
    put_int(b, (int64_t)in->generation);
    PUT_LIT(b, ",\"version\":");
    put_int(b, (int64_t)in->version);
    PUT_LIT(b, ",\"checks\":[");
    for (uint32_t i = 0; i < in->n_checks; i++) {
        const struct shoal_check *c = &in->checks[i];
        if (i)
            PUT_LIT(b, ",");
        PUT_LIT(b, "{\"kind\":");
        put_str(b, shoal_check_kind_name(c->kind));
        PUT_LIT(b, ",\"target\":");
        put_str(b, c->target ? c->target : "");
        PUT_LIT(b, ",\"status\":");
        put_str(b, shoal_health_name(c->status));
        PUT_LIT(b, ",\"output\":");
        put_str(b, c->output ? c->output : "");
        PUT_LIT(b, ",\"interval_ms\":");
        put_int(b, c->interval_ms);
        PUT_LIT(b, ",\"timeout_ms\":");
        put_int(b, c->timeout_ms);
        PUT_LIT(b, "}");
    }
    PUT_LIT(b, "],\"deregister_critical_after_ms\":");
    put_int(b, in->deregister_critical_after_ms);
    PUT_LIT(b, "}");
}

char *shoal_apijson_instances(const struct shoal_instance *const *v, size_t n, uint64_t index,
                              shoal_apijson_owner_status status, void *ud, size_t *len)
{
    struct buf b = {0};
    const char *last_owner = NULL, *st = NULL;

    PUT_LIT(&b, "{\"index\":");
    put_int(&b, (int64_t)index);
    PUT_LIT(&b, ",\"instances\":[");
    for (size_t i = 0; i < n && !b.oom; i++) {
        /* Answers come sorted by owner: one membership lookup per owner. */
        if (!last_owner || strcmp(last_owner, v[i]->owner) != 0) {
            last_owner = v[i]->owner;
            st = status(ud, last_owner);
        }
        if (i)
            PUT_LIT(&b, ",");
        put_instance(&b, v[i], st);
    }
    PUT_LIT(&b, "]}");
    if (!reserve(&b, 1)) {
        free(b.p);
        return NULL;
    }
    b.p[b.n] = 0;
    if (len)
        *len = b.n;
    return b.p;
}

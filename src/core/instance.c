/* instance.c -- struct shoal_instance: deep copy, free, limits, size.
 * The limits are the registry's contract with users (README "Limits"):
 * every entry point (API, service files, wire) checks them through
 * shoal_instance_validate(), so a bad value is refused once, by name.
 */
#include <stdlib.h>
#include <string.h>

#include "core/addr.h"
#include "core/registry.h"
#include "shoal/error.h"

static const char *const health_names[SHOAL_HEALTH_COUNT] = {"passing", "warning", "critical"};

const char *shoal_health_name(int h)
{
    return h >= 0 && h < SHOAL_HEALTH_COUNT ? health_names[h] : "?";
}

int shoal_health_parse(const char *s)
{
    for (int i = 0; i < SHOAL_HEALTH_COUNT; i++)
        if (strcmp(s, health_names[i]) == 0)
            return i;
    return -1;
}

static const char *const check_kind_names[] = {"http", "tcp"};

const char *shoal_check_kind_name(int k)
{
    return k >= 0 && k <= SHOAL_CHECK_TCP ? check_kind_names[k] : "?";
}

void shoal_check_defaults(struct shoal_check *c)
{
    if (!c->interval_ms)
        c->interval_ms = SHOAL_CHECK_INTERVAL_DEFAULT;
    if (!c->timeout_ms)
        c->timeout_ms = c->interval_ms / 2 < SHOAL_CHECK_TIMEOUT_DEFAULT
                            ? (c->interval_ms / 2 ? c->interval_ms / 2 : 1)
                            : SHOAL_CHECK_TIMEOUT_DEFAULT;
}

static char *dup_or_null(const char *s, bool *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = true;
    return d;
}

int shoal_instance_copy(struct shoal_instance *dst, const struct shoal_instance *src)
{
    bool fail = false;
    *dst = *src;
    dst->id = dup_or_null(src->id, &fail);
    dst->service = dup_or_null(src->service, &fail);
    dst->address = dup_or_null(src->address, &fail);
    dst->tags = NULL;
    dst->meta = NULL;
    dst->checks = NULL;
    dst->n_tags = dst->n_meta = dst->n_checks = 0;
    if (src->n_tags) {
        dst->tags = calloc(src->n_tags, sizeof(*dst->tags));
        fail |= !dst->tags;
        for (uint32_t i = 0; dst->tags && i < src->n_tags; i++, dst->n_tags++)
            dst->tags[i] = dup_or_null(src->tags[i], &fail);
    }
    if (src->n_meta) {
        dst->meta = calloc(src->n_meta, sizeof(*dst->meta));
        fail |= !dst->meta;
        for (uint32_t i = 0; dst->meta && i < src->n_meta; i++, dst->n_meta++) {
            dst->meta[i].key = dup_or_null(src->meta[i].key, &fail);
            dst->meta[i].value = dup_or_null(src->meta[i].value, &fail);
        }
    }
    if (src->n_checks) {
        dst->checks = calloc(src->n_checks, sizeof(*dst->checks));
        fail |= !dst->checks;
        for (uint32_t i = 0; dst->checks && i < src->n_checks; i++, dst->n_checks++) {
            dst->checks[i] = src->checks[i];
            dst->checks[i].target = dup_or_null(src->checks[i].target, &fail);
            dst->checks[i].output = dup_or_null(src->checks[i].output, &fail);
        }
    }
    if (fail) {
        shoal_instance_clear(dst);
        return SHOAL_ENOMEM;
    }
    return 0;
}

void shoal_instance_clear(struct shoal_instance *in)
{
    free(in->id);
    free(in->service);
    free(in->address);
    for (uint32_t i = 0; i < in->n_tags; i++)
        free(in->tags[i]);
    free(in->tags);
    for (uint32_t i = 0; i < in->n_meta; i++) {
        free(in->meta[i].key);
        free(in->meta[i].value);
    }
    free(in->meta);
    for (uint32_t i = 0; i < in->n_checks; i++) {
        free(in->checks[i].target);
        free(in->checks[i].output);
    }
    free(in->checks);
    memset(in, 0, sizeof(*in));
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* 1..max-1 chars, each alnum or in `extra`; the first alnum if first_alnum. */
static bool charset_ok(const char *s, size_t max, const char *extra, bool lower_only,
                       bool first_alnum)
{
    size_t n = 0;
    if (!s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (n + 1 >= max)
            return false;
        if (lower_only && c >= 'A' && c <= 'Z')
            return false;
        if (is_alnum(c))
            continue;
        if ((n == 0 && first_alnum) || !strchr(extra, c))
            return false;
    }
    return n > 0;
}

/* Well-formed UTF-8 without control characters other than tab/newline. */
static bool text_ok(const char *s, size_t max, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (p[n]) {
        unsigned char c = p[n];
        size_t extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
        if (extra == 9 || (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
            return false;
        for (size_t k = 1; k <= extra; k++)
            if ((p[n + k] & 0xc0) != 0x80)
                return false;
        n += extra + 1;
        if (n >= max)
            return false;
    }
    *len = n;
    return true;
}

/* NULL, or why one check is not acceptable: the one rule for the API, the
 * CLI, service files and the wire. */
const char *shoal_check_invalid(const struct shoal_check *c)
{
    const char *t = c->target;
    size_t n = t ? strlen(t) : 0, olen = 0;
    if (c->kind > SHOAL_CHECK_TCP)
        return "a check's kind must be http or tcp";
    if (n == 0 || n >= SHOAL_CHECK_TARGET_MAX)
        return "a check's target must be 1..255 characters";
    for (size_t k = 0; k < n; k++)
        if (t[k] <= 0x20 || t[k] >= 0x7f)
            return "a check's target must be printable ASCII without spaces";
    if (c->kind == SHOAL_CHECK_HTTP && strncmp(t, "http://", 7) != 0 &&
        strncmp(t, "https://", 8) != 0)
        return "an http check's target must be an http:// or https:// URL";
    if (c->kind == SHOAL_CHECK_TCP) {
        /* Numeric: the prober connects without a resolver that could block
         * the agent's loop, so a host name would stay critical forever. */
        struct shoal_addr a;
        if (shoal_addr_parse(t, &a) != 0)
            return "a tcp check's target must be IP:PORT or [IPv6]:PORT (an address, not a "
                   "host name)";
    }
    if (c->interval_ms < 100 || c->interval_ms > 86400000)
        return "a check's interval must be 100ms..24h";
    if (c->timeout_ms < 1 || c->timeout_ms >= c->interval_ms)
        return "a check's timeout must be at least 1ms and less than its interval";
    if (c->rise > SHOAL_CHECK_DAMP_MAX || c->fall > SHOAL_CHECK_DAMP_MAX)
        return "a check's rise and fall must be 0..100";
    if (c->status >= SHOAL_HEALTH_COUNT)
        return "a check's status must be passing, warning or critical";
    if (c->output && !text_ok(c->output, SHOAL_CHECK_OUTPUT_MAX, &olen))
        return "a check's output must be UTF-8 text of at most 255 bytes";
    return NULL;
}

const char *shoal_check_id(const char *s)
{
    return charset_ok(s, SHOAL_ID_MAX, "._:-", false, true)
               ? NULL
               : "id must be 1..127 of [A-Za-z0-9._:-], starting with a letter or digit";
}

const char *shoal_check_service(const char *s)
{
    return charset_ok(s, SHOAL_SERVICE_MAX, "-", true, true)
               ? NULL
               : "service must be 1..63 of [a-z0-9-], starting with a letter or digit";
}

const char *shoal_check_address(const char *s)
{
    return charset_ok(s, SHOAL_HOST_MAX, ".:-", false, false)
               ? NULL
               : "address must be an IP address or host name (1..255 of [A-Za-z0-9.:-])";
}

const char *shoal_check_tag(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n >= SHOAL_TAG_MAX)
        return "a tag must be 1..63 characters";
    for (size_t k = 0; k < n; k++)
        if (t[k] <= 0x20 || t[k] >= 0x7f || t[k] == ',')
            return "a tag must be printable ASCII without spaces or commas";
    return NULL;
}

const char *shoal_check_meta_key(const char *k)
{
    return charset_ok(k, SHOAL_META_KEY_MAX, "._-", false, false)
               ? NULL
               : "a meta key must be 1..63 of [A-Za-z0-9._-]";
}

const char *shoal_check_meta_value(const char *v, size_t *len)
{
    size_t n = 0;
    if (!v || !text_ok(v, SHOAL_META_VALUE_MAX, &n))
        return "a meta value must be UTF-8 text of at most 4095 bytes, without control characters";
    if (len)
        *len = n;
    return NULL;
}

int shoal_instance_validate(const struct shoal_instance *in, const char **why)
{
    const char *w = NULL;
    size_t total = 0;
    if ((w = shoal_check_id(in->id)) || (w = shoal_check_service(in->service)) ||
        (w = shoal_check_address(in->address)))
        ;
    else if (in->port == 0)
        w = "port must be 1..65535";
    else if (in->n_tags > SHOAL_TAGS_MAX)
        w = "at most 32 tags";
    else if (in->n_meta > SHOAL_METAS_MAX)
        w = "at most 64 meta pairs";
    else if (in->health >= SHOAL_HEALTH_COUNT)
        w = "status must be passing, warning or critical";
    else if (in->n_checks > SHOAL_CHECKS_MAX)
        w = "at most 8 checks";
    for (uint32_t i = 0; !w && i < in->n_checks; i++)
        w = shoal_check_invalid(&in->checks[i]);
    for (uint32_t i = 0; !w && i < in->n_tags; i++)
        w = shoal_check_tag(in->tags[i]);
    for (uint32_t i = 0; !w && i < in->n_meta; i++) {
        size_t vlen = 0;
        if ((w = shoal_check_meta_key(in->meta[i].key)) ||
            (w = shoal_check_meta_value(in->meta[i].value, &vlen)))
            ;
        else if ((total += strlen(in->meta[i].key) + vlen) > SHOAL_META_TOTAL_MAX)
            w = "meta keys and values must total at most 16384 bytes";
        for (uint32_t k = 0; !w && k < i; k++)
            if (strcmp(in->meta[k].key, in->meta[i].key) == 0)
                w = "meta keys must be unique";
    }
    if (w) {
        if (why)
            *why = w;
        return SHOAL_EINVAL;
    }
    return 0;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

uint32_t shoal_instance_cost(const struct shoal_instance *in)
{
    /* Fixed fields with tags and worst-case varints: ~90 bytes; each string
     * pays its bytes plus a tag and a length (<= 3); a meta pair also pays
     * its own submessage header. */
    size_t n = 100 + strlen(in->owner) + slen(in->id) + slen(in->service) + slen(in->address);
    for (uint32_t i = 0; i < in->n_tags; i++)
        n += 3 + slen(in->tags[i]);
    for (uint32_t i = 0; i < in->n_meta; i++)
        n += 10 + slen(in->meta[i].key) + slen(in->meta[i].value);
    n += 6;  /* deregister_critical_after */
    n += 67; /* the owner's signature: tag, length, 64 bytes */
    for (uint32_t i = 0; i < in->n_checks; i++) /* header, 6 varints, two strings */
        n += 40 + slen(in->checks[i].target) + slen(in->checks[i].output);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool shoal_instance_same_spec(const struct shoal_instance *a, const struct shoal_instance *b)
{
    if (!str_eq(a->id, b->id) || !str_eq(a->service, b->service) ||
        !str_eq(a->address, b->address) || a->port != b->port || a->ttl_ms != b->ttl_ms ||
        a->n_tags != b->n_tags || a->n_meta != b->n_meta || a->n_checks != b->n_checks ||
        a->deregister_critical_after_ms != b->deregister_critical_after_ms)
        return false;
    for (uint32_t i = 0; i < a->n_checks; i++) {
        const struct shoal_check *x = &a->checks[i], *y = &b->checks[i];
        if (x->kind != y->kind || !str_eq(x->target, y->target) ||
            x->interval_ms != y->interval_ms || x->timeout_ms != y->timeout_ms ||
            x->rise != y->rise || x->fall != y->fall)
            return false;
    }
    for (uint32_t i = 0; i < a->n_tags; i++)
        if (!str_eq(a->tags[i], b->tags[i]))
            return false;
    for (uint32_t i = 0; i < a->n_meta; i++)
        if (!str_eq(a->meta[i].key, b->meta[i].key) || !str_eq(a->meta[i].value, b->meta[i].value))
            return false;
    return true;
}

void shoal_reg_msg_free(struct shoal_reg_msg *m)
{
    for (uint32_t i = 0; m->events && i < m->n_events; i++)
        shoal_instance_clear(&m->events[i]);
    free(m->events);
    free(m->digests);
    free(m->wants);
    free(m->proofs);
    m->proofs = NULL;
    m->n_proofs = 0;
    m->events = NULL;
    m->digests = NULL;
    m->wants = NULL;
    m->n_events = m->n_digests = m->n_wants = 0;
}

/* dnsname.c -- Consul's DNS names under the agent's domain (io/dnsname.h). */
#include "io/dnsname.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *shoal_dns_zone_domain(const struct shoal_dns_zone *z)
{
    return z->domain[0] ? z->domain : "shoal";
}

const char *shoal_dns_zone_dc(const struct shoal_dns_zone *z)
{
    return z->datacenter[0] ? z->datacenter : "dc1";
}

const char *shoal_dns_domain_parse(const char *s, char out[SHOAL_DNS_DOMAIN_MAX])
{
    size_t n = strlen(s), label = 0;
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0 || n >= SHOAL_DNS_DOMAIN_MAX)
        return "expected a domain name such as shoal or consul (1..127 characters)";
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63)
                return "each label must be 1..63 characters";
            label = 0;
            if (i < n)
                out[i] = '.';
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return "labels may hold letters, digits and '-' only";
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        label++;
    }
    out[n] = 0;
    return NULL;
}

/* Label i of q equals s (case-insensitive; a label with a NUL never does). */
static bool label_is(const struct shoal_dns_question *q, size_t i, const char *s)
{
    return strlen(q->labels[i]) == q->label_len[i] && strcasecmp(q->labels[i], s) == 0;
}

/* A label usable as a service, tag or node name: no NUL or dot inside. */
static bool label_clean(const struct shoal_dns_question *q, size_t i)
{
    return strlen(q->labels[i]) == q->label_len[i] && !strchr(q->labels[i], '.');
}

static void lower(char *dst, const char *src)
{
    size_t i = 0;
    for (; src[i] && i < 63; i++)
        dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
    dst[i] = 0;
}

int shoal_dns_name_classify(const struct shoal_dns_question *q, const struct shoal_dns_zone *z,
                            struct shoal_dns_name *out)
{
    const char *dom = shoal_dns_zone_domain(z);
    char dl[SHOAL_DNS_DOMAIN_MAX];
    size_t nd = 0, n = q->n_labels;
    memset(out, 0, sizeof(*out));

    /* the domain's labels must end the name */
    snprintf(dl, sizeof(dl), "%s", dom);
    const char *dlabels[SHOAL_DNS_MAX_LABELS];
    for (char *p = dl, *dot; p && nd < SHOAL_DNS_MAX_LABELS; p = dot ? dot + 1 : NULL) {
        dot = strchr(p, '.');
        if (dot)
            *dot = 0;
        dlabels[nd++] = p;
    }
    if (n < nd)
        return out->kind = SHOAL_DNS_N_OUTSIDE;
    for (size_t i = 0; i < nd; i++)
        if (!label_is(q, n - nd + i, dlabels[i]))
            return out->kind = SHOAL_DNS_N_OUTSIDE;
    size_t r = n - nd; /* labels before the domain */
    if (r == 0)
        return out->kind = SHOAL_DNS_N_APEX;
    /* DC.DOMAIN alone is an empty non-terminal; otherwise drop a last DC
     * label after service/node/addr */
    if (label_is(q, r - 1, shoal_dns_zone_dc(z))) {
        if (r == 1)
            return out->kind = SHOAL_DNS_N_ENT;
        if (label_is(q, r - 2, "service") || label_is(q, r - 2, "node") ||
            label_is(q, r - 2, "addr"))
            r--;
    }
    if (r == 1) {
        if (label_is(q, 0, "service") || label_is(q, 0, "node") || label_is(q, 0, "addr"))
            return out->kind = SHOAL_DNS_N_ENT;
        if (label_is(q, 0, "ns") && n == nd + 1)
            return out->kind = SHOAL_DNS_N_NS;
        return out->kind = SHOAL_DNS_N_NONE;
    }
    for (size_t i = 0; i + 1 < r; i++)
        if (!label_clean(q, i))
            return out->kind = SHOAL_DNS_N_NONE;
    if (r == 2 && label_is(q, 1, "addr")) {
        snprintf(out->label, sizeof(out->label), "%s", q->labels[0]);
        return out->kind = SHOAL_DNS_N_ADDR;
    }
    if (r == 2 && label_is(q, 1, "node")) {
        snprintf(out->label, sizeof(out->label), "%s", q->labels[0]);
        return out->kind = SHOAL_DNS_N_NODE;
    }
    if (!label_is(q, r - 1, "service") || r > 3)
        return out->kind = SHOAL_DNS_N_NONE;
    if (r == 2) {
        if (q->labels[0][0] == '_') { /* _tcp.service, _TAG.service */
            if (!q->labels[0][1])
                return out->kind = SHOAL_DNS_N_NONE;
            if (!label_is(q, 0, "_tcp"))
                snprintf(out->tag, sizeof(out->tag), "%s", q->labels[0] + 1);
            return out->kind = SHOAL_DNS_N_TAG_ENT;
        }
        lower(out->service, q->labels[0]);
        return out->kind = SHOAL_DNS_N_SERVICE;
    }
    if (q->labels[0][0] == '_' && q->labels[1][0] == '_') {
        /* _NAME._tcp (RFC 2782) or _NAME._TAG (Consul) */
        lower(out->service, q->labels[0] + 1);
        if (!label_is(q, 1, "_tcp"))
            snprintf(out->tag, sizeof(out->tag), "%s", q->labels[1] + 1);
        if (!out->service[0] || (!label_is(q, 1, "_tcp") && !out->tag[0]))
            return out->kind = SHOAL_DNS_N_NONE;
    } else {
        snprintf(out->tag, sizeof(out->tag), "%s", q->labels[0]);
        lower(out->service, q->labels[1]);
        if (!out->tag[0] || !out->service[0])
            return out->kind = SHOAL_DNS_N_NONE;
    }
    return out->kind = SHOAL_DNS_N_SERVICE;
}

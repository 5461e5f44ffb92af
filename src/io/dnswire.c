/* dnswire.c -- DNS query parsing and answer building for the agent's DNS
 * interface (io/dnswire.h). Written by hand rather than with libldns: the
 * subset is small (one question, A/AAAA/SRV/SOA, an OPT record), and a
 * bounded parser of ~150 lines is easier to audit and fuzz than a general
 * library's packet model plus glue. Every read is checked against the
 * packet length; every write against the transport's limit.
 */
#include "io/dnswire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/registry.h"
#include "io/dnsname.h"

enum {
    T_A = 1,
    T_NS = 2,
    T_CNAME = 5,
    T_SOA = 6,
    T_AAAA = 28,
    T_SRV = 33,
    T_OPT = 41,
    T_ANY = 255,
};
enum { C_IN = 1, C_ANY = 255 };
enum { RC_NOERROR = 0, RC_FORMERR = 1, RC_NXDOMAIN = 3, RC_NOTIMP = 4, RC_REFUSED = 5 };

#define DNS_HEADER 12
#define DNS_OPT_BYTES 11 /* root name, type, class, ttl, rdlen 0 */
#define DNS_MAX_JUMPS 16
#define DNS_COMP_MAX 128 /* names remembered for compression */

const char *shoal_dns_qkind_name(int k)
{
    static const char *const n[] = {"A", "AAAA", "SRV", "other"};
    return k >= 0 && k < SHOAL_DNS_Q_COUNT ? n[k] : "?";
}

const char *shoal_dns_result_name(int r)
{
    static const char *const n[] = {"noerror", "nxdomain",  "formerr", "refused",
                                    "notimp",  "truncated", "dropped"};
    return r >= 0 && r < SHOAL_DNS_R_COUNT ? n[r] : "?";
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Reads the name at *pos (following backward pointers only, so no loop is
 * possible) into q's labels; *pos ends after the name as it sits in place. */
static int parse_name(const uint8_t *in, size_t len, size_t *pos, struct shoal_dns_question *q)
{
    size_t p = *pos, end = 0, wire = 1, lowest = *pos;
    int jumps = 0;

    q->n_labels = 0;
    for (;;) {
        if (p >= len)
            return SHOAL_DNS_R_FORMERR;
        uint8_t b = in[p];
        if ((b & 0xC0) == 0xC0) {
            if (p + 1 >= len || ++jumps > DNS_MAX_JUMPS)
                return SHOAL_DNS_R_FORMERR;
            size_t target = (size_t)((b & 0x3F) << 8 | in[p + 1]);
            if (!end)
                end = p + 2;
            if (target >= lowest) /* forward or self: a loop or garbage */
                return SHOAL_DNS_R_FORMERR;
            p = lowest = target;
            continue;
        }
        if (b & 0xC0) /* 0x40, 0x80: extended label types, not supported */
            return SHOAL_DNS_R_FORMERR;
        if (b == 0) {
            *pos = end ? end : p + 1;
            return SHOAL_DNS_R_NOERROR;
        }
        wire += 1u + b;
        if (wire > 255 || p + 1 + b > len || q->n_labels == SHOAL_DNS_MAX_LABELS)
            return SHOAL_DNS_R_FORMERR;
        q->label_len[q->n_labels] = b;
        memcpy(q->labels[q->n_labels], in + p + 1, b);
        q->labels[q->n_labels][b] = 0;
        q->n_labels++;
        p += 1u + b;
    }
}

int shoal_dns_parse(const uint8_t *in, size_t len, struct shoal_dns_question *q)
{
    memset(q, 0, sizeof(*q));
    if (len < DNS_HEADER)
        return SHOAL_DNS_R_DROPPED;
    q->id = rd16(in);
    q->flags = rd16(in + 2);
    if (q->flags & 0x8000) /* a response: never answer one (no reflection loops) */
        return SHOAL_DNS_R_DROPPED;
    if (((q->flags >> 11) & 0xF) != 0)
        return SHOAL_DNS_R_NOTIMP;
    uint16_t qd = rd16(in + 4), an = rd16(in + 6), ns = rd16(in + 8), ar = rd16(in + 10);
    if (qd != 1 || an != 0 || ns != 0 || ar > 1)
        return SHOAL_DNS_R_FORMERR;
    size_t pos = DNS_HEADER;
    int rc = parse_name(in, len, &pos, q);
    if (rc != SHOAL_DNS_R_NOERROR)
        return rc;
    if (pos + 4 > len)
        return SHOAL_DNS_R_FORMERR;
    q->qtype = rd16(in + pos);
    q->qclass = rd16(in + pos + 2);
    pos += 4;
    if (ar == 1) {
        /* Only an OPT record may follow: root name, type 41 (RFC 6891 6.1.2). */
        if (pos + DNS_OPT_BYTES > len || in[pos] != 0 || rd16(in + pos + 1) != T_OPT)
            return SHOAL_DNS_R_FORMERR;
        uint16_t rdlen = rd16(in + pos + 9);
        if (pos + DNS_OPT_BYTES + rdlen > len)
            return SHOAL_DNS_R_FORMERR;
        q->edns = true;
        q->edns_size = rd16(in + pos + 3);
        q->edns_version = in[pos + 6];
    }
    return SHOAL_DNS_R_NOERROR;
}

/* ---- the reply writer ---- */

struct comp_entry {
    uint16_t off;
    char suffix[256]; /* dotted, as written */
};

struct writer {
    uint8_t *buf;
    size_t cap, len;
    bool full;
    struct comp_entry comp[DNS_COMP_MAX];
    size_t n_comp;
};

static void w_bytes(struct writer *w, const void *p, size_t n)
{
    if (w->full || w->len + n > w->cap) {
        w->full = true;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w_u8(struct writer *w, uint8_t v) { w_bytes(w, &v, 1); }

static void w_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}

static void w_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 4);
}

/* Writes a name given as labels, compressed against names written before
 * (RFC 1035 4.1.4); remembers each new suffix for later names. */
static void w_name(struct writer *w, const char *const *labels, const uint8_t *lens, size_t n)
{
    char suffix[512];
    for (size_t i = 0; i < n; i++) {
        size_t o = 0;
        for (size_t j = i; j < n && o + lens[j] + 2 < sizeof(suffix); j++) {
            memcpy(suffix + o, labels[j], lens[j]);
            o += lens[j];
            suffix[o++] = '.';
        }
        suffix[o] = 0;
        for (size_t k = 0; k < w->n_comp; k++) {
            if (strcasecmp(w->comp[k].suffix, suffix) == 0) {
                w_u16(w, (uint16_t)(0xC000 | w->comp[k].off));
                return;
            }
        }
        if (w->len < 0x3FFF && w->n_comp < DNS_COMP_MAX && o < sizeof(w->comp[0].suffix)) {
            w->comp[w->n_comp].off = (uint16_t)w->len;
            memcpy(w->comp[w->n_comp].suffix, suffix, o + 1);
            w->n_comp++;
        }
        w_u8(w, lens[i]);
        w_bytes(w, labels[i], lens[i]);
    }
    w_u8(w, 0);
}

/* A name from a dotted string ("ns.shoal"); labels of 1..63 bytes. */
static void w_dotted(struct writer *w, const char *s)
{
    const char *labels[SHOAL_DNS_MAX_LABELS];
    uint8_t lens[SHOAL_DNS_MAX_LABELS];
    size_t n = 0;
    while (*s && n < SHOAL_DNS_MAX_LABELS) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l == 0 || l > 63) {
            w->full = true; /* callers only pass checked names */
            return;
        }
        labels[n] = s;
        lens[n++] = (uint8_t)l;
        s += l + (dot ? 1 : 0);
    }
    w_name(w, labels, lens, n);
}

/* A snapshot to undo a record that did not fit. */
struct mark {
    size_t len, n_comp;
};

static struct mark w_mark(const struct writer *w) { return (struct mark){w->len, w->n_comp}; }

/* Did everything since m fit within limit? If not, undo it. */
static bool w_commit(struct writer *w, struct mark m, size_t limit)
{
    if (!w->full && w->len <= limit)
        return true;
    w->len = m.len;
    w->n_comp = m.n_comp;
    w->full = false;
    return false;
}

static void w_rr_head(struct writer *w, const char *const *labels, const uint8_t *lens, size_t n,
                      uint16_t type, uint32_t ttl)
{
    w_name(w, labels, lens, n);
    w_u16(w, type);
    w_u16(w, C_IN);
    w_u32(w, ttl);
}

/* ---- answers ---- */

struct reply {
    struct shoal_dns_responder *r;
    const struct shoal_dns_question *q;
    struct writer w;
    size_t limit;  /* bytes the records may use (OPT reserved) */
    size_t max_an; /* records in the answer section (UDP cap) */
    uint16_t an, ns, ar;
    bool tc;
    int rcode;
    /* the zone's names as labels: [0] "ns"/"hostmaster"/"addr", then the domain */
    const char *dom[SHOAL_DNS_MAX_LABELS];
    uint8_t dom_len[SHOAL_DNS_MAX_LABELS];
    size_t n_dom;
    char dom_text[SHOAL_DNS_DOMAIN_MAX];
};

/* A record's undo point: the writer and the section counts. */
struct rmark {
    struct mark m;
    uint16_t an, ns, ar;
};

static struct rmark r_mark(const struct reply *rp)
{
    return (struct rmark){w_mark(&rp->w), rp->an, rp->ns, rp->ar};
}

static void r_reset(struct reply *rp, struct rmark m)
{
    rp->w.len = m.m.len;
    rp->w.n_comp = m.m.n_comp;
    rp->w.full = false;
    rp->an = m.an;
    rp->ns = m.ns;
    rp->ar = m.ar;
}

/* The domain's labels behind an optional first label (NULL: none) into
 * labels/lens; returns the count. */
static size_t zone_name(const struct reply *rp, const char *first, const char **labels,
                        uint8_t *lens)
{
    size_t n = 0;
    if (first) {
        labels[n] = first;
        lens[n++] = (uint8_t)strlen(first);
    }
    for (size_t i = 0; i < rp->n_dom; i++, n++) {
        labels[n] = rp->dom[i];
        lens[n] = rp->dom_len[i];
    }
    return n;
}

/* Fixes the RDLENGTH written at rdlen_at once the RDATA is complete. */
static void w_rdlen(struct writer *w, size_t rdlen_at)
{
    if (!w->full) {
        size_t rdlen = w->len - rdlen_at - 2;
        w->buf[rdlen_at] = (uint8_t)(rdlen >> 8);
        w->buf[rdlen_at + 1] = (uint8_t)rdlen;
    }
}

static void add_soa(struct reply *rp, bool answer)
{
    const char *l[SHOAL_DNS_MAX_LABELS];
    uint8_t ll[SHOAL_DNS_MAX_LABELS];
    struct mark m = w_mark(&rp->w);
    uint32_t serial = (uint32_t)shoal_registry_index(rp->r->registry, NULL);
    size_t n = zone_name(rp, NULL, l, ll);
    w_rr_head(&rp->w, l, ll, n, T_SOA, rp->r->ttl_s);
    size_t rdlen_at = rp->w.len;
    w_u16(&rp->w, 0);
    n = zone_name(rp, "ns", l, ll);
    w_name(&rp->w, l, ll, n);
    n = zone_name(rp, "hostmaster", l, ll);
    w_name(&rp->w, l, ll, n);
    w_u32(&rp->w, serial);
    w_u32(&rp->w, 3600);         /* refresh */
    w_u32(&rp->w, 600);          /* retry */
    w_u32(&rp->w, 86400);        /* expire */
    w_u32(&rp->w, rp->r->ttl_s); /* negative-caching TTL (RFC 2308): ours */
    w_rdlen(&rp->w, rdlen_at);
    if (w_commit(&rp->w, m, rp->limit)) {
        if (answer)
            rp->an++;
        else
            rp->ns++;
    } else if (answer) {
        rp->tc = true;
    }
    /* An authority SOA that does not fit (a UDP reply is at most 3x a short
     * query) is left out: the negative answer is complete, only not
     * cacheable (RFC 2308 5). */
}

/* An A or AAAA record for ip (4 or 16 bytes) under the given owner name. */
static bool add_addr(struct reply *rp, const char *const *labels, const uint8_t *lens, size_t n,
                     const uint8_t *ip, size_t iplen, bool additional)
{
    struct mark m = w_mark(&rp->w);
    if (!additional && rp->an >= rp->max_an)
        return false;
    w_rr_head(&rp->w, labels, lens, n, iplen == 4 ? T_A : T_AAAA, rp->r->ttl_s);
    w_u16(&rp->w, (uint16_t)iplen);
    w_bytes(&rp->w, ip, iplen);
    if (!w_commit(&rp->w, m, rp->limit))
        return false;
    if (additional)
        rp->ar++;
    else
        rp->an++;
    return true;
}

/* ns.DOMAIN's address: the server's own, else 127.0.0.1. */
static void ns_ip(const struct reply *rp, uint8_t ip[16], size_t *iplen)
{
    const struct shoal_dns_zone *z = &rp->r->zone;
    static const uint8_t lo[4] = {127, 0, 0, 1};
    *iplen = z->ns_iplen == 4 || z->ns_iplen == 16 ? z->ns_iplen : 4;
    memcpy(ip, *iplen == 4 && z->ns_iplen != 4 ? lo : z->ns_ip, *iplen);
}

/* The apex: SOA, NS (with ns.DOMAIN's address as additional data). */
static void answer_apex(struct reply *rp)
{
    uint16_t t = rp->q->qtype;
    if (t == T_NS) {
        const char *l[SHOAL_DNS_MAX_LABELS], *nl[SHOAL_DNS_MAX_LABELS];
        uint8_t ll[SHOAL_DNS_MAX_LABELS], nll[SHOAL_DNS_MAX_LABELS];
        size_t n = zone_name(rp, NULL, l, ll), nn = zone_name(rp, "ns", nl, nll);
        struct mark m = w_mark(&rp->w);
        w_rr_head(&rp->w, l, ll, n, T_NS, rp->r->ttl_s);
        size_t rdlen_at = rp->w.len;
        w_u16(&rp->w, 0);
        w_name(&rp->w, nl, nll, nn);
        w_rdlen(&rp->w, rdlen_at);
        if (!w_commit(&rp->w, m, rp->limit)) {
            rp->tc = true;
            return;
        }
        rp->an++;
        uint8_t ip[16];
        size_t iplen;
        ns_ip(rp, ip, &iplen);
        if (!add_addr(rp, nl, nll, nn, ip, iplen, true))
            rp->tc = true;
        return;
    }
    add_soa(rp, t == T_SOA || t == T_ANY); /* ANY: the SOA alone (RFC 8482) */
}

static void answer_ns(struct reply *rp)
{
    uint16_t t = rp->q->qtype;
    uint8_t ip[16];
    size_t iplen;
    ns_ip(rp, ip, &iplen);
    const char *l[SHOAL_DNS_MAX_LABELS];
    uint8_t ll[SHOAL_DNS_MAX_LABELS];
    size_t n = zone_name(rp, "ns", l, ll);
    bool match = t == T_ANY || (t == T_A && iplen == 4) || (t == T_AAAA && iplen == 16);
    if (match && !add_addr(rp, l, ll, n, ip, iplen, false))
        rp->tc = true;
    else if (!match)
        add_soa(rp, false);
}

/* The question's name, as labels (for answers at it: compressed to 0xC00C). */
static void qname(const struct shoal_dns_question *q, const char **labels, uint8_t *lens)
{
    for (size_t i = 0; i < q->n_labels; i++) {
        labels[i] = q->labels[i];
        lens[i] = q->label_len[i];
    }
}

struct inst_addr {
    const struct shoal_instance *in;
    uint8_t ip[16];
    uint8_t iplen; /* 4, 16, or 0 for a host name */
};

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: small, seedable, good enough to shuffle answers */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A host name usable as an SRV target: dotted labels of [A-Za-z0-9-]. */
static bool host_name_ok(const char *s)
{
    size_t l = 0, total = strlen(s);
    if (total == 0 || total > 253)
        return false;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == 0) {
            if (l == 0 || l > 63)
                return *p == 0 && l == 0 && p > s && p[-1] == '.'; /* trailing dot */
            if (*p == 0)
                return true;
            l = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '-') {
            l++;
        } else {
            return false;
        }
    }
}

/* An instance's SRV target label: its IP then its port in hex, so every
 * endpoint has its own name (a client that maps targets to servers sees
 * each one) and the name resolves without state: 12 or 36 hex digits. */
static void target_label(char *out, const struct inst_addr *a)
{
    for (size_t i = 0; i < a->iplen; i++)
        sprintf(out + 2 * i, "%02x", a->ip[i]);
    sprintf(out + 2 * a->iplen, "%04x", (unsigned)a->in->port);
}

static bool same_ip(const struct inst_addr *a, const struct inst_addr *b)
{
    return a->iplen == b->iplen && memcmp(a->ip, b->ip, a->iplen) == 0;
}

/* Writes the answer for ia[0..n) in that order: address records (identical
 * ones collapsed) or SRV records with their targets' addresses. */
static void emit_service(struct reply *rp, const struct inst_addr *ia, size_t n)
{
    const struct shoal_dns_question *q = rp->q;
    const char *ql[SHOAL_DNS_MAX_LABELS];
    uint8_t qlen[SHOAL_DNS_MAX_LABELS];
    qname(q, ql, qlen);
    bool any = q->qtype == T_ANY;
    bool has4 = false;
    for (size_t i = 0; i < n && !has4; i++)
        has4 = ia[i].iplen == 4;
    /* ANY gets one RRset (RFC 8482 4.2): the addresses, IPv4 if any */
    bool want_a = q->qtype == T_A || (any && has4);
    bool want_aaaa = q->qtype == T_AAAA || (any && !has4);
    size_t answered = 0;

    if (want_a || want_aaaa) {
        for (size_t i = 0; i < n && !rp->tc; i++) {
            if (!((ia[i].iplen == 4 && want_a) || (ia[i].iplen == 16 && want_aaaa)))
                continue;
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = same_ip(&ia[j], &ia[i]);
            if (dup)
                continue;
            if (!add_addr(rp, ql, qlen, q->n_labels, ia[i].ip, ia[i].iplen, false))
                rp->tc = true;
            else
                answered++;
        }
    } else if (q->qtype == T_SRV) {
        const char *tl[SHOAL_DNS_MAX_LABELS];
        uint8_t tlen[SHOAL_DNS_MAX_LABELS];
        char hex[37];
        size_t nt = zone_name(rp, "addr", tl + 1, tlen + 1) + 1;
        tl[0] = hex;
        size_t done = 0;
        for (size_t i = 0; i < n && !rp->tc; i++) {
            struct mark m = w_mark(&rp->w);
            if (ia[i].iplen == 0 && !host_name_ok(ia[i].in->address))
                continue; /* neither an IP nor a DNS name: no usable target */
            if (rp->an >= rp->max_an) {
                rp->tc = true;
                break;
            }
            w_rr_head(&rp->w, ql, qlen, q->n_labels, T_SRV, rp->r->ttl_s);
            size_t rdlen_at = rp->w.len;
            w_u16(&rp->w, 0);
            w_u16(&rp->w, 1); /* priority */
            w_u16(&rp->w, 1); /* weight */
            w_u16(&rp->w, ia[i].in->port);
            if (ia[i].iplen) {
                target_label(hex, &ia[i]);
                tlen[0] = (uint8_t)strlen(hex);
                w_name(&rp->w, tl, tlen, nt);
            } else {
                w_dotted(&rp->w, ia[i].in->address);
            }
            w_rdlen(&rp->w, rdlen_at);
            if (!w_commit(&rp->w, m, rp->limit)) {
                rp->tc = true;
                break;
            }
            rp->an++;
            answered++;
            done = i + 1;
        }
        /* Additional: each answered target's address. One that does not fit
         * sets TC, so a resolver asks again over TCP rather than caching an
         * SRV set whose targets it must look up one by one. */
        for (size_t i = 0; i < done; i++) {
            if (ia[i].iplen == 0)
                continue;
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = same_ip(&ia[j], &ia[i]) && ia[j].in->port == ia[i].in->port;
            if (dup)
                continue;
            target_label(hex, &ia[i]);
            tlen[0] = (uint8_t)strlen(hex);
            if (!add_addr(rp, tl, tlen, nt, ia[i].ip, ia[i].iplen, true)) {
                rp->tc = true;
                break;
            }
        }
    }
    if (answered == 0 && !rp->tc)
        add_soa(rp, false); /* NODATA (RFC 2308 2.2) */
}

static void answer_service(struct reply *rp, const char *service, const char *tag)
{
    static const struct shoal_instance *found[SHOAL_DNS_MAX_ANSWERS];
    static struct inst_addr ia[SHOAL_DNS_MAX_ANSWERS], stable[SHOAL_DNS_MAX_ANSWERS];
    const char *tags[1] = {tag};
    struct shoal_query query = {.service = service, .tags = tags, .n_tags = tag ? 1 : 0};
    size_t n = shoal_registry_query(rp->r->registry, &query, found, SHOAL_DNS_MAX_ANSWERS);

    if (n == 0) {
        rp->rcode = RC_NXDOMAIN;
        add_soa(rp, false);
        return;
    }
    if (n > SHOAL_DNS_MAX_ANSWERS)
        n = SHOAL_DNS_MAX_ANSWERS;
    for (size_t i = 0; i < n; i++) {
        ia[i].in = found[i];
        if (inet_pton(AF_INET, found[i]->address, ia[i].ip) == 1)
            ia[i].iplen = 4;
        else if (inet_pton(AF_INET6, found[i]->address, ia[i].ip) == 1)
            ia[i].iplen = 16;
        else
            ia[i].iplen = 0;
        stable[i] = ia[i]; /* the registry's order: (owner, id) */
    }
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng_next(&rp->r->rng) % i);
        struct inst_addr t = ia[i - 1];
        ia[i - 1] = ia[j];
        ia[j] = t;
    }
    struct rmark m = r_mark(rp);
    emit_service(rp, ia, n);
    if (rp->tc) {
        /* A truncated answer is a stable subset, so a client that uses it
         * does not swap servers in and out on every refresh. */
        r_reset(rp, m);
        rp->tc = false;
        emit_service(rp, stable, n);
        rp->tc = true;
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static bool hex_decode(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* An address record at the question's name, or NODATA for another type. */
static void answer_ip(struct reply *rp, const uint8_t *ip, size_t iplen)
{
    const struct shoal_dns_question *q = rp->q;
    const char *ql[SHOAL_DNS_MAX_LABELS];
    uint8_t qlen[SHOAL_DNS_MAX_LABELS];
    qname(q, ql, qlen);
    bool match =
        q->qtype == T_ANY || (q->qtype == T_A && iplen == 4) || (q->qtype == T_AAAA && iplen == 16);
    if (match && !add_addr(rp, ql, qlen, q->n_labels, ip, iplen, false))
        rp->tc = true;
    else if (!match)
        add_soa(rp, false);
}

/* HEXIP.addr (8 or 32 digits, Consul's form) or HEXIP+PORT (12 or 36). */
static void answer_addr(struct reply *rp, const char *label)
{
    uint8_t ip[16];
    size_t l = strlen(label);
    size_t iplen = l == 8 || l == 12 ? 4 : l == 32 || l == 36 ? 16 : 0;
    uint8_t port[2];
    if (!iplen || !hex_decode(label, iplen, ip) ||
        (l > 2 * iplen && !hex_decode(label + 2 * iplen, 2, port))) {
        rp->rcode = RC_NXDOMAIN;
        add_soa(rp, false);
        return;
    }
    answer_ip(rp, ip, iplen);
}

static void answer_node(struct reply *rp, const char *node)
{
    const struct shoal_dns_zone *z = &rp->r->zone;
    uint8_t ip[16], iplen = 0;
    if (!z->node_addr || !z->node_addr(z->node_ud, node, ip, &iplen) ||
        (iplen != 4 && iplen != 16)) {
        rp->rcode = RC_NXDOMAIN;
        add_soa(rp, false);
        return;
    }
    answer_ip(rp, ip, iplen);
}

/* _tcp.service (any service) or _TAG.service (any passing instance with
 * TAG): an empty non-terminal when names exist below it. */
static bool tag_exists(const struct shoal_registry *reg, const char *tag)
{
    size_t n = shoal_registry_services(reg, NULL, 0);
    if (!*tag || n == 0)
        return n > 0;
    struct shoal_service_summary *v = calloc(n, sizeof(*v));
    bool found = false;
    if (!v)
        return true; /* out of memory: NODATA is the safer wrong answer */
    n = shoal_registry_services(reg, v, n);
    for (size_t i = 0; i < n && !found; i++) {
        const char *tags[1] = {tag};
        struct shoal_query sq = {.service = v[i].name, .tags = tags, .n_tags = 1};
        found = shoal_registry_query(reg, &sq, NULL, 0) > 0;
    }
    free(v);
    return found;
}

static void answer(struct reply *rp)
{
    const struct shoal_dns_question *q = rp->q;
    static struct shoal_dns_name nm;

    if (q->qclass != C_IN && q->qclass != C_ANY) {
        rp->rcode = RC_REFUSED;
        return;
    }
    switch (shoal_dns_name_classify(q, &rp->r->zone, &nm)) {
    case SHOAL_DNS_N_OUTSIDE:
        rp->rcode = RC_REFUSED;
        return;
    case SHOAL_DNS_N_APEX:
        answer_apex(rp);
        return;
    case SHOAL_DNS_N_NS:
        answer_ns(rp);
        return;
    case SHOAL_DNS_N_ENT:
        add_soa(rp, false); /* NODATA */
        return;
    case SHOAL_DNS_N_TAG_ENT:
        if (tag_exists(rp->r->registry, nm.tag)) {
            add_soa(rp, false);
            return;
        }
        break;
    case SHOAL_DNS_N_ADDR:
        answer_addr(rp, nm.label);
        return;
    case SHOAL_DNS_N_NODE:
        answer_node(rp, nm.label);
        return;
    case SHOAL_DNS_N_SERVICE:
        answer_service(rp, nm.service, nm.tag[0] ? nm.tag : NULL);
        return;
    default:
        break;
    }
    rp->rcode = RC_NXDOMAIN;
    add_soa(rp, false);
}

static int qkind(uint16_t t)
{
    return t == T_A      ? SHOAL_DNS_Q_A
           : t == T_AAAA ? SHOAL_DNS_Q_AAAA
           : t == T_SRV  ? SHOAL_DNS_Q_SRV
                         : SHOAL_DNS_Q_OTHER;
}

void shoal_dns_count_drop(struct shoal_dns_responder *r) { r->c.results[SHOAL_DNS_R_DROPPED]++; }

/* Header-only reply (FORMERR, NOTIMP): id and opcode/RD echoed, no question. */
static size_t header_only(const struct shoal_dns_question *q, int rcode, uint8_t *out)
{
    uint16_t flags = (uint16_t)(0x8000 | (q->flags & 0x7900) | rcode);
    memset(out, 0, DNS_HEADER);
    out[0] = (uint8_t)(q->id >> 8);
    out[1] = (uint8_t)q->id;
    out[2] = (uint8_t)(flags >> 8);
    out[3] = (uint8_t)flags;
    return DNS_HEADER;
}

/* The question and the reply's state (with its compression table, ~33 KB)
 * are static: the agent answers on one thread, one query at a time. */
size_t shoal_dns_respond(struct shoal_dns_responder *r, const uint8_t *in, size_t len, bool tcp,
                         uint8_t *out, size_t cap)
{
    static struct shoal_dns_question q;
    static struct reply rp;
    int pr = shoal_dns_parse(in, len, &q);

    if (pr == SHOAL_DNS_R_DROPPED || cap < SHOAL_DNS_UDP_PLAIN) {
        r->c.results[SHOAL_DNS_R_DROPPED]++;
        return 0;
    }
    if (pr == SHOAL_DNS_R_FORMERR || pr == SHOAL_DNS_R_NOTIMP) {
        r->c.results[pr]++;
        return header_only(&q, pr == SHOAL_DNS_R_FORMERR ? RC_FORMERR : RC_NOTIMP, out);
    }
    r->c.queries[qkind(q.qtype)]++;

    memset(&rp, 0, sizeof(rp));
    rp.r = r;
    rp.q = &q;
    rp.w.buf = out;
    rp.w.cap = cap;
    size_t limit = SHOAL_DNS_UDP_PLAIN;
    if (tcp)
        limit = SHOAL_DNS_TCP_MAX;
    else if (q.edns)
        limit = q.edns_size < SHOAL_DNS_UDP_PLAIN ? SHOAL_DNS_UDP_PLAIN
                : q.edns_size > SHOAL_DNS_UDP_MAX ? SHOAL_DNS_UDP_MAX
                                                  : q.edns_size;
    /* No amplification: a UDP reply is never more than 3x the query (what
     * does not fit is cut with TC; the client asks again over TCP). */
    if (!tcp && limit > 3 * len)
        limit = 3 * len;
    if (limit > cap)
        limit = cap;
    rp.limit = limit - (q.edns ? DNS_OPT_BYTES : 0);
    rp.max_an = !tcp && r->zone.udp_answer_limit ? r->zone.udp_answer_limit : SIZE_MAX;
    snprintf(rp.dom_text, sizeof(rp.dom_text), "%s", shoal_dns_zone_domain(&r->zone));
    for (char *p = rp.dom_text, *dot; p && rp.n_dom < SHOAL_DNS_MAX_LABELS;
         p = dot ? dot + 1 : NULL) {
        dot = strchr(p, '.');
        if (dot)
            *dot = 0;
        rp.dom[rp.n_dom] = p;
        rp.dom_len[rp.n_dom++] = (uint8_t)strlen(p);
    }

    /* Header (counts and flags filled at the end), then the question. */
    rp.w.len = DNS_HEADER;
    const char *ql[SHOAL_DNS_MAX_LABELS];
    uint8_t qlen[SHOAL_DNS_MAX_LABELS];
    qname(&q, ql, qlen);
    w_name(&rp.w, ql, qlen, q.n_labels);
    w_u16(&rp.w, q.qtype);
    w_u16(&rp.w, q.qclass);
    if (rp.w.full || rp.w.len > rp.limit) { /* cannot happen: names are <= 255 */
        r->c.results[SHOAL_DNS_R_DROPPED]++;
        return 0;
    }

    bool badvers = q.edns && q.edns_version != 0;
    if (!badvers)
        answer(&rp);
    if (q.edns) {
        /* OPT (RFC 6891 6.1.3): our UDP size; BADVERS (16) is extended rcode 1. */
        rp.w.full = false;
        w_u8(&rp.w, 0);
        w_u16(&rp.w, T_OPT);
        w_u16(&rp.w, SHOAL_DNS_UDP_MAX);
        w_u32(&rp.w, badvers ? 0x01000000u : 0);
        w_u16(&rp.w, 0);
        rp.ar++;
    }
    uint16_t flags = (uint16_t)(0x8000 | 0x0400 /* AA */ | (q.flags & 0x0100) /* RD */ |
                                (rp.tc ? 0x0200 : 0) | (rp.rcode & 0xF));
    out[0] = (uint8_t)(q.id >> 8);
    out[1] = (uint8_t)q.id;
    out[2] = (uint8_t)(flags >> 8);
    out[3] = (uint8_t)flags;
    uint16_t counts[4] = {1, rp.an, rp.ns, rp.ar};
    for (int i = 0; i < 4; i++) {
        out[4 + 2 * i] = (uint8_t)(counts[i] >> 8);
        out[5 + 2 * i] = (uint8_t)counts[i];
    }

    int res = badvers                   ? SHOAL_DNS_R_FORMERR
              : rp.rcode == RC_REFUSED  ? SHOAL_DNS_R_REFUSED
              : rp.rcode == RC_NXDOMAIN ? SHOAL_DNS_R_NXDOMAIN
              : rp.tc                   ? SHOAL_DNS_R_TRUNCATED
                                        : SHOAL_DNS_R_NOERROR;
    r->c.results[res]++;
    return rp.w.len;
}

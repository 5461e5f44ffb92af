/* test_dns.c -- the DNS interface: io/dnswire.c against crafted packets and
 * io/dns.c on real libev with real UDP and TCP sockets.
 *
 * Queries are built byte by byte here (not with the code under test) and
 * replies are decoded by a small independent reader. Covered: answers of
 * each type at each name form, tag filters, NXDOMAIN with SOA, REFUSED,
 * malformed packets (short headers, qdcount 0/2, pointer loops, bad label
 * types, long names, bad OPT records), EDNS0 sizes and truncation, the
 * shuffle's uniformity, a random-packet storm, dead owners and critical
 * instances left out, and the TCP framing and connection cap.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "core/registry.h"
#include "io/dns.h"
#include "io/dnswire.h"
#include "test.h"

TEST_MAIN()

/* ------------------------------------------------------------ registry */

static void noop_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m) {}

static size_t no_peers(void *ud, size_t k, struct shoal_addr *out) { return 0; }

static struct shoal_registry *mkreg(void)
{
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "self");
    c.generation = 1;
    c.send = noop_send;
    c.peers = no_peers;
    c.sync_interval_ms = 0;
    struct shoal_registry *r = shoal_registry_new(&c, NULL);
    CHECK(r);
    return r;
}

static void reg(struct shoal_registry *r, const char *id, const char *svc, const char *addr,
                uint16_t port, const char *tag, uint32_t ttl_ms)
{
    char *tags[1] = {(char *)tag};
    struct shoal_instance in = {.id = (char *)id,
                                .service = (char *)svc,
                                .address = (char *)addr,
                                .port = port,
                                .n_tags = tag ? 1 : 0,
                                .tags = tag ? tags : NULL,
                                .ttl_ms = ttl_ms};
    const char *why = NULL;
    int rc = shoal_registry_register(r, 1, 1000, &in, &why);
    CHECKF(rc == 0, "register %s: %s", id, why ? why : "?");
}

/* ------------------------------------------------------------ queries */

/* A query for a dotted name; edns: 0 none, else the advertised size. */
static size_t mkquery(uint8_t *b, uint16_t id, const char *name, uint16_t qtype, uint16_t edns)
{
    size_t n = 0;
    uint8_t h[12] = {(uint8_t)(id >> 8), (uint8_t)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0,
                     edns ? 1 : 0};
    memcpy(b, h, 12);
    n = 12;
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        b[n++] = (uint8_t)l;
        memcpy(b + n, name, l);
        n += l;
        name += l + (dot ? 1 : 0);
    }
    b[n++] = 0;
    b[n++] = (uint8_t)(qtype >> 8);
    b[n++] = (uint8_t)qtype;
    b[n++] = 0;
    b[n++] = 1;
    if (edns) {
        uint8_t opt[11] = {0, 0, 41, (uint8_t)(edns >> 8), (uint8_t)edns, 0, 0, 0, 0, 0, 0};
        memcpy(b + n, opt, 11);
        n += 11;
    }
    return n;
}

/* ------------------------------------------------------------ reply reader */

struct rr {
    uint16_t type;
    char name[256];
    uint8_t rdata[512];
    uint16_t rdlen;
    char target[256]; /* SRV */
    uint16_t port;
};

struct reply {
    uint16_t id, flags, qd, an, ns, ar;
    struct rr rr[4][300]; /* 0 unused, 1 answer, 2 authority, 3 additional */
    size_t n[4];
};

/* Independent name reader: follows any pointer, at most 64 jumps. */
static size_t rd_name(const uint8_t *p, size_t len, size_t pos, char *out)
{
    size_t end = 0, o = 0;
    for (int jumps = 0; jumps < 64;) {
        CHECK(pos < len);
        uint8_t l = p[pos];
        if ((l & 0xC0) == 0xC0) {
            CHECK(pos + 1 < len);
            if (!end)
                end = pos + 2;
            pos = (size_t)((l & 0x3F) << 8 | p[pos + 1]);
            jumps++;
            continue;
        }
        if (l == 0) {
            out[o] = 0;
            return end ? end : pos + 1;
        }
        CHECK(pos + 1 + l <= len && o + l + 1 < 256);
        memcpy(out + o, p + pos + 1, l);
        o += l;
        out[o++] = '.';
        pos += 1u + l;
    }
    CHECK(!"pointer loop in a reply");
    return 0;
}

static struct reply *decode(const uint8_t *p, size_t len)
{
    static struct reply r;
    memset(&r, 0, sizeof(r));
    CHECK(len >= 12);
    r.id = (uint16_t)(p[0] << 8 | p[1]);
    r.flags = (uint16_t)(p[2] << 8 | p[3]);
    r.qd = (uint16_t)(p[4] << 8 | p[5]);
    r.an = (uint16_t)(p[6] << 8 | p[7]);
    r.ns = (uint16_t)(p[8] << 8 | p[9]);
    r.ar = (uint16_t)(p[10] << 8 | p[11]);
    size_t pos = 12;
    char name[256];
    for (int i = 0; i < r.qd; i++) {
        pos = rd_name(p, len, pos, name);
        pos += 4;
    }
    uint16_t counts[4] = {0, r.an, r.ns, r.ar};
    for (int s = 1; s < 4; s++) {
        for (int i = 0; i < counts[s]; i++) {
            CHECK(r.n[s] < 300);
            struct rr *x = &r.rr[s][r.n[s]++];
            pos = rd_name(p, len, pos, x->name);
            CHECK(pos + 10 <= len);
            x->type = (uint16_t)(p[pos] << 8 | p[pos + 1]);
            x->rdlen = (uint16_t)(p[pos + 8] << 8 | p[pos + 9]);
            pos += 10;
            CHECK(pos + x->rdlen <= len && x->rdlen <= sizeof(x->rdata));
            memcpy(x->rdata, p + pos, x->rdlen);
            if (x->type == 33) {
                x->port = (uint16_t)(p[pos + 4] << 8 | p[pos + 5]);
                rd_name(p, len, pos + 6, x->target);
            }
            pos += x->rdlen;
        }
    }
    CHECK_EQ(pos, len); /* nothing left over, nothing missing */
    return &r;
}

#define RCODE(r) ((r)->flags & 0xF)
#define TC(r) (((r)->flags & 0x0200) != 0)

static uint8_t out[SHOAL_DNS_TCP_MAX];

static struct reply *ask(struct shoal_dns_responder *d, const char *name, uint16_t qtype,
                         uint16_t edns, bool tcp, size_t *len_out)
{
    uint8_t q[600];
    size_t ql = mkquery(q, 0x1234, name, qtype, edns);
    size_t n = shoal_dns_respond(d, q, ql, tcp, out, sizeof(out));
    CHECK(n > 0);
    if (len_out)
        *len_out = n;
    struct reply *r = decode(out, n);
    CHECK_EQ(r->id, 0x1234);
    CHECK(r->flags & 0x8000);
    return r;
}

static bool has_a(const struct reply *r, int sec, const char *ip)
{
    uint8_t b[16];
    int fam = strchr(ip, ':') ? AF_INET6 : AF_INET;
    CHECK(inet_pton(fam, ip, b) == 1);
    for (size_t i = 0; i < r->n[sec]; i++)
        if (r->rr[sec][i].type == (fam == AF_INET ? 1 : 28) &&
            memcmp(r->rr[sec][i].rdata, b, fam == AF_INET ? 4 : 16) == 0)
            return true;
    return false;
}

static void setup(struct shoal_dns_responder *d, struct shoal_registry **rp)
{
    struct shoal_registry *r = mkreg();
    reg(r, "w1", "web", "127.0.0.1", 8001, "blue", 0);
    reg(r, "w2", "web", "127.0.0.2", 8002, "green", 0);
    reg(r, "w6", "web", "::1", 8006, "blue", 0);
    reg(r, "h1", "web", "backend.example", 8009, NULL, 0);
    reg(r, "t1", "ttl", "127.0.0.9", 9000, NULL, 5000); /* TTL: starts critical */
    memset(d, 0, sizeof(*d));
    d->registry = r;
    d->rng = 42;
    *rp = r;
}

/* ------------------------------------------------------------ answers */

TEST(a_records, "A at NAME.service.shoal: passing IPv4 instances, host names skipped")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    struct reply *x = ask(&d, "web.service.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 0);
    CHECK(x->flags & 0x0400); /* AA */
    CHECK_EQ(x->an, 2);
    CHECK(has_a(x, 1, "127.0.0.1") && has_a(x, 1, "127.0.0.2"));
    CHECK(strcmp(x->rr[1][0].name, "web.service.shoal.") == 0);
    x = ask(&d, "WEB.Service.SHOAL", 1, 0, false, NULL); /* case-insensitive */
    CHECK_EQ(x->an, 2);
    CHECK_EQ(d.c.queries[SHOAL_DNS_Q_A], 2);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_NOERROR], 2);
    shoal_registry_free(r);
}

TEST(aaaa_records, "AAAA answers the IPv6 instance only")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    struct reply *x = ask(&d, "web.service.shoal", 28, 0, false, NULL);
    CHECK_EQ(x->an, 1);
    CHECK(has_a(x, 1, "::1"));
    CHECK_EQ(d.c.queries[SHOAL_DNS_Q_AAAA], 1);
    shoal_registry_free(r);
}

TEST(srv_both_names, "SRV at NAME.service and _NAME._tcp.service: port, addr.shoal target, glue")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    const char *names[] = {"web.service.shoal", "_web._tcp.service.shoal"};
    for (int k = 0; k < 2; k++) {
        struct reply *x = ask(&d, names[k], 33, 0, true, NULL);
        CHECK_EQ(RCODE(x), 0);
        CHECK_EQ(x->an, 4);
        bool seen1 = false, seen6 = false, seenh = false;
        for (size_t i = 0; i < x->n[1]; i++) {
            struct rr *s = &x->rr[1][i];
            CHECK_EQ(s->type, 33);
            CHECK(s->rdata[0] == 0 && s->rdata[1] == 1 && s->rdata[2] == 0 && s->rdata[3] == 1);
            if (s->port == 8001)
                seen1 = strcmp(s->target, "7f0000011f41.addr.shoal.") == 0; /* IP, port */
            if (s->port == 8006)
                seen6 =
                    strcmp(s->target, "000000000000000000000000000000011f46.addr.shoal.") == 0;
            if (s->port == 8009)
                seenh = strcmp(s->target, "backend.example.") == 0;
        }
        CHECK(seen1 && seen6 && seenh);
        CHECK_EQ(x->ar, 3); /* 127.0.0.1, 127.0.0.2, ::1 */
        CHECK(has_a(x, 3, "127.0.0.1") && has_a(x, 3, "::1"));
    }
    /* the targets resolve too */
    struct reply *x = ask(&d, "7f000002.addr.shoal", 1, 0, false, NULL);
    CHECK(x->an == 1 && has_a(x, 1, "127.0.0.2"));
    x = ask(&d, "7f0000021f42.addr.shoal", 1, 0, false, NULL);
    CHECK(x->an == 1 && has_a(x, 1, "127.0.0.2"));
    x = ask(&d, "7f00000g.addr.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    CHECK_EQ(d.c.queries[SHOAL_DNS_Q_SRV], 2);
    shoal_registry_free(r);
}

TEST(tag_filter, "TAG.NAME.service and _NAME._TAG.service filter by tag")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    struct reply *x = ask(&d, "green.web.service.shoal", 1, 0, false, NULL);
    CHECK(x->an == 1 && has_a(x, 1, "127.0.0.2"));
    x = ask(&d, "_web._blue.service.shoal", 33, 0, true, NULL);
    CHECK_EQ(x->an, 2);
    x = ask(&d, "red.web.service.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    shoal_registry_free(r);
}

TEST(nxdomain_soa, "unknown name: NXDOMAIN with the zone's SOA in authority")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    const char *names[] = {"nope.service.shoal", "a.b.c.service.shoal", "x.shoal",
                           "ttl.service.shoal"};
    for (int i = 0; i < 4; i++) {
        struct reply *x = ask(&d, names[i], 1, 0, false, NULL);
        CHECKF(RCODE(x) == 3, "%s", names[i]);
        CHECK_EQ(x->an, 0);
        CHECK_EQ(x->ns, 1);
        CHECK(x->rr[2][0].type == 6 && strcmp(x->rr[2][0].name, "shoal.") == 0);
    }
    CHECK_EQ(d.c.results[SHOAL_DNS_R_NXDOMAIN], 4);
    /* NODATA: the name exists, no record of the type */
    struct reply *x = ask(&d, "green.web.service.shoal", 28, 0, false, NULL);
    CHECK(RCODE(x) == 0 && x->an == 0 && x->ns == 1);
    x = ask(&d, "shoal", 6, 1232, false, NULL);
    CHECK(RCODE(x) == 0 && x->an == 1 && x->rr[1][0].type == 6);
    shoal_registry_free(r);
}

TEST(refused, "outside the zone or not class IN: REFUSED, nothing answered")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    struct reply *x = ask(&d, "example.com", 1, 0, false, NULL);
    CHECK(RCODE(x) == 5 && x->an == 0 && x->ns == 0);
    x = ask(&d, "", 2, 0, false, NULL); /* the root */
    CHECK_EQ(RCODE(x), 5);
    uint8_t q[100];
    size_t n = mkquery(q, 7, "web.service.shoal", 1, 0);
    q[n - 1] = 3; /* class CH */
    x = decode(out, shoal_dns_respond(&d, q, n, false, out, sizeof(out)));
    CHECK_EQ(RCODE(x), 5);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_REFUSED], 3);
    shoal_registry_free(r);
}

TEST(dead_owner_and_critical, "a dead owner's and a critical instance are not answered")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    /* n9's instance arrives by gossip */
    char *id = "x1", *svc = "web", *addr = "127.0.0.99";
    struct shoal_instance ev = {
        .id = id, .service = svc, .address = addr, .port = 1, .generation = 1, .version = 1};
    snprintf(ev.owner, sizeof(ev.owner), "n9");
    shoal_registry_owner_status(r, 1, "n9", SHOAL_ALIVE, 1);
    struct shoal_reg_msg m = {.type = SHOAL_REG_GOSSIP, .n_events = 1, .events = &ev};
    snprintf(m.from, sizeof(m.from), "n9");
    struct shoal_reg_peer src = {.addr = {.family = 4, .ip = {127, 0, 0, 9}, .port = 9}};
    shoal_registry_recv(r, 2, &src, &m);
    struct reply *x = ask(&d, "web.service.shoal", 1, 0, false, NULL);
    CHECK(x->an == 3 && has_a(x, 1, "127.0.0.99"));
    shoal_registry_owner_status(r, 3, "n9", SHOAL_DEAD, 1);
    x = ask(&d, "web.service.shoal", 1, 0, false, NULL);
    CHECK(x->an == 2 && !has_a(x, 1, "127.0.0.99"));
    /* t1 is critical (TTL never heartbeated); a heartbeat brings it in */
    x = ask(&d, "ttl.service.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    CHECK(shoal_registry_heartbeat(r, 4, 2000, "t1") == 0);
    x = ask(&d, "ttl.service.shoal", 1, 0, false, NULL);
    CHECK(RCODE(x) == 0 && has_a(x, 1, "127.0.0.9"));
    shoal_registry_free(r);
}

/* ------------------------------------------------------------ malformed */

static size_t respond_raw(struct shoal_dns_responder *d, const uint8_t *q, size_t n)
{
    return shoal_dns_respond(d, q, n, false, out, sizeof(out));
}

TEST(short_headers, "a header shorter than 12 bytes is dropped and counted")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 1};
    uint8_t q[100];
    size_t n = mkquery(q, 1, "web.service.shoal", 1, 0);
    (void)n;
    for (size_t l = 0; l < 12; l++)
        CHECK_EQ(respond_raw(&d, q, l), 0);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_DROPPED], 12);
    q[2] |= 0x80; /* a response: never answered */
    CHECK_EQ(respond_raw(&d, q, n), 0);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_DROPPED], 13);
}

static uint64_t formerr_expected;

static void expect_formerr(struct shoal_dns_responder *d, const uint8_t *q, size_t n,
                           const char *what)
{
    formerr_expected++;
    size_t l = respond_raw(d, q, n);
    CHECKF(l == 12, "%s: reply of %zu bytes", what, l);
    struct reply *x = decode(out, l);
    CHECKF(RCODE(x) == 1 && x->qd == 0 && x->id == (uint16_t)(q[0] << 8 | q[1]), "%s", what);
}

TEST(formerr_cases, "qdcount 0/2, truncated question, pointer loops, bad labels, bad OPT: FORMERR")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 1};
    uint8_t q[700];
    size_t n = mkquery(q, 0xBEEF, "web.service.shoal", 1, 0);
    uint64_t before;

    q[5] = 0;
    expect_formerr(&d, q, n, "qdcount 0");
    q[5] = 2;
    expect_formerr(&d, q, n, "qdcount 2");
    q[5] = 1;
    q[7] = 1;
    expect_formerr(&d, q, n, "ancount 1");
    q[7] = 0;
    for (size_t l = 12; l < n; l++)
        expect_formerr(&d, q, l, "question cut short");

    /* web, then a pointer to itself (offset 12): a loop */
    uint8_t loop[] = {0xBE, 0xEF, 1,   0,   0,   1,    0,  0, 0, 0, 0,
                      0,    3,    'w', 'e', 'b', 0xC0, 12, 0, 1, 0, 1};
    expect_formerr(&d, loop, sizeof(loop), "pointer loop");
    /* a pointer forward, to a later pointer back to it */
    uint8_t fwd[] = {0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 14, 0xC0, 12, 0, 1, 0, 1};
    expect_formerr(&d, fwd, sizeof(fwd), "forward pointer");
    uint8_t outside[] = {0xBE, 0xEF, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 1, 0, 1};
    expect_formerr(&d, outside, sizeof(outside), "pointer past the end");
    /* 0x40 is an extended label type ("label of 64"): not a label */
    uint8_t lab64[12 + 66 + 4] = {0xBE, 0xEF, 1, 0, 0, 1};
    lab64[12] = 64;
    memset(lab64 + 13, 'a', 64);
    expect_formerr(&d, lab64, sizeof(lab64), "label of 64");
    /* a name over 255 bytes: 5 labels of 63 */
    uint8_t longn[12 + 5 * 64 + 1 + 4] = {0xBE, 0xEF, 1, 0, 0, 1};
    for (int i = 0; i < 5; i++) {
        longn[12 + 64 * i] = 63;
        memset(longn + 13 + 64 * i, 'a', 63);
    }
    longn[12 + 320] = 0;
    longn[12 + 322] = 1;
    longn[12 + 324] = 1;
    expect_formerr(&d, longn, sizeof(longn), "name over 255 bytes");

    /* OPT with rdlen past the end; a non-OPT additional record */
    n = mkquery(q, 0xBEEF, "web.service.shoal", 1, 1232);
    q[n - 1] = 9;
    expect_formerr(&d, q, n, "OPT rdlen past the end");
    n = mkquery(q, 0xBEEF, "web.service.shoal", 1, 1232);
    q[n - 9] = 250; /* type TSIG */
    expect_formerr(&d, q, n, "additional record not OPT");
    CHECK_EQ(d.c.results[SHOAL_DNS_R_FORMERR], formerr_expected);
    CHECK(formerr_expected > 30);

    /* EDNS version 1: BADVERS (extended rcode 1, rcode 0) in the OPT */
    before = d.c.results[SHOAL_DNS_R_FORMERR];
    n = mkquery(q, 0xBEEF, "web.service.shoal", 1, 1232);
    q[n - 5] = 1;
    struct reply *x = decode(out, respond_raw(&d, q, n));
    CHECK(x->ar == 1 && x->rr[3][0].type == 41 && x->an == 0);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_FORMERR], before + 1);

    /* opcode STATUS (2): NOTIMP */
    n = mkquery(q, 0xBEEF, "web.service.shoal", 1, 0);
    q[2] = 0x10;
    x = decode(out, respond_raw(&d, q, n));
    CHECK_EQ(RCODE(x), 4);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_NOTIMP], 1);
}

TEST(edns_echo, "an EDNS0 query gets an OPT record with our size; a plain one none")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    struct reply *x = ask(&d, "web.service.shoal", 1, 4096, false, NULL);
    CHECK_EQ(x->ar, 1);
    struct rr *opt = &x->rr[3][0];
    CHECK(opt->type == 41 && opt->name[0] == 0);
    x = ask(&d, "web.service.shoal", 1, 0, false, NULL);
    CHECK_EQ(x->ar, 0);
    shoal_registry_free(r);
}

/* ------------------------------------------------------------ truncation */

TEST(truncation, "60 instances: UDP sets TC within 3x the query, a stable subset; TCP has all")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 7};
    struct shoal_registry *r = (struct shoal_registry *)d.registry;
    for (int i = 0; i < 60; i++) {
        char id[16], ip[16];
        snprintf(id, sizeof(id), "b%02d", i);
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        reg(r, id, "big", ip, 9000, NULL, 0);
    }
    uint8_t q[600];
    size_t len, ql = mkquery(q, 1, "big.service.shoal", 1, 0);
    struct reply *x = ask(&d, "big.service.shoal", 1, 0, false, &len);
    CHECK(TC(x) && len <= 3 * ql && x->an > 0 && x->an < 60);
    CHECK(len + 16 > 3 * ql); /* as many as fit: one more would not */
    /* truncated sets come in (owner, id) order, the same every time */
    for (size_t i = 0; i < x->n[1]; i++)
        CHECK_EQ(x->rr[1][i].rdata[3], i + 1);
    x = ask(&d, "big.service.shoal", 1, 0, false, &len);
    for (size_t i = 0; i < x->n[1]; i++)
        CHECK_EQ(x->rr[1][i].rdata[3], i + 1);
    /* EDNS: the advertised size applies below 3x the query */
    x = ask(&d, "big.service.shoal", 33, 4096, false, &len);
    CHECK(TC(x) && x->rr[3][x->n[3] - 1].type == 41);
    x = ask(&d, "big.service.shoal", 33, 0, true, &len);
    CHECK(!TC(x) && x->an == 60 && x->ar == 60);
    /* compression: every SRV owner is a 2-byte pointer, so 60 SRVs + glue fit in ~3 KB */
    CHECK(len < 3200);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_TRUNCATED], 3);
    CHECK_EQ(d.c.results[SHOAL_DNS_R_NOERROR], 1);
    shoal_registry_free(r);
}

TEST(udp_answer_limit, "the UDP answer cap: 3 records and TC; TCP is not capped")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 3};
    struct shoal_registry *r = (struct shoal_registry *)d.registry;
    d.zone.udp_answer_limit = 3;
    for (int i = 0; i < 5; i++) {
        char id[8], ip[16];
        snprintf(id, sizeof(id), "c%d", i);
        snprintf(ip, sizeof(ip), "10.2.0.%d", i + 1);
        reg(r, id, "c", ip, 80, NULL, 0);
    }
    struct reply *x = ask(&d, "c.service.shoal", 1, 1232, false, NULL);
    CHECK(TC(x) && x->an == 3);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ(x->rr[1][i].rdata[3], i + 1); /* a stable subset */
    x = ask(&d, "c.service.shoal", 1, 1232, true, NULL);
    CHECK(!TC(x) && x->an == 5);
    /* three or fewer: no TC */
    reg(r, "d0", "d", "10.3.0.1", 80, NULL, 0);
    x = ask(&d, "d.service.shoal", 1, 1232, false, NULL);
    CHECK(!TC(x) && x->an == 1);
    shoal_registry_free(r);
}

TEST(amplification, "ANY and SRV over UDP: at most 3x the query; ANY is one RRset (RFC 8482)")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 5};
    struct shoal_registry *r = (struct shoal_registry *)d.registry;
    d.zone.udp_answer_limit = 3;
    for (int i = 0; i < 60; i++) {
        char id[8], ip[40];
        snprintf(id, sizeof(id), "a%d", i);
        snprintf(ip, sizeof(ip), i % 2 ? "10.4.0.%d" : "fd00::%d", i + 1);
        reg(r, id, "amp", ip, 443, NULL, 0);
    }
    const char *names[] = {"amp.service.shoal", "_amp._tcp.service.shoal"};
    uint16_t types[] = {255, 33};
    uint16_t sizes[] = {0, 512, 1232, 4096};
    for (int k = 0; k < 2; k++) {
        for (int t = 0; t < 2; t++) {
            for (int s = 0; s < 4; s++) {
                uint8_t q[600];
                size_t ql = mkquery(q, 9, names[k], types[t], sizes[s]);
                size_t n = shoal_dns_respond(&d, q, ql, false, out, sizeof(out));
                CHECKF(n > 0 && n <= 3 * ql, "%s type %u edns %u: %zu > 3 x %zu", names[k],
                       types[t], sizes[s], n, ql);
                struct reply *x = decode(out, n);
                for (size_t i = 0; i < x->n[1]; i++)
                    CHECK(x->rr[1][i].type == (types[t] == 255 ? 1 : 33));
            }
        }
    }
    shoal_registry_free(r);
}

TEST(srv_targets, "one SRV target per instance; identical A records collapsed; glue sets TC")
{
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = 11};
    struct shoal_registry *r = (struct shoal_registry *)d.registry;
    reg(r, "s1", "same", "127.0.0.1", 8001, NULL, 0);
    reg(r, "s2", "same", "127.0.0.1", 8002, NULL, 0);
    reg(r, "s3", "same", "127.0.0.1", 8003, NULL, 0);
    struct reply *x = ask(&d, "same.service.shoal", 1, 1232, false, NULL);
    CHECK(!TC(x) && x->an == 1 && has_a(x, 1, "127.0.0.1"));
    x = ask(&d, "same.service.shoal", 33, 0, true, NULL);
    CHECK(x->an == 3 && x->ar == 3);
    CHECK(strcmp(x->rr[1][0].target, x->rr[1][1].target) != 0 &&
          strcmp(x->rr[1][1].target, x->rr[1][2].target) != 0 &&
          strcmp(x->rr[1][0].target, x->rr[1][2].target) != 0);
    for (size_t i = 0; i < 3; i++) {
        bool glued = false;
        for (size_t k = 0; k < x->n[3]; k++)
            glued |= strcmp(x->rr[3][k].name, x->rr[1][i].target) == 0;
        CHECKF(glued, "no glue for %s", x->rr[1][i].target);
    }
    /* EDNS 512 with 3 SRVs whose glue does not fit: TC, not a silent drop */
    for (int i = 0; i < 20; i++) {
        char id[8], ip[16];
        snprintf(id, sizeof(id), "g%d", i);
        snprintf(ip, sizeof(ip), "10.5.0.%d", i + 1);
        reg(r, id, "glue", ip, 80, NULL, 0);
    }
    size_t len;
    x = ask(&d, "_glue._tcp.service.shoal", 33, 512, false, &len);
    CHECK(TC(x));
    shoal_registry_free(r);
}

static bool fake_node(void *ud, const char *name, uint8_t ip[16], uint8_t *iplen)
{
    if (strcmp(name, "n1") != 0)
        return false;
    static const uint8_t a[4] = {192, 0, 2, 7};
    memcpy(ip, a, 4);
    *iplen = 4;
    return true;
}

TEST(zone_shape, "NS and its address at the apex, empty non-terminals NODATA, nodes, domain, DC")
{
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    d.zone.node_addr = fake_node;
    struct reply *x = ask(&d, "shoal", 2, 1232, false, NULL);
    CHECK(RCODE(x) == 0 && x->an == 1 && x->rr[1][0].type == 2 && has_a(x, 3, "127.0.0.1"));
    CHECK(strcmp(x->rr[3][0].name, "ns.shoal.") == 0);
    x = ask(&d, "ns.shoal", 1, 0, false, NULL);
    CHECK(RCODE(x) == 0 && x->an == 1 && has_a(x, 1, "127.0.0.1"));
    const char *ents[] = {"_tcp.service.shoal", "service.shoal", "node.shoal", "addr.shoal",
                          "dc1.shoal", "service.dc1.shoal", "_blue.service.shoal"};
    for (int i = 0; i < 7; i++) {
        x = ask(&d, ents[i], 1, 1232, false, NULL);
        CHECKF(RCODE(x) == 0 && x->an == 0 && x->ns == 1, "%s: rcode %d", ents[i], RCODE(x));
    }
    x = ask(&d, "_purple.service.shoal", 1, 1232, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    x = ask(&d, "n1.node.shoal", 1, 0, false, NULL);
    CHECK(x->an == 1 && has_a(x, 1, "192.0.2.7"));
    x = ask(&d, "n1.node.dc1.shoal", 1, 0, false, NULL);
    CHECK(x->an == 1 && has_a(x, 1, "192.0.2.7"));
    x = ask(&d, "n9.node.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    x = ask(&d, "web.service.dc1.shoal", 1, 0, false, NULL);
    CHECK_EQ(x->an, 2);
    x = ask(&d, "web.service.dc2.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 3);
    /* another domain, two labels */
    snprintf(d.zone.domain, sizeof(d.zone.domain), "consul.example");
    x = ask(&d, "web.service.consul.example", 1, 0, false, NULL);
    CHECK(RCODE(x) == 0 && x->an == 2);
    x = ask(&d, "web.service.shoal", 1, 0, false, NULL);
    CHECK_EQ(RCODE(x), 5);
    x = ask(&d, "consul.example", 6, 1232, false, NULL);
    CHECK(x->an == 1 && strcmp(x->rr[1][0].name, "consul.example.") == 0);
    char dom[SHOAL_DNS_DOMAIN_MAX];
    CHECK(shoal_dns_domain_parse("Consul.", dom) == NULL && strcmp(dom, "consul") == 0);
    CHECK(shoal_dns_domain_parse("a..b", dom) != NULL);
    CHECK(shoal_dns_domain_parse("a_b", dom) != NULL);
    CHECK(shoal_dns_domain_parse("", dom) != NULL);
    shoal_registry_free(r);
}

/* ------------------------------------------------------------ shuffle */

TEST(shuffle_uniform, "each instance comes first about equally often (chi-square, seeded)")
{
    uint64_t seed;
    TEST_SEED(seed, 0x5eed);
    struct shoal_dns_responder d = {.registry = mkreg(), .rng = seed};
    struct shoal_registry *r = (struct shoal_registry *)d.registry;
    for (int i = 0; i < 5; i++) {
        char id[8], ip[16];
        snprintf(id, sizeof(id), "s%d", i);
        snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
        reg(r, id, "s", ip, 1, NULL, 0);
    }
    int first[5] = {0}, N = 5000;
    for (int k = 0; k < N; k++) { /* TCP: 5 records are over 3x the query for UDP */
        struct reply *x = ask(&d, "s.service.shoal", 1, 0, true, NULL);
        CHECK_EQ(x->an, 5);
        first[x->rr[1][0].rdata[3] - 1]++;
    }
    double chi = 0, e = N / 5.0;
    for (int i = 0; i < 5; i++)
        chi += (first[i] - e) * (first[i] - e) / e;
    /* 4 degrees of freedom: P(chi2 > 18.47) = 0.001 */
    CHECKF(chi < 18.47, "chi2 %.2f: %d %d %d %d %d", chi, first[0], first[1], first[2], first[3],
           first[4]);
    /* and not a fixed order: the sorted (owner, id) order is not always first */
    CHECK(first[0] < N);
    shoal_registry_free(r);
}

/* ------------------------------------------------------------ storm */

TEST(random_packets, "100k random and mutated packets: no crash, every one counted once")
{
    uint64_t seed;
    TEST_SEED(seed, 0xF00D);
    struct shoal_dns_responder d;
    struct shoal_registry *r;
    setup(&d, &r);
    uint64_t s = seed;
    uint8_t q[600];
    int N = 100000;
    for (int k = 0; k < N; k++) {
        size_t n;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        if (k % 2) {
            n = (s >> 33) % 600;
            for (size_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                q[i] = (uint8_t)(s >> 56);
            }
        } else {
            n = mkquery(q, 1, "green.web.service.shoal", 33, (k % 4) ? 1232 : 0);
            for (int f = 0; f < 3; f++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                q[(s >> 33) % n] = (uint8_t)(s >> 20);
            }
        }
        size_t l = shoal_dns_respond(&d, q, n, k % 3 == 0, out, sizeof(out));
        if (l)
            (void)decode(out, l); /* every reply is well-formed */
    }
    uint64_t total = 0;
    for (int i = 0; i < SHOAL_DNS_R_COUNT; i++)
        total += d.c.results[i];
    CHECK_EQ(total, (uint64_t)N);
    shoal_registry_free(r);
}

/* ------------------------------------------------------------ sockets */

static struct ev_loop *loop;

static void pump(int ms)
{
    for (int i = 0; i < ms; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static int udp_client(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(fd >= 0);
    return fd;
}

static struct sockaddr_in sin_of(const struct shoal_addr *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(a->port)};
    memcpy(&s.sin_addr, a->ip, 4);
    return s;
}

TEST(server_udp_tcp, "real sockets: UDP answers, garbage counted, TCP frames several queries")
{
    loop = ev_default_loop(0);
    struct shoal_dns_responder tmp;
    struct shoal_registry *r;
    setup(&tmp, &r);
    struct shoal_addr at;
    CHECK(shoal_addr_parse("127.0.0.1:1", &at) == 0);
    at.port = 0;
    int err = 0;
    struct shoal_dns_server *s = shoal_dns_server_new(loop, &at, r, 5, 99, &err);
    CHECKF(s, "err %d", err);
    shoal_dns_server_addr(s, &at);
    CHECK(at.port != 0);
    struct sockaddr_in to = sin_of(&at);

    int u = udp_client();
    uint8_t q[600], buf[70000];
    for (int i = 0; i < 50; i++) /* garbage first: header-less, dropped */
        CHECK(sendto(u, "xyz", 3, 0, (struct sockaddr *)&to, sizeof(to)) == 3);
    size_t n = mkquery(q, 77, "web.service.shoal", 1, 0);
    CHECK(sendto(u, q, n, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)n);
    ssize_t got = -1;
    for (int i = 0; i < 2000 && got < 0; i++) {
        pump(1);
        got = recv(u, buf, sizeof(buf), 0);
    }
    CHECK(got > 0);
    struct reply *x = decode(buf, (size_t)got);
    CHECK(x->id == 77 && x->an == 2);
    CHECK_EQ(x->rr[1][0].type, 1);
    const struct shoal_dns_counters *c = shoal_dns_server_counters(s);
    CHECK_EQ(c->results[SHOAL_DNS_R_DROPPED], 50);

    /* TCP: two queries in one write, two framed answers back */
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(t, (struct sockaddr *)&to, sizeof(to)) == 0);
    uint8_t frames[1200];
    size_t fl = 0;
    for (int k = 0; k < 2; k++) {
        n = mkquery(q, (uint16_t)(100 + k), k ? "_web._tcp.service.shoal" : "web.service.shoal",
                    k ? 33 : 28, 0);
        frames[fl] = (uint8_t)(n >> 8);
        frames[fl + 1] = (uint8_t)n;
        memcpy(frames + fl + 2, q, n);
        fl += n + 2;
    }
    CHECK(send(t, frames, fl, 0) == (ssize_t)fl);
    size_t have = 0;
    fcntl(t, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 3000; i++) {
        pump(1);
        ssize_t rr = recv(t, buf + have, sizeof(buf) - have, 0);
        if (rr > 0)
            have += (size_t)rr;
        if (have >= 2) {
            size_t l1 = (size_t)(buf[0] << 8 | buf[1]);
            if (have >= 2 + l1 + 2 && have >= 2 + l1 + 2 + (size_t)(buf[2 + l1] << 8 | buf[3 + l1]))
                break;
        }
    }
    size_t l1 = (size_t)(buf[0] << 8 | buf[1]);
    CHECK(have >= l1 + 4);
    x = decode(buf + 2, l1);
    CHECK(x->id == 100 && x->an == 1 && has_a(x, 1, "::1"));
    size_t l2 = (size_t)(buf[2 + l1] << 8 | buf[3 + l1]);
    CHECK_EQ(have, l1 + l2 + 4);
    x = decode(buf + 4 + l1, l2);
    CHECK(x->id == 101 && x->an == 4);
    CHECK_EQ(c->tcp_open, 1);
    close(t);
    close(u);
    pump(20);
    CHECK_EQ(c->tcp_open, 0);
    shoal_dns_server_free(s);
    shoal_registry_free(r);
}

TEST(server_tcp_idle, "a TCP connection without a complete query is closed when idle")
{
    loop = ev_default_loop(0);
    struct shoal_registry *r = mkreg();
    struct shoal_addr at;
    CHECK(shoal_addr_parse("127.0.0.1:1", &at) == 0);
    at.port = 0;
    int err = 0;
    struct shoal_dns_server *s = shoal_dns_server_new(loop, &at, r, 0, 1, &err);
    CHECK(s);
    shoal_dns_server_set_idle_timeout(s, 0.2);
    shoal_dns_server_addr(s, &at);
    struct sockaddr_in to = sin_of(&at);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(t, (struct sockaddr *)&to, sizeof(to)) == 0);
    CHECK(send(t, "\x00\x20" "abc", 5, 0) == 5); /* 3 of 32 announced bytes */
    const struct shoal_dns_counters *c = shoal_dns_server_counters(s);
    for (int i = 0; i < 5000 && c->tcp_closed_idle == 0; i++)
        pump(1);
    CHECK_EQ(c->tcp_closed_idle, 1);
    CHECK_EQ(c->tcp_open, 0);
    char b;
    CHECK(recv(t, &b, 1, 0) == 0); /* closed by the server, nothing answered */
    close(t);
    shoal_dns_server_free(s);
    shoal_registry_free(r);
}

TEST(server_tcp_cap, "connections over the cap are accepted and closed at once, counted")
{
    loop = ev_default_loop(0);
    struct shoal_registry *r = mkreg();
    struct shoal_addr at;
    CHECK(shoal_addr_parse("127.0.0.1:1", &at) == 0);
    at.port = 0;
    int err = 0;
    struct shoal_dns_server *s = shoal_dns_server_new(loop, &at, r, 0, 1, &err);
    CHECK(s);
    shoal_dns_server_addr(s, &at);
    struct sockaddr_in to = sin_of(&at);
    int fds[SHOAL_DNS_TCP_MAX_CONNS + 1];
    for (int i = 0; i <= SHOAL_DNS_TCP_MAX_CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(connect(fds[i], (struct sockaddr *)&to, sizeof(to)) == 0);
        pump(2);
    }
    const struct shoal_dns_counters *c = shoal_dns_server_counters(s);
    CHECK_EQ(c->tcp_open, SHOAL_DNS_TCP_MAX_CONNS);
    CHECK_EQ(c->tcp_rejected, 1);
    char b;
    CHECK(recv(fds[SHOAL_DNS_TCP_MAX_CONNS], &b, 1, 0) == 0); /* closed by the server */
    for (int i = 0; i <= SHOAL_DNS_TCP_MAX_CONNS; i++)
        close(fds[i]);
    pump(20);
    CHECK_EQ(c->tcp_open, 0);
    shoal_dns_server_free(s);
    shoal_registry_free(r);
}

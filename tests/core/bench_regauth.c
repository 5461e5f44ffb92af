/* bench_regauth.c -- the cost of owner signatures in the registry (issue 8,
 * "Benchmark"). Numbers only: it never fails on time.
 *
 * Per event (CLOCK_MONOTONIC around each call, --samples of them): signing
 * one event's canonical bytes, verifying it, and hashing it (owner proofs).
 * Bulk: a new node receives --instances instances (default 100,000) from
 * --owners owners (default 10) by one anti-entropy exchange with a replica
 * that holds them all, every message going through the real codec
 * (shoal_wire_encode_reg / decode_reg); the wall time of the whole exchange
 * (both sides: encode, decode, checks, apply) is measured three ways:
 *   none    no owner checks (principals NULL): the registry before issue 8
 *   events  owner checks, one signature verified per event
 *   proofs  owner checks with owner proofs (core/regproof.h): one
 *           verification per owner whose set travels whole with its proof
 * Instances: id "svc-<owner>-<n>", service "svc-<n % 100>", address
 * "10.x.y.z", a port, 2 tags. One core, in process.
 *
 * Usage: bench_regauth [--instances N] [--owners K] [--samples S]
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/principal.h"
#include "core/registry.h"
#include "wire/statement.h"
#include "wire/wire.h"

#define MAX_OWNERS 64
#define BUF (5u << 20)

enum mode { MODE_NONE, MODE_EVENTS, MODE_PROOFS };

struct bnode {
    struct shoal_registry *r;
    struct shoal_identity id;
    char name[SHOAL_NAME_MAX];
};

struct qmsg {
    int to;
    struct shoal_reg_peer from;
    uint8_t *bytes;
    size_t len;
};

static struct bnode owners[MAX_OWNERS], src, fresh;
static size_t n_owners;
static struct shoal_principals principals;
static struct qmsg *q;
static size_t qn, qcap;
static uint8_t *buf;
static int failures;

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

/* Node numbers: owners 0..K-1, src K, fresh K+1 (port 7000 + number). */
static struct bnode *node_at(int i)
{
    return i < (int)n_owners ? &owners[i] : i == (int)n_owners ? &src : &fresh;
}

static struct shoal_addr addr_of(int i)
{
    struct shoal_addr a;
    shoal_addr_parse("127.0.0.1:7000", &a);
    a.port = (uint16_t)(7000 + i);
    return a;
}

static void net_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    int from = (int)(intptr_t)ud;
    int len = shoal_wire_encode_reg(m, buf, BUF);
    if (len < 0) {
        fprintf(stderr, "bench_regauth: encode failed: %d\n", len);
        failures++;
        return;
    }
    if (qn == qcap) {
        qcap = qcap ? qcap * 2 : 64;
        q = realloc(q, qcap * sizeof(*q));
    }
    struct qmsg *x = &q[qn++];
    x->to = to->conn ? (int)to->conn - 1 : to->addr.port - 7000;
    x->from.addr = addr_of(from);
    x->from.stream = to->stream;
    x->from.conn = to->stream ? (uint64_t)from + 1 : 0;
    x->bytes = malloc((size_t)len);
    memcpy(x->bytes, buf, (size_t)len);
    x->len = (size_t)len;
}

static void deliver(void)
{
    for (size_t k = 0; k < qn; k++) { /* replies append; the loop reaches them */
        struct qmsg x = q[k];
        struct shoal_reg_msg m;
        const char *bad = NULL;
        if (shoal_wire_decode_reg(x.bytes, x.len, &m, &bad) != 0) {
            fprintf(stderr, "bench_regauth: decode failed: %s\n", bad ? bad : "?");
            failures++;
        } else {
            shoal_registry_recv(node_at(x.to)->r, 0, &x.from, &m);
            shoal_reg_msg_free(&m);
        }
        free(x.bytes);
    }
    qn = 0;
}

static int cb_sign(void *ud, const struct shoal_instance *ev, uint8_t sig[64])
{
    return shoal_statement_sign_event(ev, node_at((int)(intptr_t)ud)->id.sk, sig);
}

static bool cb_verify(void *ud, const struct shoal_instance *ev, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_event(ev, pk);
}

static void cb_hash(void *ud, const struct shoal_instance *ev, uint8_t out[32])
{
    (void)ud;
    if (shoal_statement_event_hash(ev, out) != 0)
        memset(out, 0, 32);
}

static void cb_root(void *ud, const uint8_t (*h)[32], size_t n, uint8_t root[32])
{
    (void)ud;
    shoal_statement_set_root(h, n, root);
}

static int cb_sign_proof(void *ud, struct shoal_reg_proof *p)
{
    shoal_statement_sign_proof(p, node_at((int)(intptr_t)ud)->id.sk);
    return 0;
}

static bool cb_verify_proof(void *ud, const struct shoal_reg_proof *p, const uint8_t pk[32])
{
    (void)ud;
    return shoal_statement_verify_proof(p, pk);
}

static struct shoal_registry *mk(int i, const char *name, enum mode mode)
{
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "%s", name);
    c.generation = 1;
    c.send = net_send;
    c.ud = (void *)(intptr_t)i;
    c.sync_interval_ms = 0;
    c.max_owner_instances = 10000000;
    c.max_owner_bytes = 1ull << 40;
    if (mode != MODE_NONE) {
        c.principals = &principals;
        c.sign = cb_sign;
        c.verify = cb_verify;
    }
    if (mode == MODE_PROOFS) {
        c.event_hash = cb_hash;
        c.set_root = cb_root;
        c.sign_proof = cb_sign_proof;
        c.verify_proof = cb_verify_proof;
    }
    int err = 0;
    struct shoal_registry *r = shoal_registry_new(&c, &err);
    if (!r) {
        fprintf(stderr, "bench_regauth: shoal_registry_new: %d\n", err);
        exit(1);
    }
    return r;
}

static void spec_of(size_t owner, size_t k, struct shoal_instance *in, char *id, char *svc,
                    char *addr, char **tags)
{
    memset(in, 0, sizeof(*in));
    snprintf(id, 48, "svc-%02zu-%07zu", owner, k);
    snprintf(svc, 32, "svc-%zu", k % 100);
    snprintf(addr, 32, "10.%zu.%zu.%zu", owner, (k >> 8) & 255, k & 255);
    tags[0] = "v2";
    tags[1] = "zone-b";
    in->id = id;
    in->service = svc;
    in->address = addr;
    in->port = (uint16_t)(1000 + k % 50000);
    in->tags = tags;
    in->n_tags = 2;
}

/* The whole exchange, in wall seconds (*cpu: this process's CPU seconds);
 * *verified gets fresh's signature count. */
static double bulk(size_t instances, enum mode mode, uint64_t *verified, uint64_t *by_proof,
                   double *cpu)
{
    char id[48], svc[32], addr[32], *tags[2];
    struct shoal_instance in;
    shoal_principals_init(&principals, 0);
    for (size_t o = 0; o < n_owners; o++) {
        struct shoal_principal p;
        memset(&p, 0, sizeof(p));
        snprintf(owners[o].name, sizeof(owners[o].name), "owner-%02zu", o);
        shoal_identity_generate(&owners[o].id);
        snprintf(p.name, sizeof(p.name), "%s", owners[o].name);
        memcpy(p.pk, owners[o].id.pk, 32);
        p.not_after = UINT64_MAX;
        if (shoal_principals_put(&principals, &p, false) != 0)
            exit(1);
        owners[o].r = mk((int)o, owners[o].name, mode);
    }
    shoal_identity_generate(&src.id);
    shoal_identity_generate(&fresh.id);
    src.r = mk((int)n_owners, "src", mode);
    fresh.r = mk((int)n_owners + 1, "fresh", mode);
    for (size_t k = 0; k < instances; k++) {
        size_t o = k % n_owners;
        spec_of(o, k, &in, id, svc, addr, tags);
        if (shoal_registry_register(owners[o].r, 0, 1000, &in, NULL) != 0) {
            fprintf(stderr, "bench_regauth: register failed\n");
            exit(1);
        }
    }
    /* src gathers everything from the owners (not timed). */
    for (size_t o = 0; o < n_owners; o++) {
        struct shoal_addr a = addr_of((int)o);
        shoal_registry_sync_with(src.r, 0, &a);
        deliver();
    }
    struct shoal_addr a = addr_of((int)n_owners);
    int64_t t0 = now_ns(), c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    shoal_registry_sync_with(fresh.r, 0, &a);
    deliver();
    double s = (double)(now_ns() - t0) / 1e9;
    *cpu = (double)(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e9;
    size_t hb[SHOAL_HEALTH_COUNT], tombs;
    shoal_registry_counts(fresh.r, hb, &tombs);
    if (hb[0] + hb[1] + hb[2] != instances) {
        fprintf(stderr, "bench_regauth: the new node holds %zu of %zu (%s)\n",
                hb[0] + hb[1] + hb[2], instances,
                mode == MODE_NONE ? "none" : mode == MODE_EVENTS ? "events" : "proofs");
        failures++;
    }
    *verified = shoal_registry_stats(fresh.r)->sig_verified;
    *by_proof = shoal_registry_stats(fresh.r)->events_by_proof;
    for (size_t o = 0; o < n_owners; o++)
        shoal_registry_free(owners[o].r);
    shoal_registry_free(src.r);
    shoal_registry_free(fresh.r);
    shoal_principals_close(&principals);
    return s;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double p50_us(int64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    return (double)v[n / 2] / 1000.0;
}

int main(int argc, char **argv)
{
    size_t instances = 100000, samples = 2000;
    n_owners = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        size_t v = (size_t)strtoull(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--instances") == 0)
            instances = v;
        else if (strcmp(argv[i], "--owners") == 0)
            n_owners = v;
        else if (strcmp(argv[i], "--samples") == 0)
            samples = v;
    }
    if (!n_owners || n_owners > MAX_OWNERS || instances < n_owners || !samples) {
        fprintf(stderr, "usage: bench_regauth [--instances N] [--owners 1..64] [--samples S]\n");
        return 1;
    }
    buf = malloc(BUF);
    int64_t *t = calloc(samples, sizeof(*t));
    if (!buf || !t)
        return 1;

    /* Per event. */
    struct shoal_identity id;
    struct shoal_instance in;
    char ids[48], svc[32], addr[32], *tags[2];
    uint8_t h[32];
    shoal_identity_generate(&id);
    double us[3];
    for (int what = 0; what < 3; what++) {
        for (size_t k = 0; k < samples; k++) {
            spec_of(1, k, &in, ids, svc, addr, tags);
            snprintf(in.owner, sizeof(in.owner), "owner-01");
            in.generation = 1;
            in.version = k + 1;
            if (what == 1 && shoal_statement_sign_event(&in, id.sk, in.sig) != 0)
                return 1;
            in.has_sig = true;
            int64_t t0 = now_ns();
            bool ok = true;
            if (what == 0)
                ok = shoal_statement_sign_event(&in, id.sk, in.sig) == 0;
            else if (what == 1)
                ok = shoal_statement_verify_event(&in, id.pk);
            else
                ok = shoal_statement_event_hash(&in, h) == 0;
            t[k] = now_ns() - t0;
            if (!ok)
                failures++;
        }
        us[what] = p50_us(t, samples);
    }

    uint64_t v_none, v_events, v_proofs, p_none, p_events, p_proofs;
    double c_none, c_events, c_proofs;
    double s_none = bulk(instances, MODE_NONE, &v_none, &p_none, &c_none);
    double s_events = bulk(instances, MODE_EVENTS, &v_events, &p_events, &c_events);
    double s_proofs = bulk(instances, MODE_PROOFS, &v_proofs, &p_proofs, &c_proofs);

    printf("owner signatures, in process, one core: %zu instances from %zu owners\n\n",
           instances, n_owners);
    printf("| metric | value |\n|---|---|\n");
    printf("| sign one event, p50 (us) | %.1f |\n", us[0]);
    printf("| verify one event, p50 (us) | %.1f |\n", us[1]);
    printf("| hash one event (owner proofs), p50 (us) | %.2f |\n", us[2]);
    printf("| new node gets %zu instances by anti-entropy, wall / CPU (s): no owner checks "
           "(before) | %.2f / %.2f |\n", instances, s_none, c_none);
    printf("| ... one signature verified per event (%" PRIu64 " verified) | %.2f / %.2f |\n",
           v_events, s_events, c_events);
    printf("| ... with owner proofs (%" PRIu64 " verified, %" PRIu64
           " events under a proof) | %.2f / %.2f |\n", v_proofs, p_proofs, s_proofs, c_proofs);
    free(buf);
    free(t);
    free(q);
    return failures ? 1 : 0;
}

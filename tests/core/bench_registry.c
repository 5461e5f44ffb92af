/* bench_registry.c -- in-process numbers for the registry core (issue 3,
 * "Benchmark"): memory per registered instance, the cost of applying an
 * event, and the latency of shoal_registry_query at 100,000 instances.
 * Numbers only: it never fails on time (exit 1 only on a broken setup).
 *
 * Method. A replica (self "bench", not one of the owners) receives
 * --instances events (default 100,000) from --owners owners (default 50),
 * one event per SHOAL_REG_GOSSIP message as it would from a datagram, each
 * owner's versions counting up from 1. Instances look like production ones:
 *   service  one big service of --big instances (default 10,000,
 *            "web-frontend"), the rest in services of 100 instances
 *            ("billing-api-0", "catalog-worker-3", ...: 900 by default)
 *   id       "<service>-<8 hex>" (about 22 bytes), address "10.a.b.c",
 *            port, 2 tags ("v2", "zone-b"), and (with metadata) 2 small
 *            meta pairs: version=1.14.3, commit=<8 hex> (27 bytes raw).
 * Memory is glibc's view of the heap, mallinfo2(): in-use bytes of the
 * arena (uordblks, chunk headers and padding included) plus mmapped
 * chunks (hblkhd: large arrays such as hash tables), after minus before
 * the registry was created, divided by the instance count. It covers
 * everything the registry allocates for them: the entries and their
 * strings, the per-owner id maps, the service index and the gossip queue
 * (every applied event is queued for re-gossip and never drained here, as
 * no tick runs: its array's capacity stays after a burst anyway). It is
 * measured twice, on fresh registries, without and with the metadata, so
 * the difference is what the metadata costs.
 * Latencies (CLOCK_MONOTONIC around each call): shoal_registry_recv of
 * one event (while the registry grows to full size); shoal_registry_query
 * (passing instances of live owners, sorted by (owner, id), the pointers
 * copied out) for a random 100-instance service, --queries times, and
 * for the big service, --queries/10 times, on the full registry with
 * metadata.
 *
 * Usage: bench_registry [--instances N] [--owners K] [--big M]
 *                       [--queries Q] [--seed S] [--json]
 * Build: cmake --build build --target bench_registry (tests/CMakeLists.txt).
 */
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/registry.h"

#define SMALL_SERVICE 100 /* instances per ordinary service */

struct opts {
    size_t instances, owners, big, queries;
    uint64_t seed;
    bool json;
};

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64: deterministic from --seed */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static const char *const word_a[16] = {"billing", "catalog", "search",  "checkout",
                                       "payment", "profile", "notify",  "ledger",
                                       "auth",    "session", "pricing", "inventory",
                                       "shipping", "reviews", "media",  "ads"};
static const char *const word_b[8] = {"api",   "worker", "db",    "cache",
                                      "proxy", "batch",  "queue", "gateway"};

static size_t n_small_services(const struct opts *o)
{
    size_t rest = o->instances > o->big ? o->instances - o->big : 0;
    return (rest + SMALL_SERVICE - 1) / SMALL_SERVICE;
}

static void small_service_name(size_t s, char *out, size_t len)
{
    snprintf(out, len, "%s-%s-%zu", word_a[s % 16], word_b[(s / 16) % 8], s / 128);
}

/* Buffers for one event; everything points into it (recv copies). */
struct evbuf {
    char id[SHOAL_ID_MAX];
    char service[SHOAL_SERVICE_MAX];
    char address[32];
    char commit[16];
    char *tags[2];
    struct shoal_kv meta[2];
    struct shoal_instance in;
};

/* The k-th instance: owner k % owners; service big for k < big, else
 * spread over the small services so each gets instances from many owners. */
static void make_event(const struct opts *o, size_t k, uint64_t version, bool with_meta,
                       struct evbuf *b)
{
    static char tag_v[] = "v2", tag_zone[] = "zone-b";
    static char k_version[] = "version", v_version[] = "1.14.3", k_commit[] = "commit";
    memset(&b->in, 0, sizeof(b->in));
    snprintf(b->in.owner, sizeof(b->in.owner), "node-%02zu", k % o->owners);
    if (k < o->big)
        snprintf(b->service, sizeof(b->service), "web-frontend");
    else
        small_service_name((k - o->big) % n_small_services(o), b->service, sizeof(b->service));
    uint32_t h = (uint32_t)(k * 2654435761u) ^ 0x5bd1e995u;
    snprintf(b->id, sizeof(b->id), "%s-%08" PRIx32, b->service, h);
    snprintf(b->address, sizeof(b->address), "10.%zu.%zu.%zu", (k >> 16) & 255, (k >> 8) & 255,
             k & 255);
    snprintf(b->commit, sizeof(b->commit), "%08" PRIx32, h * 2246822519u);
    b->tags[0] = tag_v;
    b->tags[1] = tag_zone;
    b->meta[0] = (struct shoal_kv){k_version, v_version};
    b->meta[1] = (struct shoal_kv){k_commit, b->commit};
    b->in.id = b->id;
    b->in.service = b->service;
    b->in.address = b->address;
    b->in.port = (uint16_t)(8000 + k % 1000);
    b->in.n_tags = 2;
    b->in.tags = b->tags;
    b->in.n_meta = with_meta ? 2 : 0;
    b->in.meta = with_meta ? b->meta : NULL;
    b->in.health = SHOAL_PASSING;
    b->in.registered_ms = 1764165600000LL + (int64_t)k;
    b->in.generation = 1764165000ULL + k % o->owners;
    b->in.version = version;
}

static size_t meta_raw_bytes(const struct evbuf *b)
{
    size_t n = 0;
    for (uint32_t i = 0; i < b->in.n_meta; i++)
        n += strlen(b->meta[i].key) + strlen(b->meta[i].value);
    return n;
}

static void no_send(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m)
{
    (void)ud;
    (void)to;
    (void)m;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

struct pct {
    double p50_us, p99_us, mean_us;
    size_t n;
};

static struct pct percentiles(int64_t *v, size_t n)
{
    struct pct p = {0};
    if (!n)
        return p;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    qsort(v, n, sizeof(*v), cmp_i64);
    p.p50_us = (double)v[n / 2] / 1000.0;
    p.p99_us = (double)v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0;
    p.mean_us = sum / (double)n / 1000.0;
    p.n = n;
    return p;
}

struct build {
    struct shoal_registry *r;
    size_t bytes;      /* heap delta */
    size_t meta_raw;   /* sum of metadata key+value bytes */
    size_t held;       /* instances the registry counts */
    struct pct apply;  /* per-event recv */
    double total_s;    /* all events */
};

static int build(const struct opts *o, bool with_meta, int64_t *samples, struct build *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t *versions = calloc(o->owners, sizeof(*versions));
    if (!versions)
        return -1;
    struct shoal_reg_peer src = {0};
    if (shoal_addr_parse("127.0.0.1:7946", &src.addr) != 0) {
        free(versions);
        return -1;
    }
    struct evbuf b;
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "bench");
    c.generation = 1;
    c.send = no_send;
    c.sync_interval_ms = 0;

    malloc_trim(0);
    size_t before = heap_bytes();
    int err = 0;
    out->r = shoal_registry_new(&c, &err);
    if (!out->r) {
        fprintf(stderr, "bench_registry: shoal_registry_new: %d\n", err);
        free(versions);
        return -1;
    }
    int64_t t_all = now_ns();
    for (size_t k = 0; k < o->instances; k++) {
        size_t owner = k % o->owners;
        make_event(o, k, ++versions[owner], with_meta, &b);
        out->meta_raw += meta_raw_bytes(&b);
        struct shoal_reg_msg m = {.type = SHOAL_REG_GOSSIP, .n_events = 1, .events = &b.in,
                                  .last = true};
        memcpy(m.from, b.in.owner, sizeof(m.from));
        int64_t t0 = now_ns();
        shoal_registry_recv(out->r, (int64_t)k / 100, &src, &m);
        samples[k] = now_ns() - t0;
    }
    out->total_s = (double)(now_ns() - t_all) / 1e9;
    size_t after = heap_bytes();
    out->bytes = after > before ? after - before : 0;
    size_t by_health[SHOAL_HEALTH_COUNT], tombs;
    shoal_registry_counts(out->r, by_health, &tombs);
    out->held = by_health[0] + by_health[1] + by_health[2];
    out->apply = percentiles(samples, o->instances);
    free(versions);
    if (out->held != o->instances) {
        fprintf(stderr, "bench_registry: registry holds %zu of %zu instances\n", out->held,
                o->instances);
        return -1;
    }
    return 0;
}

static struct pct query_bench(const struct opts *o, struct shoal_registry *r, bool big, size_t q,
                              size_t expect, int64_t *samples, const struct shoal_instance **out,
                              size_t max, int *bad)
{
    char name[SHOAL_SERVICE_MAX];
    for (size_t i = 0; i < q; i++) {
        if (big)
            snprintf(name, sizeof(name), "web-frontend");
        else
            small_service_name((size_t)(rnd() % n_small_services(o)), name, sizeof(name));
        struct shoal_query qq = {.service = name};
        int64_t t0 = now_ns();
        size_t n = shoal_registry_query(r, &qq, out, max);
        samples[i] = now_ns() - t0;
        if (n != expect && !(!big && n > 0 && n <= expect))
            *bad = 1;
    }
    return percentiles(samples, q);
}

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v == 0)
        return false;
    *out = (size_t)v;
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_registry [--instances N] [--owners K] [--big M] "
                    "[--queries Q] [--seed S] [--json]\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.instances = 100000, .owners = 50, .big = 10000, .queries = 10000,
                     .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t *dst = NULL;
        if (strcmp(a, "--json") == 0) {
            o.json = true;
            continue;
        }
        if (strcmp(a, "--instances") == 0)
            dst = &o.instances;
        else if (strcmp(a, "--owners") == 0)
            dst = &o.owners;
        else if (strcmp(a, "--big") == 0)
            dst = &o.big;
        else if (strcmp(a, "--queries") == 0)
            dst = &o.queries;
        else if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
            o.seed = strtoull(argv[++i], NULL, 10);
            continue;
        }
        if (!dst || i + 1 >= argc || !parse_size(argv[i + 1], dst)) {
            usage();
            return 2;
        }
        i++;
    }
    if (o.owners > 99 || o.big >= o.instances || o.instances > 10000000) {
        fprintf(stderr, "bench_registry: need owners <= 99, big < instances <= 10,000,000\n");
        return 2;
    }
    rng_state = o.seed;

    size_t nsamp = o.instances > o.queries ? o.instances : o.queries;
    int64_t *samples = calloc(nsamp, sizeof(*samples));
    size_t max_out = o.big > SMALL_SERVICE ? o.big : SMALL_SERVICE;
    const struct shoal_instance **out = calloc(max_out, sizeof(*out));
    if (!samples || !out) {
        fprintf(stderr, "bench_registry: out of memory\n");
        return 1;
    }

    struct build plain, meta;
    if (build(&o, false, samples, &plain) != 0)
        return 1;
    shoal_registry_free(plain.r);
    plain.r = NULL;
    if (build(&o, true, samples, &meta) != 0)
        return 1;

    int bad = 0;
    size_t q_big = o.queries / 10 ? o.queries / 10 : 1;
    struct pct q100 = query_bench(&o, meta.r, false, o.queries, SMALL_SERVICE, samples, out,
                                  max_out, &bad);
    struct pct qbig = query_bench(&o, meta.r, true, q_big, o.big, samples, out, max_out, &bad);
    if (bad) {
        fprintf(stderr, "bench_registry: a query returned an unexpected count\n");
        return 1;
    }

    double n = (double)o.instances;
    double per_plain = (double)plain.bytes / n, per_meta = (double)meta.bytes / n;
    double meta_raw = (double)meta.meta_raw / n;
    if (o.json) {
        printf("{\"instances\":%zu,\"owners\":%zu,\"services\":%zu,\"big\":%zu,"
               "\"bytes_per_instance\":%.1f,\"bytes_per_instance_meta\":%.1f,"
               "\"meta_raw_per_instance\":%.1f,\"heap_mb\":%.2f,\"heap_mb_meta\":%.2f,"
               "\"apply_p50_us\":%.3f,\"apply_p99_us\":%.3f,\"apply_mean_us\":%.3f,"
               "\"apply_total_s\":%.3f,"
               "\"query100_p50_us\":%.2f,\"query100_p99_us\":%.2f,\"query100_n\":%zu,"
               "\"querybig_p50_us\":%.2f,\"querybig_p99_us\":%.2f,\"querybig_n\":%zu}\n",
               o.instances, o.owners, n_small_services(&o) + 1, o.big, per_plain, per_meta,
               meta_raw, (double)plain.bytes / 1048576.0, (double)meta.bytes / 1048576.0,
               meta.apply.p50_us, meta.apply.p99_us, meta.apply.mean_us, meta.total_s,
               q100.p50_us, q100.p99_us, q100.n, qbig.p50_us, qbig.p99_us, qbig.n);
    } else {
        printf("registry core, in process: %zu instances from %zu owners, %zu services "
               "(one of %zu, the rest of %d)\n\n",
               o.instances, o.owners, n_small_services(&o) + 1, o.big, SMALL_SERVICE);
        printf("| metric | value |\n|---|---|\n");
        printf("| heap per instance, 2 tags, no metadata (B) | %.0f |\n", per_plain);
        printf("| heap per instance, 2 tags + 2 meta pairs (%.0f B raw) (B) | %.0f |\n",
               meta_raw, per_meta);
        printf("| of which the metadata (B) | %.0f |\n", per_meta - per_plain);
        printf("| heap for the whole registry, with metadata (MiB) | %.1f |\n",
               (double)meta.bytes / 1048576.0);
        printf("| apply one event (recv), p50 / p99 (us) | %.2f / %.2f |\n", meta.apply.p50_us,
               meta.apply.p99_us);
        printf("| apply all %zu events (s) | %.3f |\n", o.instances, meta.total_s);
        printf("| query a %d-instance service, p50 / p99 (us, %zu queries) | %.2f / %.2f |\n",
               SMALL_SERVICE, q100.n, q100.p50_us, q100.p99_us);
        printf("| query the %zu-instance service, p50 / p99 (us, %zu queries) | %.1f / %.1f |\n",
               o.big, qbig.n, qbig.p50_us, qbig.p99_us);
    }
    shoal_registry_free(meta.r);
    free(samples);
    free(out);
    return 0;
}

/* test_balance.c -- the load-balancing strategies of core/balance.h.
 *
 * Round-robin is deterministic, so it is checked exactly (proportions over
 * a cycle). Random, least-conn ties and ip-hash are checked statistically
 * with fixed seeds: a bucket expected to get N*p of N draws must land within
 * 6 standard deviations, sigma = sqrt(N*p*(1-p)). A correct implementation
 * misses one such bound with probability < 2e-9 (normal tail; the binomial
 * tail is lighter still for these N), so < 1e-7 over every bucket here; a
 * strategy that ignores weights misses them by tens of sigmas.
 */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "core/balance.h"
#include "core/rng.h"

#define SIGMAS 6.0

static char keys[64][16];

static void make(struct shoal_lb_candidate *c, size_t n, const uint32_t *w)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof(keys[i]), "node%zu/web-%zu", i, i);
        c[i] = (struct shoal_lb_candidate){.key = keys[i], .weight = w ? w[i] : 1};
    }
}

/* Every count[i] is within SIGMAS sigma of total * w[i] / sum(w). */
static void check_binomial(const unsigned *count, const uint32_t *w, size_t n, unsigned total)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += w ? w[i] : 1;
    for (size_t i = 0; i < n; i++) {
        double p = (w ? w[i] : 1) / sum, mean = total * p;
        double bound = SIGMAS * sqrt(total * p * (1 - p));
        CHECKF(fabs(count[i] - mean) <= bound, "bucket %zu: %u picks, expected %.0f +- %.0f", i,
               count[i], mean, bound);
    }
}

static void client_ip(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
}

TEST(names, "strategy names and weights parse, and bad ones are refused")
{
    for (int i = 0; i < SHOAL_LB_COUNT; i++)
        CHECK_EQ(shoal_lb_parse(shoal_lb_name(i)), i);
    CHECK_EQ(shoal_lb_parse("least-conn"), SHOAL_LB_LEAST_CONN);
    CHECK_EQ(shoal_lb_parse("roundrobin"), -1);
    CHECK_EQ(shoal_lb_parse(NULL), -1);
    CHECK_EQ(shoal_lb_weight_parse(NULL), 1);
    CHECK_EQ(shoal_lb_weight_parse("3"), 3);
    CHECK_EQ(shoal_lb_weight_parse("1000"), 1000);
    CHECK_EQ(shoal_lb_weight_parse("1001"), -1);
    CHECK_EQ(shoal_lb_weight_parse("0"), -1);
    CHECK_EQ(shoal_lb_weight_parse(""), -1);
    CHECK_EQ(shoal_lb_weight_parse("-2"), -1);
    CHECK_EQ(shoal_lb_weight_parse("2x"), -1);
    CHECK_EQ(shoal_lb_weight_parse(" 2"), -1);
    CHECK_EQ(shoal_lb_weight_parse("99999"), -1);
}

TEST(empty, "no candidate or an unknown strategy picks nothing")
{
    struct shoal_lb_candidate c[1];
    uint64_t rr = 0;
    struct shoal_rng rng;
    shoal_rng_seed(&rng, 1);
    make(c, 1, NULL);
    for (int lb = 0; lb < SHOAL_LB_COUNT; lb++)
        CHECK_EQ(shoal_lb_pick(lb, c, 0, &rr, &rng, "x"), -1);
    CHECK_EQ(shoal_lb_pick(SHOAL_LB_COUNT, c, 1, &rr, &rng, "x"), -1);
    for (int lb = 0; lb < SHOAL_LB_COUNT; lb++)
        CHECK_EQ(shoal_lb_pick(lb, c, 1, &rr, &rng, "x"), 0);
}

TEST(rr_plain, "round-robin visits every instance once per cycle, in order")
{
    struct shoal_lb_candidate c[5];
    uint64_t rr = 0;
    make(c, 5, NULL);
    for (int i = 0; i < 50; i++)
        CHECK_EQ(shoal_lb_pick(SHOAL_LB_ROUND_ROBIN, c, 5, &rr, NULL, NULL), i % 5);
    CHECK_EQ(rr, 50);
}

TEST(rr_weighted, "weighted round-robin gives each instance exactly its weight per cycle, "
                  "interleaved")
{
    uint32_t w[] = {1, 3, 2, 5, 1000, 7};
    struct shoal_lb_candidate c[6];
    make(c, 6, w);
    uint64_t total = 1 + 3 + 2 + 5 + 1000 + 7;
    /* Any window of `total` consecutive picks is one whole cycle: check
     * several starting counters, not only 0. */
    uint64_t starts[] = {0, 1, 17, 1017, 123456789};
    for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
        uint64_t rr = starts[s];
        unsigned count[6] = {0};
        for (uint64_t k = 0; k < total; k++) {
            int i = shoal_lb_pick(SHOAL_LB_ROUND_ROBIN, c, 6, &rr, NULL, NULL);
            CHECK(i >= 0 && i < 6);
            count[i]++;
        }
        for (int i = 0; i < 6; i++)
            CHECKF(count[i] == w[i], "start %llu: instance %d picked %u times, weight %u",
                   (unsigned long long)starts[s], i, count[i], w[i]);
    }
    /* Interleaving: with weights {1,3,2,5} the first round visits all four
     * before any instance repeats. */
    uint64_t rr = 0;
    int first[4];
    for (int k = 0; k < 4; k++)
        first[k] = shoal_lb_pick(SHOAL_LB_ROUND_ROBIN, c, 4, &rr, NULL, NULL);
    for (int k = 0; k < 4; k++)
        CHECK_EQ(first[k], k);
}

TEST(rr_zero_weight, "a weight of 0 counts as 1 and one above the maximum as the maximum")
{
    uint32_t w[] = {0, 2, 5000};
    struct shoal_lb_candidate c[3];
    make(c, 3, w);
    uint64_t rr = 0;
    unsigned count[3] = {0};
    for (int k = 0; k < 1 + 2 + SHOAL_LB_WEIGHT_MAX; k++)
        count[shoal_lb_pick(SHOAL_LB_ROUND_ROBIN, c, 3, &rr, NULL, NULL)]++;
    CHECK_EQ(count[0], 1);
    CHECK_EQ(count[1], 2);
    CHECK_EQ(count[2], SHOAL_LB_WEIGHT_MAX);
}

TEST(random_plain, "random picks are uniform over unweighted instances")
{
    uint64_t seed;
    TEST_SEED(seed, 0x5eed0001);
    struct shoal_rng rng;
    shoal_rng_seed(&rng, seed);
    struct shoal_lb_candidate c[10];
    unsigned count[10] = {0}, n = 100000;
    make(c, 10, NULL);
    for (unsigned k = 0; k < n; k++)
        count[shoal_lb_pick(SHOAL_LB_RANDOM, c, 10, NULL, &rng, NULL)]++;
    check_binomial(count, NULL, 10, n); /* 10000 +- 569 each */
}

TEST(random_weighted, "random picks follow the weights")
{
    uint64_t seed;
    TEST_SEED(seed, 0x5eed0002);
    struct shoal_rng rng;
    shoal_rng_seed(&rng, seed);
    uint32_t w[] = {1, 2, 3, 4, 10};
    struct shoal_lb_candidate c[5];
    unsigned count[5] = {0}, n = 200000;
    make(c, 5, w);
    for (unsigned k = 0; k < n; k++)
        count[shoal_lb_pick(SHOAL_LB_RANDOM, c, 5, NULL, &rng, NULL)]++;
    /* expected 10000, 20000, 30000, 40000, 100000; sigma 97..224 */
    check_binomial(count, w, 5, n);
}

TEST(leastconn_ties, "least-conn breaks ties uniformly at random")
{
    uint64_t seed;
    TEST_SEED(seed, 0x5eed0003);
    struct shoal_rng rng;
    shoal_rng_seed(&rng, seed);
    struct shoal_lb_candidate c[4];
    unsigned count[4] = {0}, n = 40000;
    make(c, 4, NULL);
    for (int i = 0; i < 4; i++)
        c[i].active = 7; /* all equally loaded, nothing changes */
    for (unsigned k = 0; k < n; k++)
        count[shoal_lb_pick(SHOAL_LB_LEAST_CONN, c, 4, NULL, &rng, NULL)]++;
    check_binomial(count, NULL, 4, n); /* 10000 +- 520 each */
}

TEST(leastconn_balances, "least-conn keeps active counts proportional to weights and refills "
                         "an instance that lost its connections")
{
    uint64_t seed;
    TEST_SEED(seed, 0x5eed0004);
    struct shoal_rng rng;
    shoal_rng_seed(&rng, seed);
    uint32_t w[] = {1, 2, 3, 4};
    struct shoal_lb_candidate c[4];
    make(c, 4, w);
    /* Only opens: each pick has the smallest (a+1)/w, so after P picks every
     * a_i is within w_i of P*w_i/W (a random pick would drift by ~sqrt(P)). */
    for (unsigned p = 1; p <= 10000; p++) {
        int i = shoal_lb_pick(SHOAL_LB_LEAST_CONN, c, 4, NULL, &rng, NULL);
        c[i].active++;
        for (int j = 0; j < 4; j++) {
            double fair = (double)p * w[j] / 10.0;
            CHECKF(fabs(c[j].active - fair) <= w[j], "after %u picks instance %d has %u, fair %.1f",
                   p, j, c[j].active, fair);
        }
    }
    /* Instance 2 (weight 3) loses all its 3000 connections: the next picks
     * all go to it until it is back in line. */
    c[2].active = 0;
    for (int k = 0; k < 2999; k++) {
        int i = shoal_lb_pick(SHOAL_LB_LEAST_CONN, c, 4, NULL, &rng, NULL);
        CHECK_EQ(i, 2);
        c[i].active++;
    }
    /* Random closes and opens keep the load within a few connections of
     * proportional at all times. */
    for (unsigned k = 0; k < 100000; k++) {
        int j = (int)shoal_rng_below(&rng, 4);
        if (c[j].active > 0)
            c[j].active--;
        int i = shoal_lb_pick(SHOAL_LB_LEAST_CONN, c, 4, NULL, &rng, NULL);
        c[i].active++;
    }
    unsigned sum = c[0].active + c[1].active + c[2].active + c[3].active;
    for (int j = 0; j < 4; j++)
        CHECKF(fabs(c[j].active - sum * w[j] / 10.0) <= 2.0 * w[j] + 2, "instance %d has %u of %u",
               j, c[j].active, sum);
}

TEST(iphash_distribution, "ip-hash spreads clients uniformly, or by weight")
{
    struct shoal_lb_candidate c[10];
    unsigned count[10] = {0}, n = 100000;
    char ip[32];
    make(c, 10, NULL);
    for (unsigned k = 0; k < n; k++) {
        client_ip(ip, sizeof(ip), k);
        count[shoal_lb_pick(SHOAL_LB_IP_HASH, c, 10, NULL, NULL, ip)]++;
    }
    check_binomial(count, NULL, 10, n); /* 10000 +- 569 each */

    uint32_t w[] = {1, 2, 3, 4, 10};
    unsigned wc[5] = {0};
    make(c, 5, w);
    for (unsigned k = 0; k < 2 * n; k++) {
        client_ip(ip, sizeof(ip), k);
        wc[shoal_lb_pick(SHOAL_LB_IP_HASH, c, 5, NULL, NULL, ip)]++;
    }
    check_binomial(wc, w, 5, 2 * n);
}

TEST(iphash_sticky, "ip-hash gives a client the same instance whatever the candidate order")
{
    struct shoal_lb_candidate c[8], r[8];
    char ip[32];
    make(c, 8, NULL);
    for (int i = 0; i < 8; i++)
        r[i] = c[7 - i];
    for (unsigned k = 0; k < 10000; k++) {
        client_ip(ip, sizeof(ip), k * 7919);
        int a = shoal_lb_pick(SHOAL_LB_IP_HASH, c, 8, NULL, NULL, ip);
        int b = shoal_lb_pick(SHOAL_LB_IP_HASH, r, 8, NULL, NULL, ip);
        CHECK_EQ(a, shoal_lb_pick(SHOAL_LB_IP_HASH, c, 8, NULL, NULL, ip));
        CHECK_EQ(a, 7 - b);
    }
}

/* Rendezvous: when instance `gone` of N=10 leaves, exactly its clients
 * move, ~M*w_gone/W of them. The contrast, hash % N, moves ~90%. */
TEST(iphash_remove, "removing one of 10 instances moves only its own clients (about 1/10); "
                    "hash % N would move most")
{
    const unsigned M = 100000;
    uint32_t w[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int weighted = 0; weighted < 2; weighted++) {
        struct shoal_lb_candidate c[10], less[9];
        char ip[32];
        if (weighted)
            for (int i = 0; i < 10; i++)
                w[i] = (uint32_t)(i % 4 + 1); /* sum 1+2+3+4+1+2+3+4+1+2 = 23 */
        make(c, 10, w);
        int gone = 3;
        for (int i = 0, j = 0; i < 10; i++)
            if (i != gone)
                less[j++] = c[i];
        unsigned moved = 0, mod_moved = 0;
        for (unsigned k = 0; k < M; k++) {
            client_ip(ip, sizeof(ip), k);
            int before = shoal_lb_pick(SHOAL_LB_IP_HASH, c, 10, NULL, NULL, ip);
            int after = shoal_lb_pick(SHOAL_LB_IP_HASH, less, 9, NULL, NULL, ip);
            const char *kb = c[before].key, *ka = less[after].key;
            if (before != gone)
                CHECKF(kb == ka, "client %s moved from %s to %s", ip, kb, ka);
            else
                moved++;
            /* the contrast: the same client hash taken modulo N */
            uint64_t h = 1469598103934665603ULL;
            for (const char *s = ip; *s; s++)
                h = (h ^ (uint8_t)*s) * 1099511628211ULL;
            if (h % 10 != h % 9)
                mod_moved++;
        }
        /* moved ~ Binomial(M, w_gone/W): 10000 +- 569 unweighted; weighted,
         * w_gone = 4 of 23: 17391 +- 719. */
        double p = (double)w[gone] / (weighted ? 23.0 : 10.0);
        double bound = SIGMAS * sqrt(M * p * (1 - p));
        CHECKF(fabs(moved - M * p) <= bound, "weighted=%d: %u of %u moved, expected %.0f +- %.0f",
               weighted, moved, M, M * p, bound);
        /* hash % N keeps a client only when h%10 == h%9, i.e. for the 9
         * residues x = 0..8 of h mod 90 (x = 10a+b = 9c+b forces a = 0):
         * 10% stay, 90% move; the bound 80% is > 100 sigma away. */
        CHECKF(mod_moved > M * 8 / 10, "hash %% N moved only %u", mod_moved);
    }
}

TEST(iphash_add, "adding an 11th instance moves about 1/11 of clients, all onto the new one")
{
    const unsigned M = 110000;
    struct shoal_lb_candidate c[11];
    char ip[32];
    make(c, 11, NULL);
    unsigned moved = 0;
    for (unsigned k = 0; k < M; k++) {
        client_ip(ip, sizeof(ip), k);
        int before = shoal_lb_pick(SHOAL_LB_IP_HASH, c, 10, NULL, NULL, ip);
        int after = shoal_lb_pick(SHOAL_LB_IP_HASH, c, 11, NULL, NULL, ip);
        if (after != before) {
            CHECKF(after == 10, "client %s moved to old instance %d", ip, after);
            moved++;
        }
    }
    /* Binomial(110000, 1/11): 10000 +- 6*95.3 = 572 */
    double p = 1.0 / 11, bound = SIGMAS * sqrt(M * p * (1 - p));
    CHECKF(fabs(moved - M * p) <= bound, "%u of %u moved", moved, M);
}

TEST_MAIN()

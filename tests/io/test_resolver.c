/* test_resolver.c -- the agent's per-key load-balancing state (io/resolve.h):
 * round-robin counters per (key, service), least-conn leases with release
 * and expiry, and the bounds (LRU of keys, leases per key).
 */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include "core/balance.h"
#include "io/resolve.h"

static struct shoal_instance inst[3];
static const struct shoal_instance *ptr[3];
static struct shoal_kv heavy = {.key = "weight", .value = "2"};

static struct shoal_resolver *setup(void)
{
    static char *ids[3] = {"a", "b", "c"};
    memset(inst, 0, sizeof(inst));
    for (int i = 0; i < 3; i++) {
        snprintf(inst[i].owner, sizeof(inst[i].owner), "n%d", i);
        inst[i].id = ids[i];
        inst[i].service = "web";
        ptr[i] = &inst[i];
    }
    inst[1].meta = &heavy; /* b: weight 2 */
    inst[1].n_meta = 1;
    struct shoal_resolver *r = shoal_resolver_new(42);
    CHECK(r);
    return r;
}

static int pick(struct shoal_resolver *r, int64_t now, int lb, const char *key, uint32_t *active)
{
    return shoal_resolver_pick(r, now, lb, key, "web", ptr, 3, "client", active);
}

TEST(rr_per_key, "round-robin keeps one weighted cycle per key and per service")
{
    struct shoal_resolver *r = setup();
    int want[] = {0, 1, 2, 1}; /* weights 1, 2, 1: round 0 visits all, round 1 only b */
    for (int k = 0; k < 8; k++) {
        CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "x", NULL), want[k % 4]);
        if (k % 2 == 0) /* another key advancing does not disturb x */
            CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "y", NULL), want[k / 2 % 4]);
    }
    CHECK_EQ(shoal_resolver_pick(r, 0, SHOAL_LB_ROUND_ROBIN, "x", "api", ptr, 3, NULL, NULL), 0);
    CHECK_EQ(shoal_resolver_size(r), 3);
    CHECK_EQ(pick(r, 0, SHOAL_LB_COUNT, "x", NULL), -1);
    CHECK_EQ(shoal_resolver_pick(r, 0, SHOAL_LB_RANDOM, "x", "web", ptr, 0, NULL, NULL), -1);
    shoal_resolver_free(r);
}

TEST(lru, "at most SHOAL_RESOLVE_KEYS_MAX keys are kept; the least recently used goes first")
{
    struct shoal_resolver *r = setup();
    char key[32];
    CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "old", NULL), 0);
    CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "kept", NULL), 0);
    for (int k = 0; k < SHOAL_RESOLVE_KEYS_MAX - 2; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        pick(r, 0, SHOAL_LB_ROUND_ROBIN, key, NULL);
        if (k == 100) /* touching "kept" makes "old" the least recent */
            CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "kept", NULL), 1);
    }
    CHECK_EQ(shoal_resolver_size(r), SHOAL_RESOLVE_KEYS_MAX);
    pick(r, 0, SHOAL_LB_ROUND_ROBIN, "new", NULL); /* evicts "old" */
    CHECK_EQ(shoal_resolver_size(r), SHOAL_RESOLVE_KEYS_MAX);
    CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "kept", NULL), 2);
    CHECK_EQ(pick(r, 0, SHOAL_LB_ROUND_ROBIN, "old", NULL), 0); /* started over */
    shoal_resolver_free(r);
}

TEST(leases, "least-conn picks hold leases until released or expired")
{
    struct shoal_resolver *r = setup();
    uint32_t active;
    /* scores (a+1)/w: b (weight 2) first, then ties */
    CHECK_EQ(pick(r, 0, SHOAL_LB_LEAST_CONN, "x", &active), 1);
    CHECK_EQ(active, 1);
    int second = pick(r, 0, SHOAL_LB_LEAST_CONN, "x", &active); /* a 3-way tie at 1 */
    CHECK(second >= 0);
    CHECK_EQ(active, second == 1 ? 2 : 1);
    /* b's leases left after releasing one of them */
    CHECK_EQ(shoal_resolver_release(r, 1, "x", "web", "n1", "b"), second == 1 ? 1 : 0);
    CHECK_EQ(shoal_resolver_release(r, 1, "x", "web", "n9", "a"), -1); /* wrong owner */
    CHECK_EQ(shoal_resolver_release(r, 1, "nobody", "web", NULL, "a"), -1);
    /* five held picks on key y all expire together: b is first again */
    for (int k = 0; k < 5; k++)
        pick(r, 10, SHOAL_LB_LEAST_CONN, "y", NULL);
    CHECK_EQ(pick(r, 10 + SHOAL_RESOLVE_LEASE_MS, SHOAL_LB_LEAST_CONN, "y", &active), 1);
    CHECK_EQ(active, 1);
    shoal_resolver_free(r);
}

TEST(lease_cap, "at most SHOAL_RESOLVE_LEASES_MAX leases per key; the oldest are dropped")
{
    struct shoal_resolver *r = setup();
    uint32_t active = 0;
    for (int k = 0; k < SHOAL_RESOLVE_LEASES_MAX + 10; k++)
        CHECK_EQ(shoal_resolver_pick(r, k, SHOAL_LB_LEAST_CONN, "x", "web", ptr, 1, NULL, &active),
                 0);
    CHECK_EQ(active, SHOAL_RESOLVE_LEASES_MAX);
    CHECK_EQ(shoal_resolver_release(r, 0, "x", "web", NULL, "a"), SHOAL_RESOLVE_LEASES_MAX - 1);
    shoal_resolver_free(r);
}

TEST_MAIN()

/* balance.c -- load-balancing strategies (balance.h): pure picks over a
 * candidate array, with every piece of state (round-robin counter,
 * generator, active counts) owned by the caller.
 *
 *   round-robin  interleaved weighted round-robin: the cycle of total weight
 *                W is split into rounds r = 0..maxw-1, and round r visits, in
 *                order, every candidate whose weight exceeds r. Over W picks
 *                each candidate gets exactly its weight, and a heavy one is
 *                spread across the cycle rather than picked w times in a row.
 *   random       one uniform draw in [0, W), mapped through the weights.
 *   least-conn   smallest (active + 1) / weight, i.e. the load the instance
 *                would carry after this pick, so an idle heavy instance wins
 *                over an idle light one; ties uniformly at random.
 *   ip-hash      weighted rendezvous hashing (Schindelhauer & Schomaker,
 *                "Weighted distributed hash tables", 2005): score
 *                -w / ln(u), u = hash(client, key) in (0,1). The probability
 *                that a candidate has the top score is w / W, and removing
 *                one candidate changes only the choice of the clients whose
 *                top scorer it was.
 */
#include "core/balance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const lb_names[SHOAL_LB_COUNT] = {"round-robin", "random", "least-conn",
                                                     "ip-hash"};

int shoal_lb_parse(const char *name)
{
    for (int i = 0; name && i < SHOAL_LB_COUNT; i++)
        if (strcmp(name, lb_names[i]) == 0)
            return i;
    return -1;
}

const char *shoal_lb_name(int lb)
{
    return lb >= 0 && lb < SHOAL_LB_COUNT ? lb_names[lb] : "unknown";
}

int shoal_lb_weight_parse(const char *value)
{
    if (!value)
        return 1;
    /* Plain decimal digits only: no sign, space, or leading zero tricks
     * beyond what the range check allows. */
    size_t n = strspn(value, "0123456789");
    if (n == 0 || n > 4 || value[n])
        return -1;
    int w = atoi(value);
    return w >= 1 && w <= SHOAL_LB_WEIGHT_MAX ? w : -1;
}

static uint64_t weight_of(const struct shoal_lb_candidate *c)
{
    if (c->weight == 0)
        return 1;
    return c->weight > SHOAL_LB_WEIGHT_MAX ? SHOAL_LB_WEIGHT_MAX : c->weight;
}

/* Position p (< total weight) of the interleaved cycle. Rounds come in
 * "levels": between two consecutive distinct weights lo < hi, every round
 * visits the same set (weights > lo), so a level is skipped as one block.
 * O(n * distinct weights), no allocation. */
static int rr_at(const struct shoal_lb_candidate *c, size_t n, uint64_t p)
{
    uint64_t lo = 0;
    for (;;) {
        uint64_t hi = UINT64_MAX, cnt = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t w = weight_of(&c[i]);
            if (w > lo) {
                cnt++;
                if (w < hi)
                    hi = w;
            }
        }
        if (cnt == 0)
            return 0; /* p >= total weight: not reached by the caller */
        uint64_t block = (hi - lo) * cnt;
        if (p < block) {
            uint64_t k = p % cnt; /* the k-th candidate heavier than lo */
            for (size_t i = 0; i < n; i++)
                if (weight_of(&c[i]) > lo && k-- == 0)
                    return (int)i;
        }
        p -= block;
        lo = hi;
    }
}

static uint64_t mix64(uint64_t z)
{
    /* splitmix64 finaliser: full avalanche of a 64-bit value */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed; /* FNV-1a 64, then mixed */
    for (; s && *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return mix64(h);
}

/* u in (0,1) from 53 bits of the combined hash (never 0 or 1, so ln(u) is
 * finite and negative). */
static double rendezvous_u(uint64_t client_h, const char *key)
{
    uint64_t h = mix64(client_h ^ hash_str(key, 0x9e3779b97f4a7c15ULL));
    return ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
}

int shoal_lb_pick(int lb, const struct shoal_lb_candidate *c, size_t n, uint64_t *rr,
                  struct shoal_rng *rng, const char *client)
{
    if (n == 0 || !c)
        return -1;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += weight_of(&c[i]);

    switch (lb) {
    case SHOAL_LB_ROUND_ROBIN: {
        uint64_t p = rr ? (*rr)++ : 0;
        return rr_at(c, n, p % total);
    }
    case SHOAL_LB_RANDOM: {
        uint64_t x;
        if (!rng)
            return 0;
        x = total <= UINT32_MAX ? shoal_rng_below(rng, (uint32_t)total)
                                : shoal_rng_next(rng) % total;
        for (size_t i = 0; i < n; i++) {
            uint64_t w = weight_of(&c[i]);
            if (x < w)
                return (int)i;
            x -= w;
        }
        return (int)(n - 1);
    }
    case SHOAL_LB_LEAST_CONN: {
        /* compare (a_i+1)/w_i < (a_b+1)/w_b as (a_i+1)*w_b < (a_b+1)*w_i;
         * a <= 2^32, w <= 1000: no overflow. Ties by reservoir sampling. */
        size_t best = 0;
        uint32_t ties = 1;
        for (size_t i = 1; i < n; i++) {
            uint64_t li = ((uint64_t)c[i].active + 1) * weight_of(&c[best]);
            uint64_t lbest = ((uint64_t)c[best].active + 1) * weight_of(&c[i]);
            if (li < lbest) {
                best = i;
                ties = 1;
            } else if (li == lbest) {
                ties++;
                if (rng && shoal_rng_below(rng, ties) == 0)
                    best = i;
            }
        }
        return (int)best;
    }
    case SHOAL_LB_IP_HASH: {
        uint64_t ch = hash_str(client ? client : "", 0);
        size_t best = 0;
        double best_s = 0;
        for (size_t i = 0; i < n; i++) {
            double u = rendezvous_u(ch, c[i].key ? c[i].key : "");
            double s = -(double)weight_of(&c[i]) / log(u);
            if (i == 0 || s > best_s) {
                best = i;
                best_s = s;
            }
        }
        return (int)best;
    }
    default:
        return -1;
    }
}

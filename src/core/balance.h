/* balance.h -- load-balancing strategies over a set of candidate instances.
 *
 * Pure functions (sans-IO, no global randomness): the agent's resolve API,
 * the C client library and the TCP proxy all pick through here, so a
 * strategy behaves the same wherever it is used. Every strategy honours
 * weights (an instance's meta "weight", 1..1000, default 1).
 *   round-robin  weighted, from a caller-kept counter
 *   random       weighted, from a caller's seeded generator
 *   least-conn   fewest active connections per unit of weight; ties random
 *   ip-hash      weighted rendezvous hashing of the client key: removing
 *                one of N instances moves only the clients that were on it
 */
#ifndef SHOAL_CORE_BALANCE_H
#define SHOAL_CORE_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

enum shoal_lb {
    SHOAL_LB_ROUND_ROBIN = 0,
    SHOAL_LB_RANDOM = 1,
    SHOAL_LB_LEAST_CONN = 2,
    SHOAL_LB_IP_HASH = 3,
};
#define SHOAL_LB_COUNT 4
#define SHOAL_LB_WEIGHT_MAX 1000

struct shoal_lb_candidate {
    const char *key; /* stable identity, e.g. "owner/id" (ip-hash hashes it) */
    uint32_t weight; /* 1..SHOAL_LB_WEIGHT_MAX; 0 is taken as 1 */
    uint32_t active; /* live connections (least-conn) */
};

/* "round-robin", "random", "least-conn", "ip-hash"; -1 if unknown. */
int shoal_lb_parse(const char *name);
const char *shoal_lb_name(int lb);
/* The weight carried in an instance's meta value ("weight"); 1 if absent;
 * -1 if present but not an integer in 1..SHOAL_LB_WEIGHT_MAX. */
int shoal_lb_weight_parse(const char *value);

/* Picks one candidate: returns its index, or -1 when n == 0.
 * rr: the caller's round-robin counter (advanced); rng: for random and
 * least-conn ties; client: the client key for ip-hash (an IP, or any
 * string; NULL/"" hashes as ""). Unused arguments may be NULL. */
int shoal_lb_pick(int lb, const struct shoal_lb_candidate *c, size_t n, uint64_t *rr,
                  struct shoal_rng *rng, const char *client);

#endif

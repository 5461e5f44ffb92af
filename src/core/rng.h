/* rng.h -- the seeded generator core uses instead of rand() (xoshiro256**,
 * seeded through splitmix64). Every core instance owns one; tests print the
 * seed so any run replays.
 */
#ifndef SHOAL_CORE_RNG_H
#define SHOAL_CORE_RNG_H

#include <stdint.h>

struct shoal_rng {
    uint64_t s[4];
};

void shoal_rng_seed(struct shoal_rng *r, uint64_t seed);
uint64_t shoal_rng_next(struct shoal_rng *r);
/* Uniform in [0, n); n > 0. */
uint32_t shoal_rng_below(struct shoal_rng *r, uint32_t n);
/* Uniform in [0, 1). */
double shoal_rng_unit(struct shoal_rng *r);

#endif

/* rng.c -- xoshiro256** (Blackman & Vigna 2018) with splitmix64 seeding. */
#include "core/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void shoal_rng_seed(struct shoal_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t shoal_rng_next(struct shoal_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t shoal_rng_below(struct shoal_rng *r, uint32_t n)
{
    /* Lemire's multiply-shift; the bias for n << 2^32 is negligible here. */
    return (uint32_t)(((shoal_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double shoal_rng_unit(struct shoal_rng *r)
{
    return (double)(shoal_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* retry.c -- exponential backoff with full jitter (see retry.h). */
#include "client/retry.h"

uint64_t shoal_client_backoff_cap(const struct shoal_client_retry *r, unsigned k)
{
    uint64_t cap = r->base_ms;
    for (unsigned i = 0; i < k && cap < r->max_ms; i++)
        cap *= 2;
    return cap < r->max_ms ? cap : r->max_ms;
}

uint64_t shoal_client_backoff_draw(struct shoal_rng *rng, const struct shoal_client_retry *r,
                                   unsigned k)
{
    uint64_t cap = shoal_client_backoff_cap(r, k);
    if (cap >= UINT32_MAX)
        cap = UINT32_MAX - 1;
    return shoal_rng_below(rng, (uint32_t)cap + 1);
}

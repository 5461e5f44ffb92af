/* retry.h -- the client library's backoff schedule (private, pure).
 *
 * Exponential backoff with full jitter: after failed attempt k (from 0) the
 * wait is uniform in [0, min(max_ms, base_ms * 2^k)].
 */
#ifndef SHOAL_CLIENT_RETRY_H
#define SHOAL_CLIENT_RETRY_H

#include <stdint.h>

#include "core/rng.h"
#include "shoal/client.h"

/* min(max_ms, base_ms * 2^k), without overflow. */
uint64_t shoal_client_backoff_cap(const struct shoal_client_retry *r, unsigned k);
/* A wait drawn uniformly from [0, shoal_client_backoff_cap(r, k)]. */
uint64_t shoal_client_backoff_draw(struct shoal_rng *rng, const struct shoal_client_retry *r,
                                   unsigned k);

#endif

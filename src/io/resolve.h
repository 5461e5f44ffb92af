/* resolve.h -- the agent's load-balancing state for GET /v1/resolve.
 *
 * State is kept per caller-visible key (the `key` query parameter, or the
 * HTTP client's address) and service: a round-robin counter, and for
 * least-conn the leases handed out (one per pick, until released through
 * POST /v1/release or expired after SHOAL_RESOLVE_LEASE_MS). At most
 * SHOAL_RESOLVE_KEYS_MAX (key, service) pairs are kept; the least recently
 * used one is forgotten first. Picks go through core/balance.h.
 */
#ifndef SHOAL_IO_RESOLVE_H
#define SHOAL_IO_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"

#define SHOAL_RESOLVE_KEYS_MAX 4096   /* (key, service) states kept, LRU */
#define SHOAL_RESOLVE_LEASES_MAX 1024 /* least-conn leases per state; oldest dropped */
#define SHOAL_RESOLVE_LEASE_MS 300000 /* an unreleased least-conn pick counts for 5 min */
#define SHOAL_RESOLVE_KEY_MAX 256     /* bytes of a caller key or client key */

struct shoal_resolver;

/* Calls malloc; free with shoal_resolver_free(). NULL when out of memory. */
struct shoal_resolver *shoal_resolver_new(uint64_t seed);
void shoal_resolver_free(struct shoal_resolver *r);

/* Picks one of insts[0..n) (passing instances, as the registry query
 * returns them) with strategy lb for caller `key` (NULL is ""); `client`
 * is the ip-hash key. Weights come from meta "weight" (absent or invalid:
 * 1). A least-conn pick takes a lease. Returns the index, or -1 when n is
 * 0, lb is unknown or out of memory. *active (may be NULL) is set to the
 * picked instance's leases for this key after the pick. */
int shoal_resolver_pick(struct shoal_resolver *r, int64_t now, int lb, const char *key,
                        const char *service, const struct shoal_instance *const *insts, size_t n,
                        const char *client, uint32_t *active);

/* Ends the oldest lease of instance id (of owner, or of any owner when
 * owner is NULL) of service for key. Returns the instance's leases left,
 * or -1 if it had none. */
int shoal_resolver_release(struct shoal_resolver *r, int64_t now, const char *key,
                           const char *service, const char *owner, const char *id);

/* (key, service) states held now. */
size_t shoal_resolver_size(const struct shoal_resolver *r);

#endif

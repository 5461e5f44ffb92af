/* regauth.h -- what an owner may say in the registry, and how much of it a
 * replica holds: the rules, sans-IO.
 *
 * A node speaks only for itself (DESIGN.md, Trust). An event for owner O is
 * applied only if O has a principal (a name bound to a key by a trusted
 * certificate: core/principal.h), the event carries a signature that O's key
 * made over its canonical bytes (checked by the wire layer through the
 * registry's verify callback), and, for a live instance, its service name
 * is within O's certificate scope. What an owner may hold on each replica
 * is capped (entries and bytes per owner, and in total): an event that would
 * exceed a cap is refused and counted, and nothing held is disturbed.
 * The checks are ordered cheapest first; signature verification comes last.
 */
#ifndef SHOAL_CORE_REGAUTH_H
#define SHOAL_CORE_REGAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/principal.h"
#include "core/registry.h"

#define SHOAL_REGAUTH_OWNER_INSTANCES 10000u
#define SHOAL_REGAUTH_OWNER_BYTES (16ull << 20)
#define SHOAL_REGAUTH_INSTANCES 1000000u
#define SHOAL_REGAUTH_BYTES (1ull << 30)

/* Fills the unset (0) caps of c with the defaults above. */
void shoal_regauth_caps_defaults(struct shoal_registry_config *c);

/* Who may have said ev: -1 with *pk (borrowed from t) set to the owner's key
 * when the owner has a principal, the event is signed and its service is in
 * the owner's scope; else the refusal (enum shoal_reg_refuse). No crypto. */
int shoal_regauth_speaker(const struct shoal_principals *t, const struct shoal_instance *ev,
                          const uint8_t **pk);

/* What a replica holds, as the caps see it. */
struct shoal_regauth_held {
    uint64_t owner_count, owner_bytes; /* the owner's entries and bytes */
    uint64_t total_count, total_bytes; /* every owner's */
    bool is_new;                       /* the event adds an entry (a new id) */
    uint64_t old_cost;                 /* else the replaced entry's bytes */
};

/* -1 when an event of new_cost bytes fits the caps of c, else the refusal.
 * An event that replaces an entry never exceeds an entry cap; one that
 * shrinks or keeps an owner's bytes never exceeds a byte cap. */
int shoal_regauth_caps_check(const struct shoal_registry_config *c,
                             const struct shoal_regauth_held *h, uint64_t new_cost);

/* The owner's own check before it registers service: 0 when its principal
 * (if it has one) allows the name, else SHOAL_EPERM with why (size cap)
 * naming the service and the scope. */
int shoal_regauth_own_scope(const struct shoal_principals *t, const char *self,
                            const char *service, char *why, size_t cap);

/* A sentence for a cap refusal on the owner's side (API 413). */
void shoal_regauth_cap_why(int reason, const struct shoal_registry_config *c, char *why,
                           size_t cap);

#endif

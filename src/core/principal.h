/* principal.h -- who may speak for which name: the verified facts that
 * certificates establish, as core sees them.
 *
 * A principal is one node name bound to one Ed25519 key by a trusted CA,
 * with the certificate's serial, validity and optional service-name scope.
 * wire/ verifies certificates (signature, CA, validity, revocation) and io/
 * puts the result here; core only consults it: "does this key speak for this
 * name?", "may this name register that service?". The table is bounded: a
 * full table refuses new names (SHOAL_ERANGE) and keeps what it holds.
 */
#ifndef SHOAL_CORE_PRINCIPAL_H
#define SHOAL_CORE_PRINCIPAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "core/strmap.h"
#include "shoal/error.h"

#define SHOAL_PRINCIPAL_PK_BYTES 32
#define SHOAL_PRINCIPAL_CA_ID_BYTES 8
#define SHOAL_SCOPES_MAX 16       /* service-name patterns per certificate */
#define SHOAL_SCOPE_MAX 64        /* pattern: 1..63 of [a-z0-9-*?] */

struct shoal_principal {
    char name[SHOAL_NAME_MAX];
    uint8_t pk[SHOAL_PRINCIPAL_PK_BYTES];
    uint8_t ca_id[SHOAL_PRINCIPAL_CA_ID_BYTES];
    uint64_t serial;
    uint64_t not_before; /* unix seconds */
    uint64_t not_after;  /* unix seconds */
    size_t n_scopes;     /* 0: any service name */
    char scopes[SHOAL_SCOPES_MAX][SHOAL_SCOPE_MAX];
};

struct shoal_principals {
    struct shoal_strmap by_name; /* name -> struct shoal_principal * (owned) */
    size_t cap;                  /* most names held; 0 = unbounded */
};

void shoal_principals_init(struct shoal_principals *t, size_t cap);
/* Frees every principal held. */
void shoal_principals_close(struct shoal_principals *t);

/* Inserts or replaces the principal for p->name (copied). A replacement may
 * change the key only when replace_key is true (certificate rotation, decided
 * by the caller); otherwise a different key for a held name is SHOAL_EEXIST.
 * A new name in a full table is SHOAL_ERANGE. Returns 0 or SHOAL_E*. */
int shoal_principals_put(struct shoal_principals *t, const struct shoal_principal *p,
                         bool replace_key) SHOAL_MUST_CHECK;
/* The principal for name, or NULL. Borrowed until the next put/del. */
const struct shoal_principal *shoal_principals_get(const struct shoal_principals *t,
                                                   const char *name);
/* Removes name (revocation, expiry). Returns true if it was held. */
bool shoal_principals_del(struct shoal_principals *t, const char *name);
size_t shoal_principals_count(const struct shoal_principals *t);

/* True when pk is the key bound to name. */
bool shoal_principal_speaks_for(const struct shoal_principals *t, const char *name,
                                const uint8_t pk[SHOAL_PRINCIPAL_PK_BYTES]);
/* True when p's scope allows the service name (no scope allows any). */
bool shoal_principal_allows_service(const struct shoal_principal *p, const char *service);
/* True when now (unix seconds) is within [not_before, not_after]. */
bool shoal_principal_valid_at(const struct shoal_principal *p, uint64_t now);

/* Glob match of a whole name: '*' any run (also empty), '?' one character,
 * everything else literal. Iterative, O(len(pattern) * len(name)) at worst. */
bool shoal_glob_match(const char *pattern, const char *name);
/* Checks a scope pattern's syntax: 1..63 of [a-z0-9-*?]. Returns 0 or
 * SHOAL_EINVAL. */
int shoal_scope_check(const char *pattern);

#endif

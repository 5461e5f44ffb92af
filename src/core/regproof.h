/* regproof.h -- owner proofs: one owner signature over a whole entry set.
 *
 * Verifying 100,000 event signatures one by one costs seconds of CPU, so a
 * new node filled by anti-entropy would take that long. An owner therefore
 * also signs a proof over its whole set of entries: the root of their
 * sorted canonical hashes (wire/statement.h). A replica that holds exactly
 * that set keeps the proof and relays it with the entries, all in one
 * stream part; a receiver hashes the entries of the owner in that part,
 * and if they are exactly the set the proof signs and the signature is the
 * owner's, admits them without checking each signature. Anything that does
 * not match falls back to one verification per event. Single events
 * (gossip) always keep their own signature.
 */
#ifndef SHOAL_CORE_REGPROOF_H
#define SHOAL_CORE_REGPROOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"

/* An owner's entries go with a proof only if they fit one part this big
 * (encoded bytes as shoal_instance_cost counts them): with the rest of a
 * part it stays under a stream frame (4 MiB). */
#define SHOAL_REGPROOF_PART_MAX (3u << 20)

/* Sorts n hashes in ascending byte order. */
void shoal_regproof_sort(uint8_t (*h)[SHOAL_REG_HASH_BYTES], size_t n);

/* For each proof in m whose owner has a principal in c->principals: when
 * the events of m with that owner are exactly the set it signs and its
 * signature is the owner's, sets pre[i] for those events and ok[k] for the
 * proof. pre has m->n_events entries, ok m->n_proofs (both zeroed by the
 * caller). Counts in st. Calls malloc for scratch (on failure: nothing is
 * marked, and every event is verified alone). */
void shoal_regproof_mark(const struct shoal_registry_config *c, const struct shoal_reg_msg *m,
                         bool *pre, bool *ok, struct shoal_registry_stats *st);

#endif

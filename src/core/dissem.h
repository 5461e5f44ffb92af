/* dissem.h -- the dissemination queue: member updates waiting to be
 * piggybacked on pings, acks and gossip (SWIM sec. 4, "infection-style").
 *
 * One entry per member: a newer update replaces the queued one. Each entry is
 * sent at most `limit` times (lambda * ceil(log10(N+1)), computed by the
 * caller); fills take the least-sent entries first and, among those, the
 * newest, so fresh news overtakes old news that most nodes already have.
 */
#ifndef SHOAL_CORE_DISSEM_H
#define SHOAL_CORE_DISSEM_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

struct shoal_dissem_entry {
    struct shoal_update u;
    uint32_t transmits;
    uint64_t id; /* insertion order: higher is newer */
};

struct shoal_dissem {
    struct shoal_dissem_entry *v;
    size_t n, cap;
    uint64_t next_id;
};

void shoal_dissem_init(struct shoal_dissem *q);
void shoal_dissem_close(struct shoal_dissem *q);
/* Queues u, replacing any queued update about the same member.
 * Returns 0 or SHOAL_ENOMEM. */
int shoal_dissem_push(struct shoal_dissem *q, const struct shoal_update *u);
/* Appends queued updates to m while they fit in *budget bytes (by
 * shoal_update_cost) and m has room; counts a transmit for each and drops
 * entries that reached limit. Updates about `skip` (may be NULL) are left
 * out. Returns how many were added. */
size_t shoal_dissem_fill(struct shoal_dissem *q, struct shoal_msg *m, uint32_t *budget,
                         uint32_t limit, const char *skip);
/* Transmit count of the queued update about name, or -1 if none is queued. */
int shoal_dissem_transmits(const struct shoal_dissem *q, const char *name);
size_t shoal_dissem_len(const struct shoal_dissem *q);

#endif

/* members.h -- the member table: every member this node knows, by name.
 *
 * A dense array (cheap iteration, random picks) with an open-addressing
 * index by name. Removal swaps the last member into the hole and rebuilds the
 * index; it happens only when dead members are reaped, so it is rare.
 * Lifeguard suspicion state lives with each member.
 */
#ifndef SHOAL_CORE_MEMBERS_H
#define SHOAL_CORE_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/swim.h"

#define SHOAL_MAX_CONFIRMERS 16

struct shoal_member {
    struct shoal_member_info info;
    /* Suspicion (valid while info.status == SHOAL_SUSPECT). */
    int64_t suspect_start;
    int64_t suspect_deadline;
    uint32_t n_confirmers; /* independent suspecters heard, the first included */
    char confirmers[SHOAL_MAX_CONFIRMERS][SHOAL_NAME_MAX];
    char suspect_from[SHOAL_NAME_MAX]; /* who we heard suspect it first */
};

struct shoal_members {
    struct shoal_member *v;
    size_t n, cap;
    uint32_t *index; /* slot -> member index + 1; 0 = empty */
    size_t index_cap; /* power of two, >= 2 * cap */
};

int shoal_members_init(struct shoal_members *t);
void shoal_members_close(struct shoal_members *t);
/* Returns the member or NULL. The pointer is valid until the next add/remove. */
struct shoal_member *shoal_members_find(const struct shoal_members *t, const char *name);
/* Adds a zeroed member named name. Returns it, or NULL on ENOMEM. */
struct shoal_member *shoal_members_add(struct shoal_members *t, const char *name);
/* Removes the member at index i (the last member moves to i). */
void shoal_members_remove(struct shoal_members *t, size_t i);

#endif

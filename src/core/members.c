/* members.c -- the member table: dense array plus a name index (FNV-1a,
 * linear probing). See members.h.
 */
#include "core/members.h"

#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void index_insert(struct shoal_members *t, size_t i)
{
    size_t mask = t->index_cap - 1;
    size_t slot = (size_t)name_hash(t->v[i].info.name) & mask;
    while (t->index[slot])
        slot = (slot + 1) & mask;
    t->index[slot] = (uint32_t)(i + 1);
}

static void index_rebuild(struct shoal_members *t)
{
    memset(t->index, 0, t->index_cap * sizeof(*t->index));
    for (size_t i = 0; i < t->n; i++)
        index_insert(t, i);
}

int shoal_members_init(struct shoal_members *t)
{
    memset(t, 0, sizeof(*t));
    t->cap = 16;
    t->index_cap = 64;
    t->v = calloc(t->cap, sizeof(*t->v));
    t->index = calloc(t->index_cap, sizeof(*t->index));
    if (!t->v || !t->index) {
        shoal_members_close(t);
        return SHOAL_ENOMEM;
    }
    return 0;
}

void shoal_members_close(struct shoal_members *t)
{
    free(t->v);
    free(t->index);
    memset(t, 0, sizeof(*t));
}

struct shoal_member *shoal_members_find(const struct shoal_members *t, const char *name)
{
    size_t mask = t->index_cap - 1;
    size_t slot = (size_t)name_hash(name) & mask;
    while (t->index[slot]) {
        struct shoal_member *m = &t->v[t->index[slot] - 1];
        if (strcmp(m->info.name, name) == 0)
            return m;
        slot = (slot + 1) & mask;
    }
    return NULL;
}

struct shoal_member *shoal_members_add(struct shoal_members *t, const char *name)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap * 2;
        struct shoal_member *nv = realloc(t->v, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        t->v = nv;
        t->cap = ncap;
    }
    if (t->index_cap < 2 * t->cap) {
        size_t ncap = t->index_cap;
        while (ncap < 2 * t->cap)
            ncap *= 2;
        uint32_t *ni = calloc(ncap, sizeof(*ni));
        if (!ni)
            return NULL;
        free(t->index);
        t->index = ni;
        t->index_cap = ncap;
        index_rebuild(t);
    }
    struct shoal_member *m = &t->v[t->n];
    memset(m, 0, sizeof(*m));
    strncpy(m->info.name, name, SHOAL_NAME_MAX - 1);
    index_insert(t, t->n);
    t->n++;
    return m;
}

void shoal_members_remove(struct shoal_members *t, size_t i)
{
    if (i >= t->n)
        return;
    t->n--;
    if (i != t->n)
        t->v[i] = t->v[t->n];
    index_rebuild(t);
}

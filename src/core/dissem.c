/* dissem.c -- the dissemination queue (see dissem.h). The queue holds at
 * most one entry per member, so it is small (<= N); fills sort it in place. */
#include "core/dissem.h"

#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

void shoal_dissem_init(struct shoal_dissem *q)
{
    memset(q, 0, sizeof(*q));
}

void shoal_dissem_close(struct shoal_dissem *q)
{
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static struct shoal_dissem_entry *find(const struct shoal_dissem *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->v[i].u.name, name) == 0)
            return &q->v[i];
    return NULL;
}

int shoal_dissem_push(struct shoal_dissem *q, const struct shoal_update *u)
{
    struct shoal_dissem_entry *e = find(q, u->name);
    if (!e) {
        if (q->n == q->cap) {
            size_t ncap = q->cap ? q->cap * 2 : 16;
            struct shoal_dissem_entry *nv = realloc(q->v, ncap * sizeof(*nv));
            if (!nv)
                return SHOAL_ENOMEM;
            q->v = nv;
            q->cap = ncap;
        }
        e = &q->v[q->n++];
    }
    e->u = *u;
    e->transmits = 0;
    e->id = ++q->next_id;
    return 0;
}

static int by_priority(const void *a, const void *b)
{
    const struct shoal_dissem_entry *x = a, *y = b;
    if (x->transmits != y->transmits)
        return x->transmits < y->transmits ? -1 : 1;
    return x->id > y->id ? -1 : (x->id < y->id ? 1 : 0);
}

size_t shoal_dissem_fill(struct shoal_dissem *q, struct shoal_msg *m, uint32_t *budget,
                         uint32_t limit, const char *skip)
{
    size_t added = 0;
    if (q->n == 0)
        return 0;
    qsort(q->v, q->n, sizeof(*q->v), by_priority);
    for (size_t i = 0; i < q->n && m->n_updates < SHOAL_MSG_MAX_UPDATES; i++) {
        struct shoal_dissem_entry *e = &q->v[i];
        uint32_t cost = shoal_update_cost(&e->u);
        if (skip && strcmp(e->u.name, skip) == 0)
            continue;
        if (cost > *budget)
            continue; /* a shorter one may still fit */
        *budget -= cost;
        m->updates[m->n_updates++] = e->u;
        e->transmits++;
        added++;
    }
    /* Drop what has been sent enough times. */
    size_t w = 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->v[i].transmits < limit)
            q->v[w++] = q->v[i];
    q->n = w;
    return added;
}

int shoal_dissem_transmits(const struct shoal_dissem *q, const char *name)
{
    const struct shoal_dissem_entry *e = find(q, name);
    return e ? (int)e->transmits : -1;
}

size_t shoal_dissem_len(const struct shoal_dissem *q)
{
    return q->n;
}

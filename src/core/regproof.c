/* regproof.c -- owner proofs (see regproof.h). */
#include "core/regproof.h"

#include <stdlib.h>
#include <string.h>

#include "core/principal.h"

static int by_hash(const void *a, const void *b)
{
    return memcmp(a, b, SHOAL_REG_HASH_BYTES);
}

void shoal_regproof_sort(uint8_t (*h)[SHOAL_REG_HASH_BYTES], size_t n)
{
    if (n > 1)
        qsort(h, n, SHOAL_REG_HASH_BYTES, by_hash);
}

struct owned {
    const char *owner;
    uint32_t i;
};

static int by_owner(const void *a, const void *b)
{
    const struct owned *x = a, *y = b;
    int c = strcmp(x->owner, y->owner);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* The first index of v (sorted by owner) whose owner is >= name. */
static size_t lower_bound(const struct owned *v, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].owner, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Do the k events v[0..k) form exactly p's set, signed by pk? */
static bool proof_holds(const struct shoal_registry_config *c, const struct shoal_reg_msg *m,
                        const struct owned *v, size_t k, const struct shoal_reg_proof *p,
                        const uint8_t *pk, struct shoal_registry_stats *st)
{
    if (k != p->count || k == 0)
        return false;
    uint8_t (*h)[SHOAL_REG_HASH_BYTES] = malloc(k * SHOAL_REG_HASH_BYTES);
    uint8_t root[SHOAL_REG_HASH_BYTES];
    if (!h)
        return false;
    for (size_t j = 0; j < k; j++)
        c->event_hash(c->ud, &m->events[v[j].i], h[j]);
    shoal_regproof_sort(h, k);
    c->set_root(c->ud, (const uint8_t(*)[SHOAL_REG_HASH_BYTES])h, k, root);
    free(h);
    if (memcmp(root, p->root, sizeof(root)) != 0)
        return false;
    st->sig_verified++;
    return c->verify_proof(c->ud, p, pk);
}

void shoal_regproof_mark(const struct shoal_registry_config *c, const struct shoal_reg_msg *m,
                         bool *pre, bool *ok, struct shoal_registry_stats *st)
{
    if (!m->n_proofs || !m->n_events || !c->principals || !c->event_hash || !c->set_root ||
        !c->verify_proof)
        return;
    struct owned *v = malloc(m->n_events * sizeof(*v));
    if (!v)
        return;
    for (uint32_t i = 0; i < m->n_events; i++)
        v[i] = (struct owned){m->events[i].owner, i};
    qsort(v, m->n_events, sizeof(*v), by_owner);
    for (uint32_t k = 0; k < m->n_proofs; k++) {
        const struct shoal_reg_proof *p = &m->proofs[k];
        const struct shoal_principal *pr = shoal_principals_get(c->principals, p->owner);
        if (!pr)
            continue; /* the events are refused one by one as unknown_owner */
        size_t lo = lower_bound(v, m->n_events, p->owner), hi = lo;
        while (hi < m->n_events && strcmp(v[hi].owner, p->owner) == 0)
            hi++;
        /* A proof for an owner given twice, or whose events were already
         * marked, proves nothing new. */
        if (lo < hi && pre[v[lo].i])
            continue;
        if (!proof_holds(c, m, v + lo, hi - lo, p, pr->pk, st)) {
            st->proofs_failed++;
            continue;
        }
        st->proofs_verified++;
        st->events_by_proof += hi - lo;
        ok[k] = true;
        for (size_t j = lo; j < hi; j++)
            pre[v[j].i] = true;
    }
    free(v);
}

/* resolve.c -- per-key load-balancing state of the agent (resolve.h).
 *
 * A state is found by "LEN:KEY/SERVICE" (length-prefixed, so no key can
 * collide with another key/service pair) in a strmap and sits on an LRU
 * list. Leases are kept in pick order; since every lease lives the same
 * SHOAL_RESOLVE_LEASE_MS, the expired ones are always a prefix.
 */
#include "io/resolve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/balance.h"
#include "core/rng.h"
#include "core/strmap.h"

struct rs_lease {
    char *inst; /* "owner/id" */
    int64_t expires;
};

struct rs_state {
    char *name; /* the map key */
    uint64_t rr;
    struct rs_lease *leases;
    size_t n_leases, cap_leases;
    struct rs_state *prev, *next; /* LRU: head is the most recent */
};

struct shoal_resolver {
    struct shoal_strmap map;
    struct rs_state *head, *tail;
    struct shoal_rng rng;
};

struct shoal_resolver *shoal_resolver_new(uint64_t seed)
{
    struct shoal_resolver *r = calloc(1, sizeof(*r));
    if (r)
        shoal_rng_seed(&r->rng, seed);
    return r;
}

static void state_free(struct rs_state *s)
{
    for (size_t i = 0; i < s->n_leases; i++)
        free(s->leases[i].inst);
    free(s->leases);
    free(s->name);
    free(s);
}

static void lru_unlink(struct shoal_resolver *r, struct rs_state *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        r->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        r->tail = s->prev;
    s->prev = s->next = NULL;
}

static void lru_push(struct shoal_resolver *r, struct rs_state *s)
{
    s->next = r->head;
    if (r->head)
        r->head->prev = s;
    r->head = s;
    if (!r->tail)
        r->tail = s;
}

void shoal_resolver_free(struct shoal_resolver *r)
{
    if (!r)
        return;
    while (r->head) {
        struct rs_state *s = r->head;
        lru_unlink(r, s);
        state_free(s);
    }
    shoal_strmap_close(&r->map);
    free(r);
}

size_t shoal_resolver_size(const struct shoal_resolver *r) { return r ? r->map.n : 0; }

static char *state_name(const char *key, const char *service)
{
    size_t len = strlen(key) + strlen(service) + 24;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "%zu:%s/%s", strlen(key), key, service);
    return s;
}

/* The state of (key, service), made the most recent; created if `create`.
 * NULL if absent (or out of memory). */
static struct rs_state *state_get(struct shoal_resolver *r, const char *key, const char *service,
                                  bool create)
{
    char *name = state_name(key ? key : "", service);
    if (!name)
        return NULL;
    struct rs_state *s = shoal_strmap_get(&r->map, name);
    if (s || !create) {
        free(name);
        if (s) {
            lru_unlink(r, s);
            lru_push(r, s);
        }
        return s;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        free(name);
        return NULL;
    }
    s->name = name;
    if (shoal_strmap_put(&r->map, s->name, s) != 0) {
        state_free(s);
        return NULL;
    }
    lru_push(r, s);
    if (r->map.n > SHOAL_RESOLVE_KEYS_MAX) {
        struct rs_state *old = r->tail;
        lru_unlink(r, old);
        shoal_strmap_del(&r->map, old->name);
        state_free(old);
    }
    return s;
}

static void lease_drop(struct rs_state *s, size_t i)
{
    free(s->leases[i].inst);
    memmove(&s->leases[i], &s->leases[i + 1], (s->n_leases - i - 1) * sizeof(s->leases[0]));
    s->n_leases--;
}

static void leases_expire(struct rs_state *s, int64_t now)
{
    size_t k = 0;
    while (k < s->n_leases && s->leases[k].expires <= now)
        free(s->leases[k++].inst);
    if (k) {
        memmove(s->leases, s->leases + k, (s->n_leases - k) * sizeof(s->leases[0]));
        s->n_leases -= k;
    }
}

/* "owner/id" of an instance, into buf. */
static void inst_key(char *buf, size_t len, const char *owner, const char *id)
{
    snprintf(buf, len, "%s/%s", owner, id);
}

static uint32_t leases_of(const struct rs_state *s, const char *inst)
{
    uint32_t n = 0;
    for (size_t i = 0; i < s->n_leases; i++)
        n += strcmp(s->leases[i].inst, inst) == 0;
    return n;
}

int shoal_resolver_pick(struct shoal_resolver *r, int64_t now, int lb, const char *key,
                        const char *service, const struct shoal_instance *const *insts, size_t n,
                        const char *client, uint32_t *active)
{
    if (n == 0 || lb < 0 || lb >= SHOAL_LB_COUNT)
        return -1;
    struct shoal_lb_candidate *c = calloc(n, sizeof(*c));
    char **names = calloc(n, sizeof(*names));
    struct rs_state *s = NULL;
    int pick = -1;
    if (!c || !names)
        goto out;
    if (lb == SHOAL_LB_ROUND_ROBIN || lb == SHOAL_LB_LEAST_CONN) {
        if (!(s = state_get(r, key, service, true)))
            goto out;
        leases_expire(s, now);
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(insts[i]->owner) + strlen(insts[i]->id) + 2;
        if (!(names[i] = malloc(len)))
            goto out;
        inst_key(names[i], len, insts[i]->owner, insts[i]->id);
        const char *wv = NULL;
        for (uint32_t k = 0; k < insts[i]->n_meta; k++)
            if (strcmp(insts[i]->meta[k].key, "weight") == 0)
                wv = insts[i]->meta[k].value;
        int w = shoal_lb_weight_parse(wv);
        c[i].key = names[i];
        c[i].weight = w > 0 ? (uint32_t)w : 1;
        c[i].active = s && lb == SHOAL_LB_LEAST_CONN ? leases_of(s, names[i]) : 0;
    }
    pick = shoal_lb_pick(lb, c, n, s ? &s->rr : NULL, &r->rng, client);
    if (pick < 0)
        goto out;
    if (lb == SHOAL_LB_LEAST_CONN) {
        if (s->n_leases == SHOAL_RESOLVE_LEASES_MAX)
            lease_drop(s, 0);
        if (s->n_leases == s->cap_leases) {
            size_t cap = s->cap_leases ? s->cap_leases * 2 : 8;
            struct rs_lease *nl = realloc(s->leases, cap * sizeof(*nl));
            if (!nl) {
                pick = -1;
                goto out;
            }
            s->leases = nl;
            s->cap_leases = cap;
        }
        s->leases[s->n_leases++] =
            (struct rs_lease){.inst = names[pick], .expires = now + SHOAL_RESOLVE_LEASE_MS};
        names[pick] = NULL; /* the lease owns it now */
        /* recounted: the lease dropped at the cap may have been this one's */
        c[pick].active = leases_of(s, s->leases[s->n_leases - 1].inst);
    }
    if (active)
        *active = c[pick].active;
out:
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(c);
    return pick;
}

int shoal_resolver_release(struct shoal_resolver *r, int64_t now, const char *key,
                           const char *service, const char *owner, const char *id)
{
    struct rs_state *s = state_get(r, key, service, false);
    if (!s)
        return -1;
    leases_expire(s, now);
    for (size_t i = 0; i < s->n_leases; i++) {
        const char *inst = s->leases[i].inst, *slash = strrchr(inst, '/');
        if (!slash || strcmp(slash + 1, id) != 0)
            continue;
        if (owner && (strlen(owner) != (size_t)(slash - inst) ||
                      strncmp(inst, owner, (size_t)(slash - inst)) != 0))
            continue;
        int left = (int)leases_of(s, inst) - 1; /* counted before it goes */
        lease_drop(s, i);
        return left;
    }
    return -1;
}

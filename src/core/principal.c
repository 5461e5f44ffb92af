/* principal.c -- the table of verified name -> key bindings and the
 * service-scope glob. See principal.h. */
#include "core/principal.h"

#include <stdlib.h>
#include <string.h>

void shoal_principals_init(struct shoal_principals *t, size_t cap)
{
    memset(t, 0, sizeof *t);
    t->cap = cap;
}

void shoal_principals_close(struct shoal_principals *t)
{
    for (size_t i = 0; i < t->by_name.cap; i++)
        if (t->by_name.slots[i].key)
            free(t->by_name.slots[i].value);
    shoal_strmap_close(&t->by_name);
    t->cap = 0;
}

int shoal_principals_put(struct shoal_principals *t, const struct shoal_principal *p,
                         bool replace_key)
{
    if (p->name[0] == '\0' || memchr(p->name, '\0', sizeof p->name) == NULL)
        return SHOAL_EINVAL;
    if (p->n_scopes > SHOAL_SCOPES_MAX)
        return SHOAL_EINVAL;
    for (size_t i = 0; i < p->n_scopes; i++)
        if (shoal_scope_check(p->scopes[i]) != 0)
            return SHOAL_EINVAL;
    struct shoal_principal *held = shoal_strmap_get(&t->by_name, p->name);
    if (held) {
        if (!replace_key && memcmp(held->pk, p->pk, sizeof held->pk) != 0)
            return SHOAL_EEXIST;
        *held = *p; /* the key (held->name) keeps its address */
        return 0;
    }
    if (t->cap && t->by_name.n >= t->cap)
        return SHOAL_ERANGE;
    struct shoal_principal *n = malloc(sizeof *n);
    if (!n)
        return SHOAL_ENOMEM;
    *n = *p;
    int rc = shoal_strmap_put(&t->by_name, n->name, n);
    if (rc != 0)
        free(n);
    return rc;
}

const struct shoal_principal *shoal_principals_get(const struct shoal_principals *t,
                                                   const char *name)
{
    return shoal_strmap_get(&t->by_name, name);
}

bool shoal_principals_del(struct shoal_principals *t, const char *name)
{
    struct shoal_principal *p = shoal_strmap_del(&t->by_name, name);
    free(p);
    return p != NULL;
}

size_t shoal_principals_count(const struct shoal_principals *t)
{
    return t->by_name.n;
}

bool shoal_principal_speaks_for(const struct shoal_principals *t, const char *name,
                                const uint8_t pk[SHOAL_PRINCIPAL_PK_BYTES])
{
    const struct shoal_principal *p = shoal_principals_get(t, name);
    return p && memcmp(p->pk, pk, SHOAL_PRINCIPAL_PK_BYTES) == 0;
}

bool shoal_principal_allows_service(const struct shoal_principal *p, const char *service)
{
    if (p->n_scopes == 0)
        return true;
    for (size_t i = 0; i < p->n_scopes; i++)
        if (shoal_glob_match(p->scopes[i], service))
            return true;
    return false;
}

bool shoal_principal_valid_at(const struct shoal_principal *p, uint64_t now)
{
    return now >= p->not_before && now <= p->not_after;
}

/* The classic greedy matcher with one backtrack point: on a mismatch after a
 * '*', retry with the star swallowing one more character. Linear in practice,
 * quadratic at worst, never exponential. */
bool shoal_glob_match(const char *pattern, const char *name)
{
    const char *p = pattern, *s = name;
    const char *star = NULL, *retry = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            retry = s;
        } else if (*p == '?' || (*p && *p == *s)) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++retry;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int shoal_scope_check(const char *pattern)
{
    size_t n = strnlen(pattern, SHOAL_SCOPE_MAX);
    if (n == 0 || n >= SHOAL_SCOPE_MAX)
        return SHOAL_EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '*' ||
              c == '?'))
            return SHOAL_EINVAL;
    }
    return 0;
}

/* strmap.c -- string-keyed open-addressing hash map (see strmap.h). */
#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

uint64_t shoal_strhash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static size_t find_slot(const struct shoal_strmap *m, const char *key)
{
    size_t mask = m->cap - 1;
    size_t i = (size_t)shoal_strhash(key) & mask;
    while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0)
        i = (i + 1) & mask;
    return i;
}

void *shoal_strmap_get(const struct shoal_strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t i = find_slot(m, key);
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(struct shoal_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct shoal_strmap_slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return SHOAL_ENOMEM;
    struct shoal_strmap old = *m;
    m->slots = ns;
    m->cap = ncap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            m->slots[find_slot(m, old.slots[i].key)] = old.slots[i];
    free(old.slots);
    return 0;
}

int shoal_strmap_put(struct shoal_strmap *m, const char *key, void *value)
{
    if ((m->n + 1) * 4 > m->cap * 3 && grow(m) != 0) /* load <= 3/4 */
        return SHOAL_ENOMEM;
    size_t i = find_slot(m, key);
    if (!m->slots[i].key)
        m->n++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return 0;
}

void *shoal_strmap_del(struct shoal_strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = find_slot(m, key);
    if (!m->slots[i].key)
        return NULL;
    void *v = m->slots[i].value;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    size_t j = i;
    for (;;) {
        m->slots[i].key = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (!m->slots[j].key) {
                m->n--;
                return v;
            }
            size_t home = (size_t)shoal_strhash(m->slots[j].key) & mask;
            /* Move j back to i unless its home lies cyclically in (i, j]. */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
                continue;
            break;
        }
        m->slots[i] = m->slots[j];
        i = j;
    }
}

void shoal_strmap_close(struct shoal_strmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

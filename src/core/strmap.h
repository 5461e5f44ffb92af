/* strmap.h -- a string-keyed hash map of pointers (open addressing, linear
 * probing, backward-shift deletion). Keys are borrowed: each value must
 * keep its own key alive for as long as it is in the map. Used by the
 * registry for owners, instance ids and services.
 */
#ifndef SHOAL_CORE_STRMAP_H
#define SHOAL_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct shoal_strmap_slot {
    const char *key;
    void *value;
};

struct shoal_strmap {
    struct shoal_strmap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

uint64_t shoal_strhash(const char *s);
void *shoal_strmap_get(const struct shoal_strmap *m, const char *key);
/* Inserts or replaces. Returns 0 or SHOAL_ENOMEM. */
int shoal_strmap_put(struct shoal_strmap *m, const char *key, void *value);
/* Removes key if present; returns its value or NULL. */
void *shoal_strmap_del(struct shoal_strmap *m, const char *key);
void shoal_strmap_close(struct shoal_strmap *m);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

#endif

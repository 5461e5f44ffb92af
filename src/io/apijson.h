/* apijson.h -- the instances answer of GET /v1/instances/NAME, written
 * straight into one buffer.
 *
 * The same bytes as building jansson objects and json_dumps(JSON_COMPACT)
 * (tests/io/test_apijson.c compares them), without a heap object and a
 * hash table per field: a 10,000-instance answer is one pass over the
 * instances (issue 14, item 6).
 */
#ifndef SHOAL_IO_APIJSON_H
#define SHOAL_IO_APIJSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"

/* What membership says of an owner ("alive", ..., "unknown"): a static
 * string. Asked once per run of instances with the same owner. */
typedef const char *(*shoal_apijson_owner_status)(void *ud, const char *owner);

/* {"index":index,"instances":[...]} for v[0..n) as docs/registry-interfaces.md
 * shows them. Calls malloc (NUL-terminated; the caller frees); *len its
 * length. NULL when out of memory. */
char *shoal_apijson_instances(const struct shoal_instance *const *v, size_t n, uint64_t index,
                              shoal_apijson_owner_status status, void *ud, size_t *len);

#endif

/* checkspec.h -- active checks as the HTTP API reads and shows them.
 *
 * Register body: "checks": [{"http": URL | "tcp": "HOST:PORT",
 * "interval": D, "timeout": D, "rise": N, "fall": N}, ...] and
 * "deregister_critical_after": D, where D is a duration string ("10s") or
 * milliseconds. Shown as "checks": [{"kind", "target", "status", "output",
 * "interval_ms", "timeout_ms"}] and "deregister_critical_after_ms".
 */
#ifndef SHOAL_IO_CHECKSPEC_H
#define SHOAL_IO_CHECKSPEC_H

#include <jansson.h>
#include <stddef.h>

#include "core/registry.h"

/* Reads "checks" and "deregister_critical_after" of body into spec
 * (spec->checks = out; targets borrow body's strings). Returns 0, or -1
 * with a sentence naming the field in err. */
int shoal_checkspec_parse(const json_t *body, struct shoal_instance *spec,
                          struct shoal_check out[SHOAL_CHECKS_MAX], char *err, size_t errlen);
/* Adds "checks" and "deregister_critical_after_ms" to the instance object v. */
void shoal_checkspec_show(json_t *v, const struct shoal_instance *in);

#endif

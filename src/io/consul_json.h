/* consul_json.h -- Consul's JSON shapes over shoal's registry, sans-IO.
 *
 * What the Consul-compatible HTTP API (io/consul_api.c) and the Consul JSON
 * service files (io/svcfile.c) share: field lookup the way Consul decodes
 * (case-insensitive, snake_case too), Go durations, the translation of a
 * Consul service definition into shoal's native register body (so one
 * validation, io/checkspec.c's, applies to both), the check ids Consul
 * gives a service's checks, and the filter expressions of `?filter=`.
 */
#ifndef SHOAL_IO_CONSUL_JSON_H
#define SHOAL_IO_CONSUL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"

#define SHOAL_CONSUL_CHECK_ID_MAX (SHOAL_ID_MAX + 16)

/* obj's member whose name equals name ignoring case and '_' (Consul's
 * decoder accepts "ID", "id", "Id"; its config files "deregister_..."). */
json_t *shoal_consul_get(const json_t *obj, const char *name);

/* A Go duration ("300ms", "1.5h", "2h45m", "10s"; a bare "0") in ms,
 * rounded up to whole ms. Returns 0 or -1. */
int shoal_consul_duration(const char *s, uint64_t *ms);

/* Translates one Consul service definition (the object of PUT
 * /v1/agent/service/register or of "service" in a file) into shoal's
 * native register body (*out, a new reference). default_address is used
 * when Address is empty (Consul then means the node's address). Returns 0,
 * or -1 with a sentence naming the field in err. */
int shoal_consul_to_native(const json_t *svc, const char *default_address, json_t **out, char *err,
                           size_t errlen);

/* A native register body (as shoal_consul_to_native makes) as an owned
 * instance (free with shoal_instance_clear), checked by the native rules:
 * io/checkspec.c for the checks, shoal_instance_validate for the rest.
 * Returns 0, or -1 with a sentence in err. */
int shoal_consul_native_instance(const json_t *native, struct shoal_instance *out, char *err,
                                 size_t errlen);

/* The checks Consul would list for an instance: a TTL check first when it
 * has a TTL, then its active checks. Ids are "service:ID" for a single
 * check, else "service:ID:1", ":2", ... (Consul's numbering). */
struct shoal_consul_check {
    char id[SHOAL_CONSUL_CHECK_ID_MAX];
    const char *type; /* "ttl", "http", "tcp" */
    uint8_t status;   /* enum shoal_health */
    const char *output;
    const struct shoal_check *check; /* NULL for the TTL check */
};
size_t shoal_consul_checks(const struct shoal_instance *in,
                           struct shoal_consul_check out[SHOAL_CHECKS_MAX + 1]);
/* Splits a check id of that form into the instance id (into id, idlen)
 * and the position in shoal_consul_checks' list (0-based; -1 for "the only
 * check"). Returns false if it is not of that form. */
bool shoal_consul_check_parse(const char *check_id, char *id, size_t idlen, int *pos);

/* "passing", "warning", "critical" as Consul writes them. */
const char *shoal_consul_status(uint8_t health);

/* A UUID-shaped node id derived from the node name (Consul clients expect
 * one; shoal nodes have none). out must hold 37 bytes. */
void shoal_consul_node_id(const char *name, char out[37]);

/* ---- ?filter= ----
 * The common expressions of Consul's filter language: SELECTOR OP VALUE
 * with OP one of ==, !=, contains, not contains, in ("VALUE in SELECTOR",
 * "not in"), is empty, is not empty; joined by `and` / `or` (and binds
 * tighter), optionally negated with `not`, parentheses allowed. A selector
 * is a dotted path into each result object (Service.Tags, ServiceMeta.x,
 * Node.Node). */
struct shoal_consul_filter;
/* Parses expr. Returns NULL with a sentence in err. Calls malloc; free
 * with shoal_consul_filter_free(). */
struct shoal_consul_filter *shoal_consul_filter_new(const char *expr, char *err, size_t errlen);
void shoal_consul_filter_free(struct shoal_consul_filter *f);
/* Does the JSON object v match? */
bool shoal_consul_filter_match(const struct shoal_consul_filter *f, const json_t *v);

#endif

/* svcjson.c -- Consul JSON service definitions in --config-dir (*.json):
 * {"service": {...}} or {"services": [{...}, ...]}, each translated by
 * io/consul_json.c into the native register body and checked by the native
 * rules, so a file and PUT /v1/agent/service/register accept the same
 * definitions. Errors read "FILE:LINE: message" like the *.service parser's
 * (LINE from jansson for syntax errors, else 0 with the definition named).
 */
#include "io/svcfile.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/consul_json.h"
#include "shoal/error.h"

static int one_def(const json_t *def, const char *where, const char *name,
                   const char *default_address, struct shoal_svclist *prior,
                   struct shoal_svclist *cur, char *err, size_t errlen)
{
    char why[400];
    json_t *native = NULL;
    struct shoal_instance in;
    if (shoal_consul_to_native(def, default_address, &native, why, sizeof(why)) != 0 ||
        shoal_consul_native_instance(native, &in, why, sizeof(why)) != 0) {
        json_decref(native);
        snprintf(err, errlen, "%s:0: %s: %s", name, where, why);
        return SHOAL_EINVAL;
    }
    json_decref(native);
    for (int pass = 0; pass < 2; pass++) {
        const struct shoal_svclist *l = pass ? cur : prior;
        for (size_t i = 0; l && i < l->n; i++) {
            if (strcmp(l->defs[i].spec.id, in.id) == 0) {
                snprintf(err, errlen, "%s:0: %s: id '%.64s' is already defined at %s:%d", name,
                         where, in.id, l->defs[i].file, l->defs[i].line);
                shoal_instance_clear(&in);
                return SHOAL_EINVAL;
            }
        }
    }
    struct shoal_svcdef *nd = realloc(cur->defs, (cur->n + 1) * sizeof(*nd));
    if (!nd) {
        shoal_instance_clear(&in);
        return SHOAL_ENOMEM;
    }
    cur->defs = nd;
    cur->cap = cur->n + 1;
    nd[cur->n].spec = in;
    nd[cur->n].line = 0;
    if (!(nd[cur->n].file = strdup(name))) {
        shoal_instance_clear(&in);
        return SHOAL_ENOMEM;
    }
    cur->n++;
    return 0;
}

int shoal_svcfile_parse_json(const char *text, size_t len, const char *name,
                             const char *default_address, struct shoal_svclist *out, char *err,
                             size_t errlen)
{
    json_error_t jerr;
    struct shoal_svclist cur = {0};
    int rc = 0;

    if (len > SHOAL_SVCFILE_MAX_BYTES) {
        snprintf(err, errlen, "%s:0: file is larger than %d bytes", name, SHOAL_SVCFILE_MAX_BYTES);
        return SHOAL_EINVAL;
    }
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(err, errlen, "%s:%d: not valid JSON: %s", name, jerr.line, jerr.text);
        return SHOAL_EINVAL;
    }
    json_t *one = json_object_get(doc, "service"), *many = json_object_get(doc, "services");
    if (!json_is_object(doc) || !!one == !!many || json_object_size(doc) != 1) {
        snprintf(err, errlen,
                 "%s:0: expected {\"service\": {...}} or {\"services\": [{...}, ...]} (a Consul "
                 "service definition)",
                 name);
        json_decref(doc);
        return SHOAL_EINVAL;
    }
    if (one) {
        rc = one_def(one, "service", name, default_address, out, &cur, err, errlen);
    } else if (!json_is_array(many)) {
        snprintf(err, errlen, "%s:0: \"services\" must be an array", name);
        rc = SHOAL_EINVAL;
    } else {
        for (size_t i = 0; rc == 0 && i < json_array_size(many); i++) {
            char where[32];
            snprintf(where, sizeof(where), "services[%zu]", i);
            rc = one_def(json_array_get(many, i), where, name, default_address, out, &cur, err,
                         errlen);
        }
    }
    json_decref(doc);
    if (rc == 0 && cur.n) {
        struct shoal_svcdef *nd = realloc(out->defs, (out->n + cur.n) * sizeof(*nd));
        if (!nd) {
            rc = SHOAL_ENOMEM;
        } else {
            out->defs = nd;
            memcpy(out->defs + out->n, cur.defs, cur.n * sizeof(*cur.defs));
            out->n += cur.n;
            out->cap = out->n;
            free(cur.defs);
            return 0;
        }
    }
    if (rc == SHOAL_ENOMEM)
        snprintf(err, errlen, "%s:0: out of memory", name);
    shoal_svclist_clear(&cur);
    return rc;
}

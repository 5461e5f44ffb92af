/* checkspec.c -- the HTTP API's JSON form of active checks (checkspec.h).
 * Every field is checked here by name; the limits themselves (target
 * syntax, timeout < interval) are shoal_instance_validate's, so the API,
 * service files and the wire refuse the same things with the same words.
 */
#include "io/checkspec.h"

#include <stdio.h>
#include <string.h>

#include "core/addr.h"

/* A duration as a string ("2s") or milliseconds; 0 or -1. */
static int duration(const json_t *v, uint32_t *ms)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0 || n > UINT32_MAX)
            return -1;
        *ms = (uint32_t)n;
        return 0;
    }
    return json_is_string(v) && shoal_duration_parse(json_string_value(v), ms) == 0 ? 0 : -1;
}

static int one_check(const json_t *o, size_t i, struct shoal_check *c, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    memset(c, 0, sizeof(*c));
    if (!json_is_object(o)) {
        snprintf(err, errlen, "\"checks\"[%zu] must be an object", i);
        return -1;
    }
    const json_t *http = json_object_get(o, "http"), *tcp = json_object_get(o, "tcp");
    if (!!http == !!tcp) {
        snprintf(err, errlen,
                 "\"checks\"[%zu] needs exactly one of \"http\" (a URL) or \"tcp\" "
                 "(HOST:PORT)",
                 i);
        return -1;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        uint32_t n;
        if (strcmp(key, "http") == 0 || strcmp(key, "tcp") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "\"checks\"[%zu].\"%s\" must be a string", i, key);
                return -1;
            }
            c->kind = key[0] == 'h' ? SHOAL_CHECK_HTTP : SHOAL_CHECK_TCP;
            c->target = (char *)json_string_value(v);
        } else if (strcmp(key, "interval") == 0 || strcmp(key, "timeout") == 0) {
            if (duration(v, &n) != 0 || n == 0) {
                snprintf(err, errlen,
                         "\"checks\"[%zu].\"%s\" must be a duration such as \"10s\" "
                         "or a positive number of milliseconds",
                         i, key);
                return -1;
            }
            *(key[0] == 'i' ? &c->interval_ms : &c->timeout_ms) = n;
        } else if (strcmp(key, "rise") == 0 || strcmp(key, "fall") == 0) {
            json_int_t k = json_is_integer(v) ? json_integer_value(v) : -1;
            if (k < 1 || k > SHOAL_CHECK_DAMP_MAX) {
                snprintf(err, errlen, "\"checks\"[%zu].\"%s\" must be an integer 1..%d", i, key,
                         SHOAL_CHECK_DAMP_MAX);
                return -1;
            }
            *(key[0] == 'r' ? &c->rise : &c->fall) = (uint8_t)k;
        } else {
            char e[40];
            snprintf(e, sizeof(e), "%.32s", key);
            snprintf(err, errlen,
                     "\"checks\"[%zu]: unknown key \"%s\" (expected http, tcp, "
                     "interval, timeout, rise, fall)",
                     i, e);
            return -1;
        }
    }
    shoal_check_defaults(c);
    c->status = SHOAL_CRITICAL;
    return 0;
}

int shoal_checkspec_parse(const json_t *body, struct shoal_instance *spec,
                          struct shoal_check out[SHOAL_CHECKS_MAX], char *err, size_t errlen)
{
    const json_t *v = json_object_get(body, "checks");
    if (v) {
        size_t n = json_array_size(v);
        if (!json_is_array(v)) {
            snprintf(err, errlen, "\"checks\" must be an array of check objects");
            return -1;
        }
        if (n > SHOAL_CHECKS_MAX) {
            snprintf(err, errlen, "\"checks\": at most %d checks", SHOAL_CHECKS_MAX);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (one_check(json_array_get(v, i), i, &out[i], err, errlen) != 0)
                return -1;
        spec->checks = n ? out : NULL;
        spec->n_checks = (uint32_t)n;
    }
    if ((v = json_object_get(body, "deregister_critical_after")) != NULL &&
        duration(v, &spec->deregister_critical_after_ms) != 0) {
        snprintf(err, errlen,
                 "\"deregister_critical_after\" must be a duration such as \"1m\" "
                 "or a number of milliseconds (0: off)");
        return -1;
    }
    return 0;
}

void shoal_checkspec_show(json_t *v, const struct shoal_instance *in)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < in->n_checks; i++) {
        const struct shoal_check *c = &in->checks[i];
        json_array_append_new(
            a,
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "kind", shoal_check_kind_name(c->kind),
                      "target", c->target ? c->target : "", "status", shoal_health_name(c->status),
                      "output", c->output ? c->output : "", "interval_ms",
                      (json_int_t)c->interval_ms, "timeout_ms", (json_int_t)c->timeout_ms));
    }
    if (a)
        json_object_set_new(v, "checks", a);
    json_object_set_new(v, "deregister_critical_after_ms",
                        json_integer((json_int_t)in->deregister_critical_after_ms));
}

/* register.c -- what `shoal register|deregister|heartbeat` do: change the
 * instances this agent owns (docs/registry-interfaces.md, "HTTP API").
 *
 * main.c has checked every field against core/registry.h's limits already;
 * the agent checks again and its {"error":...} is passed through.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/call.h"
#include "cli/cli.h"
#include "cli/output.h"

/* o[k] = v, taking v; a NULL v (jansson out of memory) ends the process. */
static void json_set(json_t *o, const char *k, json_t *v)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        shoal_cli_oom();
}

/* {"id","service","address","port"[,"tags"][,"meta"][,"ttl" in ms]}; malloc'd. */
static char *register_body(const struct shoal_cli_args *a)
{
    json_t *req = json_object();
    if (!req)
        shoal_cli_oom();
    json_set(req, "id", json_string(a->id));
    json_set(req, "service", json_string(a->service));
    json_set(req, "address", json_string(a->address));
    json_set(req, "port", json_integer(a->port));
    if (a->ntags) {
        json_t *tags = json_array();
        json_set(req, "tags", tags);
        for (int i = 0; i < a->ntags; i++)
            if (json_array_append_new(tags, json_string(a->tags[i])) != 0)
                shoal_cli_oom();
    }
    if (a->nmeta) {
        json_t *meta = json_object();
        json_set(req, "meta", meta);
        for (int i = 0; i < a->nmeta; i++)
            json_set(meta, a->meta[i].key, json_string(a->meta[i].value));
    }
    if (a->ttl_ms) /* in ms, so the agent needs no duration syntax of ours */
        json_set(req, "ttl", json_integer(a->ttl_ms));
    if (a->nchecks) {
        json_t *checks = json_array();
        json_set(req, "checks", checks);
        for (int i = 0; i < a->nchecks; i++) {
            json_t *c = json_object();
            if (!c || json_array_append_new(checks, c) != 0)
                shoal_cli_oom();
            json_set(c, a->checks[i].kind, json_string(a->checks[i].target));
            if (a->checks[i].interval_ms)
                json_set(c, "interval", json_integer(a->checks[i].interval_ms));
            if (a->checks[i].timeout_ms)
                json_set(c, "timeout", json_integer(a->checks[i].timeout_ms));
        }
    }
    if (a->deregister_critical_after_ms)
        json_set(req, "deregister_critical_after", json_integer(a->deregister_critical_after_ms));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body)
        shoal_cli_oom();
    return body;
}

int shoal_cli_register(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;
    char *body = register_body(a);
    int rc = shoal_cli_call(a, "POST", "/v1/register", body, &r);
    free(body);
    if (rc)
        return SHOAL_CLI_FAIL;
    printf("registered %s\n", a->id);
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

/* POST prefix + the escaped ID argument. */
static int post_id(const struct shoal_cli_args *a, const char *prefix, struct shoal_cli_reply *r)
{
    struct shoal_cli_buf path = {0};
    shoal_cli_buf_add(&path, prefix);
    shoal_cli_buf_add_escaped(&path, a->pos[0]);
    int rc = shoal_cli_call(a, "POST", path.p, NULL, r);
    free(path.p);
    return rc;
}

int shoal_cli_deregister(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;
    if (post_id(a, "/v1/deregister/", &r))
        return SHOAL_CLI_FAIL;
    printf("deregistered %s\n", a->pos[0]);
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

int shoal_cli_heartbeat(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;
    if (post_id(a, "/v1/heartbeat/", &r))
        return SHOAL_CLI_FAIL;
    json_t *status = json_object_get(r.root, "status");
    printf("heartbeat %s", a->pos[0]);
    if (json_is_string(status)) {
        fputs(": ", stdout);
        shoal_cli_print_clean(stdout, json_string_value(status));
    }
    putchar('\n');
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

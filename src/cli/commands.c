/* commands.c -- what `shoal members|info|join|leave|keygen` do.
 *
 * Each command makes one call to the agent's HTTP API (docs/interfaces.md)
 * through shoal_cli_call() (call.h), which reports every failure, and
 * prints agent text through output.h's clean copies.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/call.h"
#include "cli/cli.h"
#include "cli/output.h"
#include "wire/wire.h"

/* ---- members ---- */

int shoal_cli_members(const struct shoal_cli_args *a)
{
    static const char *const heads[] = {"NAME", "ADDR", "STATUS", "INCARNATION"};
    static const char *const keys[] = {"name", "addr", "status", "incarnation"};
    return shoal_cli_list(a, "/v1/members", "members", heads, keys, 4);
}

/* ---- info ---- */

/* The widest "key:" at any depth, indented two spaces per level. */
static size_t key_width(json_t *obj, size_t depth)
{
    const char *key;
    json_t *v;
    size_t w = 0;
    json_object_foreach(obj, key, v)
    {
        size_t kw = 2 * depth + strlen(key) + 1;
        if (json_is_object(v) && json_object_size(v) > 0)
            kw = key_width(v, depth + 1);
        if (kw > w)
            w = kw;
    }
    return w;
}

/* "key: value" lines, values aligned; an object becomes an indented block. */
static void print_block(json_t *obj, size_t depth, size_t width)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char *k = shoal_cli_clean_dup(key); /* keys as in the JSON, so they can be grepped */
        if (json_is_object(v) && json_object_size(v) > 0) {
            printf("%*s%s:\n", (int)(2 * depth), "", k);
            print_block(v, depth + 1, width);
        } else {
            char *t = json_is_object(v) ? shoal_cli_clean_dup("-") : shoal_cli_value_text(v);
            size_t used = 2 * depth + strlen(k) + 1;
            printf("%*s%s:%*s %s\n", (int)(2 * depth), "", k,
                   (int)(width > used ? width - used : 0), "", t);
            free(t);
        }
        free(k);
    }
}

int shoal_cli_info(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;

    if (shoal_cli_call(a, "GET", "/v1/info", NULL, &r))
        return SHOAL_CLI_FAIL;
    if (a->format == SHOAL_CLI_FORMAT_JSON)
        shoal_cli_print_body(&r.http);
    else
        print_block(r.root, 0, key_width(r.root, 0));
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

/* ---- join, leave ---- */

int shoal_cli_join(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;
    json_t *addrs = json_array();
    char wait[32];
    uint32_t wait_ms = a->wait_ms ? a->wait_ms : 5000;

    /* main.c checked that every argument is a HOST:PORT */
    for (int i = 0; i < a->npos; i++)
        json_array_append_new(addrs, json_string(a->pos[i]));
    snprintf(wait, sizeof(wait), "%" PRIu32 "ms", wait_ms);
    json_t *req = json_pack("{s:o,s:s}", "addrs", addrs, "wait", wait);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        shoal_cli_oom();
    /* The agent answers when a node answers or after the wait: allow for it. */
    struct shoal_cli_http_opts opts = {.timeout_ms = (int)wait_ms + SHOAL_CLI_HTTP_TIMEOUT_MS};
    int rc = shoal_cli_call_ex(a, "POST", "/v1/join", body, &opts, &r, NULL, 0);
    free(body);
    if (rc)
        return SHOAL_CLI_FAIL;
    json_t *via = json_object_get(r.root, "joined");
    json_t *n = json_object_get(r.root, "members");
    if (json_is_string(via) && json_is_integer(n)) {
        char *v = shoal_cli_clean_dup(json_string_value(via));
        printf("joined through %s (%" JSON_INTEGER_FORMAT " members known)\n", v,
               json_integer_value(n));
        free(v);
    } else {
        printf("joining\n");
    }
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

int shoal_cli_leave(const struct shoal_cli_args *a)
{
    struct shoal_cli_reply r;

    if (shoal_cli_call(a, "POST", "/v1/leave", NULL, &r))
        return SHOAL_CLI_FAIL;
    printf("agent at %s is leaving the cluster\n", a->http_str);
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

/* ---- keygen ---- */

int shoal_cli_keygen(const struct shoal_cli_args *a)
{
    int rc = shoal_cluster_key_generate(a->out);
    if (rc == SHOAL_EEXIST) {
        fprintf(stderr, "shoal keygen: %s already exists; not overwriting it\n", a->out);
        return SHOAL_CLI_FAIL;
    }
    if (rc) {
        fprintf(stderr, "shoal keygen: cannot write %s: %s\n", a->out, shoal_strerror(rc));
        return SHOAL_CLI_FAIL;
    }
    printf("%s\n", a->out);
    return SHOAL_CLI_OK;
}

/* resolve.c -- `shoal resolve NAME`: one passing instance of a service,
 * picked by the agent with a load-balancing strategy (GET /v1/resolve/NAME,
 * core/balance.h). Table form: ADDRESS:PORT ID OWNER STRATEGY CANDIDATES;
 * --format json prints the agent's answer as is. No passing instance is the
 * agent's 503, printed as its message with exit 1.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/call.h"
#include "cli/cli.h"
#include "cli/output.h"

/* A JSON value as a clean cell; "-" when absent. Calls malloc. */
static char *cell(json_t *v) { return v ? shoal_cli_value_text(v) : shoal_cli_clean_dup("-"); }

int shoal_cli_resolve(const struct shoal_cli_args *a)
{
    struct shoal_cli_buf b = {0}, kv = {0};
    struct shoal_cli_reply r;

    shoal_cli_buf_add(&b, "/v1/resolve/");
    shoal_cli_buf_add_escaped(&b, a->pos[0]);
    if (a->strategy)
        shoal_cli_buf_param(&b, "strategy", a->strategy);
    if (a->client_ip)
        shoal_cli_buf_param(&b, "client", a->client_ip);
    for (int i = 0; i < a->ntags; i++)
        shoal_cli_buf_param(&b, "tag", a->tags[i]);
    for (int i = 0; i < a->nmeta; i++) {
        kv.len = 0;
        shoal_cli_buf_add(&kv, a->meta[i].key);
        shoal_cli_buf_add(&kv, ":");
        shoal_cli_buf_add(&kv, a->meta[i].value);
        shoal_cli_buf_param(&b, "meta", kv.p);
    }
    free(kv.p);
    int rc = shoal_cli_call(a, "GET", b.p, NULL, &r);
    free(b.p);
    if (rc)
        return SHOAL_CLI_FAIL;
    json_t *in = json_object_get(r.root, "instance");
    json_t *addr = json_object_get(in, "address"), *port = json_object_get(in, "port");
    if (!json_is_string(addr) || !json_is_integer(port)) {
        fprintf(stderr, "shoal: agent at %s sent no instance address and port\n", a->http_str);
        shoal_cli_reply_free(&r);
        return SHOAL_CLI_FAIL;
    }
    if (a->format == SHOAL_CLI_FORMAT_JSON) {
        shoal_cli_print_body(&r.http);
        shoal_cli_reply_free(&r);
        return SHOAL_CLI_OK;
    }
    static const char *const heads[] = {"ADDRESS:PORT", "ID", "OWNER", "STRATEGY", "CANDIDATES"};
    struct shoal_cli_table t;
    struct shoal_cli_buf ap = {0};
    char num[24];
    shoal_cli_table_init(&t, heads, 5);
    /* an IPv6 address is bracketed so that ADDRESS:PORT reads unambiguously */
    const char *as = json_string_value(addr);
    bool v6 = strchr(as, ':') != NULL;
    shoal_cli_buf_add(&ap, v6 ? "[" : "");
    shoal_cli_buf_add(&ap, as);
    snprintf(num, sizeof(num), "%s:%lld", v6 ? "]" : "", (long long)json_integer_value(port));
    shoal_cli_buf_add(&ap, num);
    shoal_cli_table_add(&t, shoal_cli_clean_dup(ap.p));
    free(ap.p);
    shoal_cli_table_add(&t, cell(json_object_get(in, "id")));
    shoal_cli_table_add(&t, cell(json_object_get(in, "owner")));
    shoal_cli_table_add(&t, cell(json_object_get(r.root, "strategy")));
    shoal_cli_table_add(&t, cell(json_object_get(r.root, "candidates")));
    shoal_cli_table_print(&t);
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

/* call.c -- one call to the agent's HTTP API (see call.h). */
#include "cli/call.h"

#include <stdio.h>
#include <string.h>

#include "cli/output.h"

void shoal_cli_reply_free(struct shoal_cli_reply *r)
{
    json_decref(r->root);
    shoal_cli_http_resp_free(&r->http);
    r->root = NULL;
}

int shoal_cli_call_ex(const struct shoal_cli_args *a, const char *method, const char *path,
                      const char *body, const struct shoal_cli_http_opts *opts,
                      struct shoal_cli_reply *r, char *lost, size_t lost_len)
{
    char why[256];
    int sys_err = 0;
    json_error_t jerr;

    memset(r, 0, sizeof(*r));
    int rc = shoal_cli_http_request(&a->http, method, path, body, opts, &r->http, &sys_err);
    switch (rc) {
    case 0:
        break;
    case SHOAL_ECONN:
    case SHOAL_EIO:
    case SHOAL_ETRUNC:
        if (rc == SHOAL_ETRUNC)
            snprintf(why, sizeof(why), "agent at %s closed the connection before answering in full",
                     a->http_str);
        else
            snprintf(why, sizeof(why), "cannot reach agent at %s: %s", a->http_str,
                     strerror(sys_err));
        if (lost) {
            snprintf(lost, lost_len, "%s", why);
            return SHOAL_CLI_CALL_LOST;
        }
        fprintf(stderr, "shoal: %s\n", why);
        return SHOAL_CLI_FAIL;
    case SHOAL_EDECODE:
        fprintf(stderr, "shoal: agent at %s sent a malformed HTTP response\n", a->http_str);
        return SHOAL_CLI_FAIL;
    case SHOAL_ETOOBIG:
        fprintf(stderr, "shoal: agent at %s sent a response over %u MB\n", a->http_str,
                SHOAL_CLI_HTTP_MAX_BODY >> 20);
        return SHOAL_CLI_FAIL;
    default:
        fprintf(stderr, "shoal: request to agent at %s failed: %s\n", a->http_str,
                shoal_strerror(rc));
        return SHOAL_CLI_FAIL;
    }

    json_t *j = json_loadb(r->http.body, r->http.body_len, 0, &jerr);
    if (r->http.status < 200 || r->http.status > 299) {
        json_t *msg = json_is_object(j) ? json_object_get(j, "error") : NULL;
        if (json_is_string(msg)) {
            fputs("shoal: ", stderr);
            shoal_cli_print_clean(stderr, json_string_value(msg));
            fputc('\n', stderr);
        } else {
            fprintf(stderr, "shoal: agent at %s answered HTTP %d\n", a->http_str, r->http.status);
        }
        json_decref(j);
        shoal_cli_reply_free(r);
        return SHOAL_CLI_FAIL;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "shoal: agent at %s sent invalid JSON: %s\n", a->http_str,
                j ? "not an object" : jerr.text);
        json_decref(j);
        shoal_cli_reply_free(r);
        return SHOAL_CLI_FAIL;
    }
    r->root = j;
    return 0;
}

int shoal_cli_call(const struct shoal_cli_args *a, const char *method, const char *path,
                   const char *body, struct shoal_cli_reply *r)
{
    return shoal_cli_call_ex(a, method, path, body, NULL, r, NULL, 0);
}

int shoal_cli_list(const struct shoal_cli_args *a, const char *path, const char *field,
                   const char *const *heads, const char *const *keys, size_t ncols)
{
    struct shoal_cli_reply r;
    if (shoal_cli_call(a, "GET", path, NULL, &r))
        return SHOAL_CLI_FAIL;
    json_t *list = json_object_get(r.root, field);
    if (!json_is_array(list)) {
        fprintf(stderr, "shoal: agent at %s sent no \"%s\" list\n", a->http_str, field);
        shoal_cli_reply_free(&r);
        return SHOAL_CLI_FAIL;
    }
    if (a->format == SHOAL_CLI_FORMAT_JSON) {
        shoal_cli_print_body(&r.http);
    } else {
        struct shoal_cli_table t;
        size_t i;
        json_t *row;
        shoal_cli_table_init(&t, heads, ncols);
        json_array_foreach(list, i, row)
        {
            for (size_t k = 0; k < ncols; k++) {
                json_t *v = json_is_object(row) ? json_object_get(row, keys[k]) : NULL;
                shoal_cli_table_add(&t, v ? shoal_cli_value_text(v) : shoal_cli_clean_dup("-"));
            }
        }
        shoal_cli_table_print(&t);
    }
    shoal_cli_reply_free(&r);
    return SHOAL_CLI_OK;
}

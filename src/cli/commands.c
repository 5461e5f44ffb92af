/* commands.c -- what `shoal members|info|join|leave|keygen` do.
 *
 * Each command makes one call to the agent's HTTP API (docs/interfaces.md)
 * through api_call(), which turns every failure -- unreachable agent, broken
 * HTTP, invalid JSON, an {"error":...} answer -- into one line on stderr and
 * exit status 1. Text from the agent is printed with control characters
 * replaced, so a hostile member name cannot drive the terminal.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "wire/wire.h"

/* A malloc'd copy of s with control characters replaced by '?'. */
static char *clean_dup(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d) {
        fprintf(stderr, "shoal: out of memory\n");
        exit(SHOAL_CLI_FAIL);
    }
    for (size_t i = 0; i <= n; i++)
        d[i] = (i < n && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) ? '?' : s[i];
    return d;
}

static void print_clean(FILE *f, const char *s)
{
    char *c = clean_dup(s);
    fputs(c, f);
    free(c);
}

/* Calls the agent. On success returns 0 with *root the response object and
 * resp the raw body; otherwise prints why and returns SHOAL_CLI_FAIL. */
static int api_call(const struct shoal_cli_args *a, const char *method, const char *path,
                    const char *body, struct shoal_cli_http_resp *resp, json_t **root)
{
    int sys_err = 0;
    json_error_t jerr;

    *root = NULL;
    int rc = shoal_cli_http_request(&a->http, method, path, body, SHOAL_CLI_HTTP_TIMEOUT_MS, resp,
                                    &sys_err);
    switch (rc) {
    case 0:
        break;
    case SHOAL_ECONN:
    case SHOAL_EIO:
        fprintf(stderr, "shoal: cannot reach agent at %s: %s\n", a->http_str, strerror(sys_err));
        return SHOAL_CLI_FAIL;
    case SHOAL_ETRUNC:
        fprintf(stderr, "shoal: agent at %s closed the connection before answering in full\n",
                a->http_str);
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

    json_t *j = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (resp->status < 200 || resp->status > 299) {
        json_t *msg = json_is_object(j) ? json_object_get(j, "error") : NULL;
        if (json_is_string(msg)) {
            fputs("shoal: ", stderr);
            print_clean(stderr, json_string_value(msg));
            fputc('\n', stderr);
        } else {
            fprintf(stderr, "shoal: agent at %s answered HTTP %d\n", a->http_str, resp->status);
        }
        json_decref(j);
        shoal_cli_http_resp_free(resp);
        return SHOAL_CLI_FAIL;
    }
    if (!json_is_object(j)) {
        fprintf(stderr, "shoal: agent at %s sent invalid JSON: %s\n", a->http_str,
                j ? "not an object" : jerr.text);
        json_decref(j);
        shoal_cli_http_resp_free(resp);
        return SHOAL_CLI_FAIL;
    }
    *root = j;
    return 0;
}

/* --format json: the API's object exactly as the agent sent it. */
static void print_raw(const struct shoal_cli_http_resp *resp)
{
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len == 0 || resp->body[resp->body_len - 1] != '\n')
        putchar('\n');
}

/* A scalar (or an array of them) as text; malloc'd. */
static char *value_text(json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return clean_dup(json_string_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return clean_dup(buf);
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%g", json_real_value(v));
        return clean_dup(buf);
    case JSON_TRUE:
        return clean_dup("true");
    case JSON_FALSE:
        return clean_dup("false");
    case JSON_NULL:
        return clean_dup("-");
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *c = clean_dup(s ? s : "?");
        free(s);
        return c;
    }
    }
}

/* ---- members ---- */

enum { COL_NAME, COL_ADDR, COL_STATUS, COL_INC, N_COLS };

int shoal_cli_members(const struct shoal_cli_args *a)
{
    static const char *const heads[N_COLS] = {"NAME", "ADDR", "STATUS", "INCARNATION"};
    static const char *const keys[N_COLS] = {"name", "addr", "status", "incarnation"};
    struct shoal_cli_http_resp resp;
    json_t *root;

    if (api_call(a, "GET", "/v1/members", NULL, &resp, &root))
        return SHOAL_CLI_FAIL;
    json_t *members = json_object_get(root, "members");
    if (!json_is_array(members)) {
        fprintf(stderr, "shoal: agent at %s sent no \"members\" list\n", a->http_str);
        json_decref(root);
        shoal_cli_http_resp_free(&resp);
        return SHOAL_CLI_FAIL;
    }
    if (a->format == SHOAL_CLI_FORMAT_JSON) {
        print_raw(&resp);
    } else {
        size_t n = json_array_size(members), width[N_COLS];
        char **cells = calloc(n * N_COLS + 1, sizeof(*cells));
        if (!cells) {
            fprintf(stderr, "shoal: out of memory\n");
            exit(SHOAL_CLI_FAIL);
        }
        for (int k = 0; k < N_COLS; k++)
            width[k] = strlen(heads[k]);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(members, i);
            for (int k = 0; k < N_COLS; k++) {
                json_t *v = json_is_object(m) ? json_object_get(m, keys[k]) : NULL;
                char *t = v ? value_text(v) : clean_dup("-");
                cells[i * N_COLS + k] = t;
                if (strlen(t) > width[k])
                    width[k] = strlen(t);
            }
        }
        for (size_t i = 0; i <= n; i++) {
            for (int k = 0; k < N_COLS; k++) {
                const char *t = i == 0 ? heads[k] : cells[(i - 1) * N_COLS + k];
                if (k == N_COLS - 1)
                    printf("%s\n", t);
                else
                    printf("%-*s  ", (int)width[k], t);
            }
        }
        for (size_t i = 0; i < n * N_COLS; i++)
            free(cells[i]);
        free(cells);
    }
    json_decref(root);
    shoal_cli_http_resp_free(&resp);
    return SHOAL_CLI_OK;
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
        char *k = clean_dup(key); /* keys as in the JSON, so they can be grepped */
        if (json_is_object(v) && json_object_size(v) > 0) {
            printf("%*s%s:\n", (int)(2 * depth), "", k);
            print_block(v, depth + 1, width);
        } else {
            char *t = json_is_object(v) ? clean_dup("-") : value_text(v);
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
    struct shoal_cli_http_resp resp;
    json_t *root;

    if (api_call(a, "GET", "/v1/info", NULL, &resp, &root))
        return SHOAL_CLI_FAIL;
    if (a->format == SHOAL_CLI_FORMAT_JSON)
        print_raw(&resp);
    else
        print_block(root, 0, key_width(root, 0));
    json_decref(root);
    shoal_cli_http_resp_free(&resp);
    return SHOAL_CLI_OK;
}

/* ---- join, leave ---- */

int shoal_cli_join(const struct shoal_cli_args *a)
{
    struct shoal_cli_http_resp resp;
    json_t *root, *addrs = json_array();

    /* main.c checked that every argument is an IP:PORT */
    for (int i = 0; i < a->npos; i++)
        json_array_append_new(addrs, json_string(a->pos[i]));
    json_t *req = json_pack("{s:o}", "addrs", addrs);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        fprintf(stderr, "shoal: out of memory\n");
        return SHOAL_CLI_FAIL;
    }
    int rc = api_call(a, "POST", "/v1/join", body, &resp, &root);
    free(body);
    if (rc)
        return SHOAL_CLI_FAIL;
    json_t *n = json_object_get(root, "joining");
    if (json_is_integer(n))
        printf("joining: contacting %" JSON_INTEGER_FORMAT " of %d address%s\n",
               json_integer_value(n), a->npos, a->npos == 1 ? "" : "es");
    else
        printf("joining\n");
    json_decref(root);
    shoal_cli_http_resp_free(&resp);
    return SHOAL_CLI_OK;
}

int shoal_cli_leave(const struct shoal_cli_args *a)
{
    struct shoal_cli_http_resp resp;
    json_t *root;

    if (api_call(a, "POST", "/v1/leave", NULL, &resp, &root))
        return SHOAL_CLI_FAIL;
    printf("agent at %s is leaving the cluster\n", a->http_str);
    json_decref(root);
    shoal_cli_http_resp_free(&resp);
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

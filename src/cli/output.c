/* output.c -- text the CLI prints or sends (see output.h). */
#include "cli/output.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

void shoal_cli_oom(void)
{
    fprintf(stderr, "shoal: out of memory\n");
    exit(SHOAL_CLI_FAIL);
}

char *shoal_cli_clean_dup(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d)
        shoal_cli_oom();
    for (size_t i = 0; i <= n; i++)
        d[i] = (i < n && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) ? '?' : s[i];
    return d;
}

void shoal_cli_print_clean(FILE *f, const char *s)
{
    char *c = shoal_cli_clean_dup(s);
    fputs(c, f);
    free(c);
}

char *shoal_cli_value_text(json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return shoal_cli_clean_dup(json_string_value(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return shoal_cli_clean_dup(buf);
    case JSON_REAL:
        snprintf(buf, sizeof(buf), "%g", json_real_value(v));
        return shoal_cli_clean_dup(buf);
    case JSON_TRUE:
        return shoal_cli_clean_dup("true");
    case JSON_FALSE:
        return shoal_cli_clean_dup("false");
    case JSON_NULL:
        return shoal_cli_clean_dup("-");
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *c = shoal_cli_clean_dup(s ? s : "?");
        free(s);
        return c;
    }
    }
}

void shoal_cli_print_body(const struct shoal_cli_http_resp *resp)
{
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len == 0 || resp->body[resp->body_len - 1] != '\n')
        putchar('\n');
}

void shoal_cli_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        shoal_cli_oom();
    puts(s);
    free(s);
}

/* ---- shoal_cli_buf ---- */

void shoal_cli_buf_addn(struct shoal_cli_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            shoal_cli_oom();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void shoal_cli_buf_add(struct shoal_cli_buf *b, const char *s)
{
    shoal_cli_buf_addn(b, s, strlen(s));
}

void shoal_cli_buf_add_escaped(struct shoal_cli_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~:", *p)) {
            shoal_cli_buf_addn(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            shoal_cli_buf_addn(b, e, 3);
        }
    }
}

void shoal_cli_buf_param(struct shoal_cli_buf *b, const char *key, const char *value)
{
    shoal_cli_buf_add(b, b->p && strchr(b->p, '?') ? "&" : "?");
    shoal_cli_buf_add(b, key);
    shoal_cli_buf_add(b, "=");
    shoal_cli_buf_add_escaped(b, value);
}

/* ---- shoal_cli_table ---- */

void shoal_cli_table_init(struct shoal_cli_table *t, const char *const *heads, size_t ncols)
{
    *t = (struct shoal_cli_table){.heads = heads, .ncols = ncols};
}

void shoal_cli_table_add(struct shoal_cli_table *t, char *cell)
{
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16 * t->ncols;
        char **c = realloc(t->cells, cap * sizeof(*c));
        if (!c)
            shoal_cli_oom();
        t->cells = c;
        t->cap = cap;
    }
    t->cells[t->ncells++] = cell;
}

void shoal_cli_table_print(struct shoal_cli_table *t)
{
    size_t nrows = t->ncells / t->ncols, *width = calloc(t->ncols, sizeof(*width));
    if (!width)
        shoal_cli_oom();
    for (size_t k = 0; k < t->ncols; k++)
        width[k] = strlen(t->heads[k]);
    for (size_t i = 0; i < nrows * t->ncols; i++)
        if (strlen(t->cells[i]) > width[i % t->ncols])
            width[i % t->ncols] = strlen(t->cells[i]);
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t k = 0; k < t->ncols; k++) {
            const char *c = r == 0 ? t->heads[k] : t->cells[(r - 1) * t->ncols + k];
            if (k == t->ncols - 1)
                printf("%s\n", c);
            else
                printf("%-*s  ", (int)width[k], c);
        }
    }
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    free(width);
    *t = (struct shoal_cli_table){0};
}

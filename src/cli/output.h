/* output.h -- text the CLI prints or sends.
 *
 * Agent text is printed through clean copies (control characters become
 * '?'), so a hostile name cannot drive the terminal. Tables are aligned
 * columns under a header row. shoal_cli_buf builds request paths and cells,
 * with URL escaping. Allocation failures end the process (exit 1) with a
 * message: a CLI has nothing better to do.
 */
#ifndef SHOAL_CLI_OUTPUT_H
#define SHOAL_CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "cli/client.h"

__attribute__((noreturn)) void shoal_cli_oom(void);

/* A copy of s with control characters replaced by '?'. Calls malloc. */
char *shoal_cli_clean_dup(const char *s);
void shoal_cli_print_clean(FILE *f, const char *s);
/* A scalar as text ("-" for null; other values as compact JSON). Calls malloc. */
char *shoal_cli_value_text(json_t *v);
/* The agent's body exactly as sent, then a newline if it had none. */
void shoal_cli_print_body(const struct shoal_cli_http_resp *resp);
/* j as compact JSON on one line (jansson escapes control characters). */
void shoal_cli_print_json(json_t *j);

/* A growing NUL-terminated string. Zero-initialise; free(b.p) when done. */
struct shoal_cli_buf {
    char *p;
    size_t len, cap;
};
void shoal_cli_buf_add(struct shoal_cli_buf *b, const char *s);
void shoal_cli_buf_addn(struct shoal_cli_buf *b, const char *s, size_t n);
/* s percent-encoded: all but [A-Za-z0-9-._~:] (':' is legal in a path segment
 * and a query value, and ids contain it). */
void shoal_cli_buf_add_escaped(struct shoal_cli_buf *b, const char *s);
/* "?key=" or "&key=" (whichever comes next), then value escaped. */
void shoal_cli_buf_param(struct shoal_cli_buf *b, const char *key, const char *value);

/* Aligned columns: heads, then rows of cells added left to right. */
struct shoal_cli_table {
    const char *const *heads;
    size_t ncols, ncells, cap;
    char **cells; /* owned */
};
void shoal_cli_table_init(struct shoal_cli_table *t, const char *const *heads, size_t ncols);
/* Adds the next cell; takes ownership of cell (malloc'd, already clean). */
void shoal_cli_table_add(struct shoal_cli_table *t, char *cell);
/* Prints the table to stdout (the last column unpadded) and frees it. */
void shoal_cli_table_print(struct shoal_cli_table *t);

#endif

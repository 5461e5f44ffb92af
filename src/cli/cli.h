/* cli.h -- the `shoal` command line (docs/interfaces.md, "CLI").
 *
 * main.c holds the command table (name -> flags it accepts -> function ->
 * help) and does all option parsing with getopt_long, so a command function
 * receives checked arguments in struct shoal_cli_args and only does its job.
 * commands.c holds those functions. Exit status: 0 ok, 1 the agent did not
 * answer or answered an error, 2 usage error.
 */
#ifndef SHOAL_CLI_CLI_H
#define SHOAL_CLI_CLI_H

#include "core/addr.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.1.0" /* keep in step with project() in CMakeLists.txt */
#endif

#define SHOAL_CLI_DEFAULT_HTTP "127.0.0.1:7947"

enum { SHOAL_CLI_OK = 0, SHOAL_CLI_FAIL = 1, SHOAL_CLI_USAGE = 2 };

enum shoal_cli_format { SHOAL_CLI_FORMAT_TABLE, SHOAL_CLI_FORMAT_JSON };

/* What a command receives once its flags parsed cleanly. */
struct shoal_cli_args {
    const char *cmd;                  /* "members" */
    enum shoal_cli_format format;     /* --format (default table) */
    struct shoal_addr http;           /* --http, else $SHOAL_HTTP_ADDR, else default */
    char http_str[SHOAL_ADDR_STRLEN]; /* the same, for messages */
    const char *out;                  /* --out */
    int npos;                         /* positional arguments */
    char **pos;
};

/* The commands (commands.c). Each returns the process exit status. */
int shoal_cli_members(const struct shoal_cli_args *a);
int shoal_cli_info(const struct shoal_cli_args *a);
int shoal_cli_join(const struct shoal_cli_args *a);
int shoal_cli_leave(const struct shoal_cli_args *a);
int shoal_cli_keygen(const struct shoal_cli_args *a);

#endif

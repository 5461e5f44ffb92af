/* docgen.h -- man pages and bash completion made from the commands' own
 * --help text (one source): `shoal __gen-man DIR`, `shoal __gen-completion
 * FILE`, run by the build.
 */
#ifndef SHOAL_CLI_DOCGEN_H
#define SHOAL_CLI_DOCGEN_H

#include <stdbool.h>
#include <stddef.h>

struct shoal_cli_doc {
    const char *name;    /* "register" */
    const char *summary; /* one line */
    bool service_arg;    /* its positional argument is a service name */
};

/* Prints the --help text of command name to stdout (NULL: `shoal --help`). */
typedef void (*shoal_cli_doc_help_fn)(const char *name);

/* Writes DIR/shoal.1 and DIR/shoal-NAME.1 for every command. Returns 0 or
 * 1 after printing why. */
int shoal_cli_gen_man(const char *dir, const struct shoal_cli_doc *cmds, size_t n,
                      shoal_cli_doc_help_fn help, const char *version);
/* Writes a bash completion script for commands, their flags and, where a
 * service name is wanted, the names the agent knows. Returns 0 or 1. */
int shoal_cli_gen_completion(const char *path, const struct shoal_cli_doc *cmds, size_t n,
                             shoal_cli_doc_help_fn help);

#endif

/* agentconf.h -- where `shoal agent`'s settings come from: one flag table
 * (agent.c) drives the command line, JSON config files, the environment,
 * --help and --print-config alike.
 *
 * Sources, lowest to highest: the table's default < config files (in the
 * order given; a later file wins key by key) < the environment (SHOAL_ and
 * the name in capitals, '-' as '_') < flags. For each flag the highest
 * source that sets it wins whole: a repeatable flag's values are not merged
 * across sources. A config file is one JSON object whose keys are flag names
 * ("data-dir" or "data_dir"); a repeatable flag takes an array; numbers are
 * written as text (durations in bare milliseconds). In the environment a
 * repeatable flag's values are separated by commas.
 */
#ifndef SHOAL_IO_AGENTCONF_H
#define SHOAL_IO_AGENTCONF_H

#include <stdbool.h>
#include <stddef.h>

/* One agent flag. The first four fields are getopt's struct option's. */
struct shoal_agent_flag {
    const char *name;    /* "data-dir" */
    int has_arg;         /* required_argument or no_argument */
    int *unused;         /* NULL */
    int id;              /* OPT_*: what agent.c's switch is given */
    const char *arg;     /* the value's name in --help ("DIR"); NULL: none */
    const char *help;    /* one line for --help and the man page */
    unsigned kind;       /* SHOAL_AF_* bits */
    const char *def;     /* default, applied through the same switch; NULL: none or computed */
};

#define SHOAL_AF_REPEAT 1u   /* may be given many times (a JSON array in files) */
#define SHOAL_AF_CLI_ONLY 2u /* command line only (--help, --print-config) */
#define SHOAL_AF_NO_FILE 4u  /* command line or environment, not a file (--config-file) */

enum shoal_agentconf_src { SHOAL_SRC_NONE, SHOAL_SRC_FILE, SHOAL_SRC_ENV, SHOAL_SRC_FLAG };

struct shoal_agentconf_slot {
    char **vals;
    size_t n;
    char *where; /* "file /etc/shoal/a.json key \"data_dir\"", "env SHOAL_X", "flag --x" */
};

struct shoal_agentconf {
    const struct shoal_agent_flag *flags;
    size_t nflags;
    /* [source][flag]; SHOAL_SRC_NONE unused. */
    struct shoal_agentconf_slot *layer[4];
    bool help, print_config;
    const struct shoal_agent_flag *current; /* being applied, for messages */
    const char *current_where;
};

/* Collects every source's values: argv (argv[0] is the command), the
 * environment, then the config files named by --config-file. Prints the
 * reason and returns 2 on an unknown flag or key, a bad file or a value of
 * the wrong JSON type; 0 otherwise. Calls malloc: free with _free. */
int shoal_agentconf_load(struct shoal_agentconf *c, const struct shoal_agent_flag *flags,
                         size_t nflags, int argc, char **argv, const char *config_file_flag);
void shoal_agentconf_free(struct shoal_agentconf *c);

/* Calls apply(ud, flag, value) for each flag in table order: its default,
 * or each value of the highest source that sets it. Stops at the first
 * non-zero return and returns it. */
int shoal_agentconf_apply(struct shoal_agentconf *c,
                          int (*apply)(void *ud, const struct shoal_agent_flag *f, const char *v),
                          void *ud);

/* Where a flag's value came from, for messages: "--bind", "SHOAL_BIND",
 * "/etc/shoal/a.json: key \"bind\"", or "the default --bind". Writes buf. */
const char *shoal_agentconf_origin(const struct shoal_agentconf *c, const char *flag, char *buf,
                                   size_t len);

/* --print-config: each flag's effective value and source, on stdout. */
void shoal_agentconf_print(const struct shoal_agentconf *c);
/* --help: usage, every flag with its help and default, then notes. */
void shoal_agentconf_help(const struct shoal_agentconf *c, const char *notes);

/* SHOAL_ plus the flag's name in capitals, '-' as '_', into buf. */
const char *shoal_agentconf_env_name(const char *flag, char *buf, size_t len);

#endif
